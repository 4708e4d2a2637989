"""Samples files: what ``walkback sample`` writes (``write_samples``) and what
``walkback evaluate --samples FILE.npz`` accepts, checked before use.

The array is the file's ``samples`` entry (``--samples-key``; a file holding a single array may use
any name). Accepted layouts, with ``(C, H, W)`` the data set's image shape:

- float (16/32/64-bit) ``(N, C, H, W)`` in model space ``[-1, 1]`` (what ``walkback sample``
  writes: the chain state, unclipped): converted by ``metrics.fid.to_uint8`` (clip to [-1, 1],
  ``round((x + 1) * 127.5)``). Non-finite values are an error, and so are arrays that are not in
  model space: no negative value but some beyond 4 (0..255 data), or a median ``|x|`` beyond 4
  (the bulk of the values elsewhere). Values of a model-space chain that drifts on some pixels are
  clipped, and how many is reported (``warnings``);
- uint8 ``(N, C, H, W)``;
- uint8 ``(N, H, W, C)`` (channels last, as image libraries write them).

Anything else (other dtypes, shapes, N < 2) is a one-line ``MetricsError`` naming the file.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write_bytes
from ..metrics.fid import MetricsError, to_uint8
from ..plots import plot_snapshots, save_image_grid

__all__ = ["LoadedSamples", "load_samples_file", "samples_from_array", "write_samples", "FLOAT_LAYOUT"]

FLOAT_LAYOUT = "float (N, C, H, W) in model space [-1, 1]"
LIMIT = 4.0  # model space is [-1, 1]; 0..255 data or a bulk beyond this is refused
NCHW_LAYOUT = "uint8 (N, C, H, W)"
NHWC_LAYOUT = "uint8 (N, H, W, C)"


@dataclass
class LoadedSamples:
    """``images`` uint8 ``(N, C, H, W)``; ``model_space`` the float samples when the file held
    floats (else ``None``); ``layout`` one of the accepted layouts; ``meta`` the file's ``meta``
    JSON (``walkback sample`` writes K, E, seed); ``warnings`` about suspicious contents."""

    images: torch.Tensor
    model_space: torch.Tensor | None
    layout: str
    meta: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    path: str = ""
    key: str = ""
    sha256: str = ""


def _expected(shape: tuple[int, int, int]) -> str:
    c, h, w = shape
    return (f"{FLOAT_LAYOUT.replace('C, H, W', f'{c}, {h}, {w}')}, uint8 (N, {c}, {h}, {w}) "
            f"or uint8 (N, {h}, {w}, {c})")


def _float_to_uint8(x: torch.Tensor, name: str) -> torch.Tensor:
    """Model-space floats -> uint8 after the range checks (module docstring)."""
    if not torch.isfinite(x).all():
        raise MetricsError(f"{name}: samples: non-finite values (NaN/Inf)")
    lo, hi, bulk = float(x.min()), float(x.abs().max()), float(x.abs().flatten().median())
    if (lo >= 0 and hi > LIMIT) or bulk > LIMIT:
        raise MetricsError(f"{name}: samples: values reach {hi:.3g} (minimum {lo:.3g}, median |x| "
                           f"{bulk:.3g}); expected model space [-1, 1]; is this 0..255 data?")
    return to_uint8(x.clamp(-LIMIT, LIMIT), limit=LIMIT)


def _warnings(x: torch.Tensor, name: str) -> list[str]:
    warnings = []
    if float(x.min()) >= -0.02:
        warnings.append(f"{name}: float samples have no value below {float(x.min()):.3f}; "
                        "model space is [-1, 1] (0 is mid-grey), is this [0, 1] data?")
    outside = float((x.abs() > 1).double().mean())
    if outside > 0:
        warnings.append(f"{name}: {outside:.2%} of the values lie outside [-1, 1] (clipped; "
                        f"largest magnitude {float(x.abs().max()):.3g})")
    return warnings


def samples_from_array(array: np.ndarray, image_shape: tuple[int, int, int], *,
                       name: str) -> LoadedSamples:
    """Check ``array`` against the accepted layouts for images of ``image_shape`` ``(C, H, W)``."""
    shape, expected = tuple(array.shape), _expected(image_shape)
    c, h, w = image_shape
    if array.ndim != 4 or shape[0] < 2:
        raise MetricsError(f"{name}: samples of shape {shape}; expected N >= 2 images as {expected}")
    if np.issubdtype(array.dtype, np.floating):
        if shape[1:] != (c, h, w):
            raise MetricsError(f"{name}: float samples of shape {shape}; expected {expected}")
        x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        return LoadedSamples(_float_to_uint8(x, name), x, FLOAT_LAYOUT, warnings=_warnings(x, name))
    if array.dtype != np.uint8:
        raise MetricsError(f"{name}: samples of dtype {array.dtype}; expected {expected}")
    if shape[1:] == (c, h, w):
        return LoadedSamples(torch.from_numpy(np.ascontiguousarray(array)), None, NCHW_LAYOUT)
    if shape[1:] == (h, w, c):
        images = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)))
        return LoadedSamples(images, None, NHWC_LAYOUT)
    raise MetricsError(f"{name}: uint8 samples of shape {shape}; expected {expected}")


def _read_meta(npz: np.lib.npyio.NpzFile) -> dict:
    if "meta" not in npz.files:
        return {}
    try:
        meta = json.loads(str(npz["meta"]))
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def load_samples_file(path: str | Path, image_shape: tuple[int, int, int], *,
                      key: str = "samples") -> LoadedSamples:
    """Read and check ``path`` (an .npz; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MetricsError(f"{path}: samples file not found")
    try:
        payload = path.read_bytes()
        with np.load(path, allow_pickle=False) as npz:
            arrays = [k for k in npz.files if k != "meta"]
            only = arrays[0] if len(arrays) == 1 and key == "samples" else None
            chosen = key if key in npz.files else only
            if chosen is None:
                held = ", ".join(npz.files) or "nothing"
                raise MetricsError(f"{path}: no array {key!r} (holds {held})")
            array, meta = npz[chosen], _read_meta(npz)
    except MetricsError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError (pickled objects), OSError, EOFError
        raise MetricsError(f"{path}: unreadable .npz ({type(exc).__name__}: {exc})") from None
    loaded = samples_from_array(array, image_shape, name=str(path))
    loaded.meta, loaded.path, loaded.key = meta, str(path), chosen
    loaded.sha256 = hashlib.sha256(payload).hexdigest()
    return loaded


def _as_float32(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def write_samples(path: str | Path, samples: torch.Tensor, *, states: torch.Tensor | None = None,
                  meta: dict, reference: torch.Tensor | None = None) -> None:
    """Write ``samples`` ``(N, *data_shape)`` (float32, data space: the noise-free output), the
    chains' ``states`` when given and a ``meta`` JSON string to an .npz atomically, and a picture
    of ``samples`` ``<stem>.png`` beside it: for 2-D data a scatter (data ``reference`` on the
    left when given), for images a 10x10 grid."""
    path = Path(path)
    arrays = {"samples": _as_float32(samples), "meta": np.array(json.dumps(meta))}
    if states is not None:
        arrays["states"] = _as_float32(states)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    if samples.dim() == 4:  # images: a grid of the first 100
        tmp = path.with_name(f".{path.stem}.png.tmp")
        save_image_grid(samples, tmp)
        os.replace(tmp, path.with_suffix(".png"))
    elif samples.dim() == 2 and samples.shape[1] == 2:
        panels = [] if reference is None else [("data", reference)]
        title = ", ".join(f"{k}={meta[k]}" for k in ("K", "E", "seed", "N") if k in meta)
        tmp = path.with_name(f".{path.stem}.png.tmp")
        plot_snapshots(panels + [("samples", samples)], tmp, title=title)
        os.replace(tmp, path.with_suffix(".png"))
