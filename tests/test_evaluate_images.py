"""Image evaluation end to end on a tiny fake MNIST (torchvision IDX layout) and a 2-step MLP run,
with a 16-d stand-in for the Inception network and an untrained classifier injected: eval.json and
its protocols, the figures, batch-size independence, cached references and their checksum check,
samples files (layouts, wrong shape / range, one-line errors, nothing overwritten), the CLI, and
the mixing statistics of frozen versus mixing chains."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from walkback.cli import main
from walkback.data.files import KNOWN_MD5, md5_of
from walkback.evaluation import EvalOptions, evaluate, evaluate_samples_file
from walkback.streams import StackedRandom
from walkback.evaluation import context as context_module
from walkback.evaluation.chains import parse_chain_steps, run_chains
from walkback.evaluation.features import FeatureNet
from walkback.metrics.classifier import ClassifierInfo, MNISTClassifier
from walkback.metrics.fid import FeatureStats, MetricsError
from walkback.model import Walkback
from walkback.models import LinearGaussianBackbone
from walkback.presets import get_preset
from walkback.config import apply_overrides
from walkback.prior import GaussianPrior
from walkback.train import train
from walkback.transition import TransitionOperator

PNG = b"\x89PNG\r\n\x1a\n"
N_TRAIN, N_TEST, N_SAMPLES = 96, 48, 24


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(f">I{array.ndim}I", 0x800 + array.ndim, *array.shape) + array.tobytes()


def _fake_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Blobs at a class-dependent place on a dark background (uint8 (n, 28, 28)) and labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 30, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 4 + 10 * (k // 5), 2 + 5 * (k % 5)
        images[i, r:r + 10, c:c + 5] = rng.integers(180, 256)
    return images, labels


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory: pytest.TempPathFactory):
    """A fake MNIST in torchvision's layout, its files registered in the md5 table."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n, seed in (("train", N_TRAIN, 0), ("t10k", N_TEST, 1)):
        images, labels = _fake_digits(n, seed)
        (raw / f"{split}-images-idx3-ubyte").write_bytes(_idx(images))
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(_idx(labels))
    patch = pytest.MonkeyPatch()
    for path in raw.iterdir():
        patch.setitem(KNOWN_MD5, path.name, md5_of(path))
    yield root
    patch.undo()


@pytest.fixture(scope="module")
def run_dir(mnist_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = apply_overrides(get_preset("mnist"), [
        "model.backbone=mlp", "mlp.hidden=16", "mlp.depth=1", "schedule.num_steps=3",
        "train.steps=2", "train.batch_size=16", "train.amp=none", "train.device=cpu",
        "train.log_every=1", f"data.root={mnist_root}", f"sample.num_samples={N_SAMPLES}",
        "sample.batch_size=8", "sample.num_paths=2"])
    path = tmp_path_factory.mktemp("runs") / "mnist"
    train(config, path, progress=False)
    return path


def _pool16(images: torch.Tensor) -> torch.Tensor:
    """Stand-in feature network: 4x4 average-pooled pixels, uint8 (B, 1, 28, 28) -> (B, 16)."""
    return F.avg_pool2d(images.float() / 255.0, 7).flatten(1)


STAND_IN = FeatureNet("test-pool16", 16, _pool16, "test stand-in", batch_size=10)


def _classifier() -> tuple[MNISTClassifier, ClassifierInfo]:
    torch.manual_seed(0)
    return MNISTClassifier().eval(), ClassifierInfo("train", "test", 0.0, 0, 0, weights_sha256="ab" * 32, file="test")


def _options(cache: Path, **changes) -> EvalOptions:
    base = dict(metrics="fid,kid,classes,bound,chain,parzen", chain_steps="0,K,2K", bound_points=20,
                device="cpu", progress=False, cache_dir=cache, feature_net=STAND_IN,
                classifier=_classifier(), block=8, command="test")
    return EvalOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def evaluated(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    cache = tmp_path_factory.mktemp("cache")
    result = evaluate(run_dir, options=_options(cache, batch_size=8))
    # checked here: later tests of this module evaluate the same run again
    assert json.loads((run_dir / "eval.json").read_text()) == result
    return result, cache


def test_eval_json_layout_and_protocols(evaluated, run_dir: Path, mnist_root: Path) -> None:
    result, _ = evaluated
    assert result["kind"] == "image run" and result["K"] == 3
    assert result["metrics"] == ["fid", "kid", "classes", "bound", "chain", "parzen"]
    splits = result["data"]["splits"]
    assert splits["test"]["num"] == N_TEST and str(mnist_root) in splits["test"]["source"]
    s = result["samples"]["protocol"]
    assert (s["num_samples"], s["K"], s["E"], s["split"]) == (N_SAMPLES, 3, 0, "test")
    ref = result["fid"]["protocol"]["reference"]
    assert ref["checksum"] == splits["test"]["checksum"] and ref["network"] == "test-pool16"
    assert result["fid"]["value"] > 0 and result["fid"]["floor"]["value"] >= 0
    assert result["fid"]["floor"]["protocol"]["split"] == "train"
    assert result["kid"]["subset_size"] == N_SAMPLES and "floor" in result["kid"]
    classes = result["classes"]
    assert len(classes["fractions"]) == 10 and sum(classes["fractions"]) == pytest.approx(1.0)
    assert classes["min_fraction"] == min(classes["fractions"]) and classes["classifier_fid"] >= 0
    assert result["parzen"]["sigma"] in result["parzen"]["sigmas"]
    assert result["parzen"]["num_validation"] == N_TRAIN // 6 and result["parzen"]["num_test"] == N_TEST


def test_bound_section(evaluated) -> None:
    bound = evaluated[0]["bound"]
    assert bound["protocol"]["M"] == [1, 2] and bound["protocol"]["num_points"] == 20
    assert bound["protocol"]["split"] == "test"
    for est in bound["estimates"]:
        assert len(est["step_bits_per_dim"]) == 3 and est["num_points"] == 20
        total = est["constant_bits_per_dim"] + est["prior_bits_per_dim"] + sum(est["step_bits_per_dim"])
        assert total == pytest.approx(est["elbo_bits_per_dim"], rel=1e-6)  # float32 terms
        assert est["bits_per_dim"] == pytest.approx(7 - est["log_bound_nats"] / (784 * np.log(2)))
    assert bound["estimates"][1]["bits_per_dim"] <= bound["estimates"][1]["elbo_bits_per_dim"] + 1e-9


def test_chain_section_and_figures(evaluated, run_dir: Path) -> None:
    result = evaluated[0]
    snaps = result["chain"]["snapshots"]
    assert [s["E"] for s in snaps] == [0, 3, 6] and [s["chain_steps"] for s in snaps] == [3, 6, 9]
    assert snaps[0]["fid"] == result["fid"]["value"]  # E = 0: the same chains as the samples
    assert snaps[0]["mixing"]["move_from_previous_per_dim"] is None
    for snap in snaps[1:]:
        mixing = snap["mixing"]
        assert mixing["move_from_previous_per_dim"] > 0 and mixing["pair_distance_per_dim"] > 0
        assert 0 <= mixing["class_change_fraction"] <= 1 and "classes" in snap and "kid" in snap
    for name in ("samples", "classes", "chain", "chain_snapshots", "bound_steps"):
        assert (run_dir / "figures" / f"{name}.png").read_bytes()[:8] == PNG, name
        protocol = result["figures"][name]["protocol"]
        assert protocol["data"] == "mnist" and protocol["K"] == 3 and len(protocol["checksum"]) == 64
        if name == "bound_steps":
            assert protocol["num_points"] == 20 and protocol["split"] == "test"
        else:
            assert protocol["num_samples"] == N_SAMPLES and "E" in protocol
    for name in ("walk_strip", "inpaint_top", "inpaint_left"):
        assert (run_dir / "figures" / f"{name}.png").read_bytes()[:8] == PNG, name
        assert result["figures"][name]["protocol"]["split"] == "test"
    assert (run_dir / "figures" / "chain.gif").read_bytes()[:6] == b"GIF89a"
    assert not list(run_dir.glob(".eval-figures-*"))


def test_results_do_not_depend_on_batch_size(evaluated, run_dir: Path) -> None:
    a, cache = evaluated
    b = evaluate(run_dir, options=_options(cache, batch_size=24))
    for key in ("fid", "kid"):
        assert b[key]["floor"] == a[key]["floor"]
    assert b["fid"]["value"] == pytest.approx(a["fid"]["value"], rel=1e-6)
    assert b["classes"]["fractions"] == a["classes"]["fractions"]
    for ea, eb in zip(a["bound"]["estimates"], b["bound"]["estimates"]):
        assert eb["bits_per_dim"] == pytest.approx(ea["bits_per_dim"], abs=1e-6)
    for sa, sb in zip(a["chain"]["snapshots"], b["chain"]["snapshots"]):
        assert sb["fid"] == pytest.approx(sa["fid"], rel=1e-6)
    c = evaluate(run_dir, options=_options(cache, batch_size=24, seed=1, metrics="fid"))
    assert c["fid"]["value"] != pytest.approx(a["fid"]["value"], rel=1e-6)  # the seed matters


def test_the_extra_temperature_changes_the_chain_past_k_only(evaluated, run_dir: Path) -> None:
    a, cache = evaluated
    hot = evaluate(run_dir, options=_options(cache, batch_size=8, metrics="fid,chain",
                                             extra_temperature=1.5))
    assert hot["samples"]["protocol"]["T_E"] == 1.5 and a["samples"]["protocol"]["T_E"] == 1.0
    assert hot["chain"]["protocol"]["T_E"] == 1.5
    snaps_a, snaps_hot = a["chain"]["snapshots"], hot["chain"]["snapshots"]
    assert snaps_hot[0]["fid"] == snaps_a[0]["fid"]  # E = 0: the same chains, draw for draw
    for sa, sh in zip(snaps_a[1:], snaps_hot[1:]):
        assert sh["fid"] != pytest.approx(sa["fid"], rel=1e-6)  # E = K, 2K: hotter steps


def test_reference_cache_and_checksum_mismatch(evaluated, run_dir: Path) -> None:
    result, cache = evaluated
    checksum = result["data"]["splits"]["test"]["checksum"]
    path = cache / "fid" / f"mnist-test-28x28-test-pool16-{checksum[:16]}.npz"
    assert Path(result["fid"]["protocol"]["reference"]["stats_file"]) == path and path.is_file()
    assert path.with_suffix(".kid.npz").is_file()
    stats = FeatureStats.load_npz(path, expected_checksum=checksum)
    stats.save_npz(path, data_checksum="0" * 64)  # as if computed from another copy
    before = (run_dir / "eval.json").read_bytes()
    with pytest.raises(MetricsError, match="checksum") as info:
        evaluate(run_dir, options=_options(cache, metrics="fid"))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert (run_dir / "eval.json").read_bytes() == before
    stats.save_npz(path, data_checksum=checksum)


def _write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_samples_file_layouts_agree(mnist_root: Path, tmp_path: Path) -> None:
    images, _ = _fake_digits(N_SAMPLES, 7)
    nchw = images[:, None]
    files = {"float": _write_npz(tmp_path / "f.npz", samples=(nchw / 127.5 - 1).astype(np.float32)),
             "nchw": _write_npz(tmp_path / "u.npz", samples=nchw),
             "nhwc": _write_npz(tmp_path / "h.npz", images=nchw.transpose(0, 2, 3, 1))}
    opts = _options(tmp_path / "cache", metrics="fid,kid,classes,parzen")
    results = {k: evaluate_samples_file(f, data="mnist", data_root=str(mnist_root), options=opts)
               for k, f in files.items()}
    for key in ("nchw", "nhwc"):
        assert results[key]["fid"]["value"] == results["float"]["fid"]["value"]
        assert results[key]["parzen"]["test_log_likelihood"] == results["float"]["parzen"]["test_log_likelihood"]
    assert results["nhwc"]["samples"]["protocol"]["layout"] == "uint8 (N, H, W, C)"
    assert (tmp_path / "f_eval" / "eval.json").is_file()
    assert (tmp_path / "f_eval" / "figures" / "samples.png").read_bytes()[:8] == PNG


@pytest.fixture
def stand_in_inception(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI builds its own networks: give it the stand-in instead of the Inception."""
    monkeypatch.setattr(context_module, "inception_net", lambda weights, device: STAND_IN)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("walkback: error: "), err
    return lines[0]


@pytest.mark.parametrize(("array", "needle"), [
    (np.zeros((5, 28, 28), np.uint8), "(5, 28, 28)"),
    (np.zeros((5, 3, 28, 28), np.uint8), "uint8 (N, 1, 28, 28)"),
    (np.full((5, 1, 28, 28), 255.0, np.float32), "values reach 255"),
    (np.full((5, 1, 28, 28), -127.5, np.float32), "median |x| 128"),
    (np.full((5, 1, 28, 28), np.nan, np.float32), "non-finite"),
    (np.zeros((5, 1, 28, 28), np.int64), "dtype int64"),
])
def test_bad_samples_are_one_line_errors_and_nothing_is_overwritten(
        array, needle, mnist_root: Path, tmp_path: Path, capsys, stand_in_inception) -> None:
    path = _write_npz(tmp_path / "bad.npz", samples=array)
    out = tmp_path / "out"
    out.mkdir()
    (out / "eval.json").write_text("previous")
    code = main(["evaluate", "--samples", str(path), "--data", "mnist", "--data-root", str(mnist_root),
                 "--metrics", "fid", "--out-dir", str(out), "--cache-dir", str(tmp_path / "c"),
                 "--no-progress", "--device", "cpu", "--overwrite"])
    line = _one_line(capsys.readouterr().err)
    assert code not in (0, 2) and needle in line and str(path) in line
    assert (out / "eval.json").read_text() == "previous" and not (out / "figures").exists()


def test_cli_samples_from_walkback_sample_and_image_run(
        run_dir: Path, mnist_root: Path, tmp_path: Path, capsys, stand_in_inception) -> None:
    samples = tmp_path / "s.npz"
    assert main(["sample", "--run-dir", str(run_dir), "--num-samples", "12", "--out", str(samples)]) == 0
    common = ["--metrics", "fid,kid", "--cache-dir", str(tmp_path / "c"), "--no-progress", "--device", "cpu"]
    assert main(["evaluate", "--samples", str(samples), "--data", "mnist", "--data-root", str(mnist_root),
                 *common]) == 0
    out = capsys.readouterr().out
    assert "FID" in out and "real-vs-real floor" in out
    result = json.loads((tmp_path / "s_eval" / "eval.json").read_text())
    assert result["samples"]["protocol"]["K"] == 3 and result["samples"]["protocol"]["num_samples"] == 12
    assert main(["evaluate", "--samples", str(samples), "--data", "mnist", "--data-root", str(mnist_root),
                 *common]) == 2  # an evaluation is there already
    assert "--overwrite" in _one_line(capsys.readouterr().err)
    assert main(["evaluate", "--samples", str(samples), "--data", "mnist", "--data-root", str(mnist_root),
                 "--metrics", "bound", *common[2:], "--overwrite"]) == 2
    assert "--run-dir" in _one_line(capsys.readouterr().err)
    assert main(["evaluate", "--run-dir", str(run_dir), *common, "--chain-steps", "0,K",
                 "--overwrite"]) == 0
    assert "samples:" in capsys.readouterr().out


def test_cli_bound_alone_runs_no_chain(run_dir: Path, tmp_path: Path, capsys,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`walkback evaluate --metrics bound` on an image run: the bound and its figure only, no
    sampling chain (every chain made to fail), and the summary prints."""
    import shutil

    import walkback.evaluation.chains as chains
    import walkback.pictures as pictures

    def refuse(*args, **kwargs):
        raise AssertionError("a sampling chain ran")

    monkeypatch.setattr(chains, "anneal", refuse)
    monkeypatch.setattr(pictures, "states_at", refuse)
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert main(["evaluate", "--run-dir", str(run), "--metrics", "bound", "--bound-points", "8",
                 "--no-progress", "--device", "cpu", "--overwrite"]) == 0
    out = capsys.readouterr().out
    assert "bound M=1" in out and "samples:" not in out
    result = json.loads((run / "eval.json").read_text())
    assert result["metrics"] == ["bound"] and "samples" not in result and "chain" not in result
    assert sorted(result["figures"]) == ["bound_steps"]


def test_start_step_starts_the_chains_part_way_up_and_says_so(
        run_dir: Path, mnist_root: Path, tmp_path: Path, capsys, stand_in_inception) -> None:
    """--start-step 2 of K = 3: the chains take 2 cooling steps from a prior fit to heated training
    images, and eval.json records it; out of range or with --samples: one-line errors."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    common = ["--metrics", "fid,chain", "--chain-steps", "0,1", "--cache-dir", str(tmp_path / "c"),
              "--no-progress", "--device", "cpu", "--no-floor", "--overwrite"]
    assert main(["evaluate", "--run-dir", str(run), "--start-step", "2", *common]) == 0
    result = json.loads((run / "eval.json").read_text())
    assert result["K"] == 2 and result["samples"]["protocol"]["K"] == 2
    assert result["start"]["start_step"] == 2 and result["start"]["trained_K"] == 3
    assert f"{N_TRAIN} train images heated 2 steps" in result["start"]["prior"]
    assert [s["chain_steps"] for s in result["chain"]["snapshots"]] == [2, 3]
    capsys.readouterr()
    (run / "eval.json").write_text("previous")
    assert main(["evaluate", "--run-dir", str(run), "--start-step", "4", *common]) == 2
    assert "start step 4: must be in 1..K = 3" in _one_line(capsys.readouterr().err)
    assert (run / "eval.json").read_text() == "previous"
    samples = tmp_path / "s.npz"
    assert main(["sample", "--run-dir", str(run), "--num-samples", "4", "--out", str(samples),
                 "--start-step", "1"]) == 2  # no prior saved for step 1 yet
    assert "walkback fit-prior --run-dir RUN --start-step 1" in _one_line(capsys.readouterr().err)
    assert main(["fit-prior", "--run-dir", str(run), "--start-step", "1", "--data-root",
                 str(mnist_root), "--device", "cpu"]) == 0
    assert main(["sample", "--run-dir", str(run), "--num-samples", "4", "--out", str(samples)]) == 0
    assert json.loads(str(np.load(samples)["meta"]))["K"] == 1  # the saved start step is the default
    assert main(["evaluate", "--samples", str(samples), "--data", "mnist", "--data-root",
                 str(mnist_root), "--start-step", "2", *common[4:]]) == 2
    assert "--start-step" in _one_line(capsys.readouterr().err)


def test_toy_run_rejects_image_flags(tmp_path: Path, capsys) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"data": {"name": "mog"}}))
    assert main(["evaluate", "--run-dir", str(tmp_path), "--metrics", "fid"]) == 2
    assert "--metrics" in _one_line(capsys.readouterr().err)


def test_parse_chain_steps() -> None:
    assert parse_chain_steps("0,K,10K,100K", 30) == [0, 30, 300, 3000]
    assert parse_chain_steps("7, 2k, 0", 5) == [0, 7, 10]
    with pytest.raises(Exception, match="--chain-steps"):
        parse_chain_steps("0,x", 5)


def _linear_model(matrix_scale: float, var: float, dim: int = 16) -> Walkback:
    """``s' = a s + N(0, var)`` with ``a = (1 + matrix_scale) / 2``: frozen (a = 1, tiny var) or mixing."""
    backbone = LinearGaussianBackbone(dim, weight=matrix_scale * torch.eye(dim),
                                      log_var=torch.full((dim,), float(np.log(var))))
    op = TransitionOperator(backbone, (dim,), form="2017", alpha=0.5, min_var=0.0)
    return Walkback(op, GaussianPrior((dim,)), torch.ones(2, dtype=torch.float64))


def _streams(n: int, block: int = 8) -> StackedRandom:
    return StackedRandom(0, 0, n, block=block)


def test_mixing_separates_frozen_from_mixing_chains() -> None:
    frozen = run_chains(_linear_model(1.0, 1e-6), 40, [0, 50], generator=_streams(40),
                        batch_size=40)
    mixing = run_chains(_linear_model(-1.0, 1.0), 40, [0, 50], generator=_streams(40),
                        batch_size=40)
    f, m = frozen.at(50), mixing.at(50)
    assert f.move_from_previous < 0.05 * f.pair_distance  # each chain stuck where it started
    assert m.move_from_previous == pytest.approx(m.pair_distance, rel=0.25)  # forgot its start
    again = run_chains(_linear_model(-1.0, 1.0), 40, [0, 50], generator=_streams(40), batch_size=16)
    assert torch.equal(again.at(50).images, m.images)
    torch.testing.assert_close(again.at(50).kept, m.kept)


def test_float_samples_with_a_few_wild_values_are_clipped_and_reported() -> None:
    from walkback.evaluation.samples import samples_from_array
    x = np.zeros((4, 1, 28, 28), np.float32) - 1.0
    x[0, 0, 0, :3] = [38.0, -7.0, 1.5]  # a chain drifting on some pixels
    x[1] = 60.0 * np.sign(np.random.default_rng(0).standard_normal((1, 28, 28)))  # diverged chain
    loaded = samples_from_array(x, (1, 28, 28), name="s.npz")
    assert loaded.images[0, 0, 0, :4].tolist() == [255, 0, 255, 0]
    assert any("outside [-1, 1]" in w for w in loaded.warnings)


def test_no_floor_reads_no_training_images(run_dir: Path, mnist_root: Path, tmp_path: Path) -> None:
    """--no-floor: FID, KID, bound and chains need only the test split (the MNIST reference)."""
    import shutil

    only_test = tmp_path / "mnist_test_only"
    shutil.copytree(mnist_root, only_test)
    for path in only_test.rglob("train-*"):
        path.unlink()
    result = evaluate(run_dir, options=_options(
        tmp_path / "cache", metrics="fid,kid,bound,chain", classifier=None, data_root=str(only_test),
        floor=False))
    assert result["fid"]["value"] > 0 and result["fid"]["floor"]["value"] is None
    assert "classes" not in result


def test_report_samples_scores_the_last_steps_mean_and_keeps_the_chains() -> None:
    """``s' = 0 + N(0, 1)`` (a = 0): every step's mean is exactly 0, so the reported samples (the
    default) are all mid-grey, while the chains (and their mixing numbers) are those of
    ``report="states"``."""
    from walkback.data.images import to_display_uint8

    sample = run_chains(_linear_model(-1.0, 1.0), 40, [0, 5], generator=_streams(40), batch_size=40,
                        report="states")
    mean = run_chains(_linear_model(-1.0, 1.0), 40, [0, 5], generator=_streams(40), batch_size=40)
    for e in (0, 5):
        assert torch.equal(mean.at(e).images, to_display_uint8(torch.zeros(40, 16)))
        assert not torch.equal(sample.at(e).images, mean.at(e).images)
        torch.testing.assert_close(mean.at(e).kept, sample.at(e).kept)
    assert mean.at(5).move_from_previous == sample.at(5).move_from_previous
    with pytest.raises(ValueError, match="report"):
        run_chains(_linear_model(-1.0, 1.0), 4, [0], generator=_streams(4, block=50),
                   batch_size=4, report="median")


@pytest.mark.parametrize("preset", ["mnist-diffusion", "mnist-fixed"])
def test_baseline_image_runs_train_and_evaluate_in_the_same_loop(
        preset: str, mnist_root: Path, tmp_path: Path) -> None:
    """The baselines on a tiny U-Net: the same loop trains them, the same evaluation scores their
    samples, chains and bound (the DDPM's on all of its levels), the same files hold them."""
    levels = ["diffusion.levels=20"] if preset == "mnist-diffusion" else []
    config = apply_overrides(get_preset(preset), [
        "unet.channels=8", "unet.channel_mults=1", "unet.num_res_blocks=1",
        "schedule.num_steps=4", "train.steps=2", "train.batch_size=8", "train.amp=none",
        "train.device=cpu", "train.log_every=1", f"data.root={mnist_root}",
        f"sample.num_samples={N_SAMPLES}", "sample.batch_size=8", *levels])
    run = tmp_path / "run"
    train(config, run, progress=False)
    result = evaluate(run, options=_options(tmp_path / "cache", metrics="fid,bound,chain",
                                              chain_steps="0,K", bound_points=8, num_paths=1))
    assert result["fid"]["value"] is not None and result["K"] == 4
    assert [s["E"] for s in result["chain"]["snapshots"]] == [0, 4]
    bound = result["bound"]
    assert bound["protocol"]["K"] == (20 if preset == "mnist-diffusion" else 4)
    assert math.isfinite(bound["estimates"][0]["bits_per_dim"])
    if preset == "mnist-diffusion":  # the denoised estimate is clamped to the pixel range
        assert result["samples"]["outside_fraction"] == 0.0


def test_sampling_needs_no_data_once_the_start_prior_is_saved(
        mnist_root: Path, tmp_path: Path, capsys) -> None:
    """Train on a copy of the data, fit the start prior, delete the copy: ``walkback sample`` and
    ``walkback.load(dir).sample`` still work, from the saved start step."""
    import shutil

    import walkback

    data = tmp_path / "data"
    shutil.copytree(mnist_root, data)
    config = apply_overrides(get_preset("mnist"), [
        "model.backbone=mlp", "mlp.hidden=16", "mlp.depth=1", "schedule.num_steps=3",
        "train.steps=2", "train.batch_size=16", "train.amp=none", "train.device=cpu",
        f"data.root={data}", "sample.start_step=2", "sample.batch_size=8"])
    run = tmp_path / "run"
    train(config, run, progress=False)
    shutil.rmtree(data)
    out = tmp_path / "s.npz"
    assert main(["sample", "--run-dir", str(run), "--num-samples", "10", "--out", str(out)]) == 0
    with np.load(out) as npz:
        assert npz["samples"].shape == npz["states"].shape == (10, 1, 28, 28)
        assert json.loads(str(npz["meta"]))["start_step"] == 2
    assert walkback.load(run).sample(4).samples.shape == (4, 1, 28, 28)
    # refitting needs the data, and says where it looked
    assert main(["fit-prior", "--run-dir", str(run), "--start-step", "1", "--overwrite",
                 "--device", "cpu"]) != 0
    assert str(data) in _one_line(capsys.readouterr().err)


def test_compare_on_images_scores_fid_kid_bound_and_chains_of_every_arm(
        mnist_root: Path, tmp_path: Path, capsys, stand_in_inception) -> None:
    """The image path of ``walkback compare`` (tiny U-Nets, the stand-in feature network): FID,
    KID, bits/dim and FID at E = 0 / K / 10K for each arm, FID of every saved model."""
    tiny = ["unet.channels=8", "unet.channel_mults=1", "unet.num_res_blocks=1",
            "schedule.num_steps=3", "train.batch_size=8", "train.amp=none", "train.log_every=1",
            "train.checkpoint_every=1000", f"data.root={mnist_root}", "sample.batch_size=8",
            "diffusion.levels=12"]
    out = tmp_path / "cmp"
    args = ["compare", "--presets", "mnist,mnist-diffusion", "--minutes", "0.04", "--save-at",
            "0.02", "--out-dir", str(out), "--device", "cpu", "--num-samples", "16",
            "--bound-points", "4", "--data-root", str(mnist_root), "--cache-dir",
            str(tmp_path / "c"), "--no-progress", *[x for item in tiny for x in ("--set", item)]]
    assert main(args) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["curve_metric"] == "fid"
    for arm in result["arms"]:
        assert math.isfinite(arm["fid"]) and math.isfinite(arm["kid"])
        assert math.isfinite(arm["bits_per_dim"])
        assert set(arm["chain_fid"]) == {"E=0", "E=K", "E=10K"}  # the table's columns (K = 3)
        assert math.isfinite(arm["classifier_fid"]) and arm["classifier_fid"] >= 0
        assert 0 <= arm["outside_fraction"] <= 1
        assert [c["minutes"] for c in arm["curve"]] == [0.02, 0.04]
        assert all(math.isfinite(c["fid"]) for c in arm["curve"])
    table = (out / "compare.md").read_text()
    assert "| mnist-diffusion | 1 |" in table
    assert "| classifier FID | smallest class | outside [-1, 1] |" in table
    assert table.count("n/a") == 0, table  # every chain column filled, FID E=K and E=10K too


def test_a_saved_model_far_off_the_data_range_is_scored_not_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot whose samples reach |x| ~ 100 (early VW training) is scored on its images,
    clipped to [-1, 1] as a picture of them is, instead of being refused as 0..255 data."""
    import types

    import walkback.compare as compare_module
    from walkback.compare import CompareOptions, _snapshot_fid
    from walkback.config import apply_overrides
    from walkback.evaluation.samples import load_samples_file
    from walkback.presets import get_preset

    far = 100 * torch.randn(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model = types.SimpleNamespace(prior=types.SimpleNamespace(mean=torch.zeros(1)),
                                  sample=lambda n, **_: types.SimpleNamespace(samples=far[:n]))
    seen = {}

    def score(path, **kwargs):
        seen["images"] = load_samples_file(path, (1, 28, 28)).model_space
        return {"fid": {"value": 123.0}}

    monkeypatch.setattr(compare_module, "evaluate_samples_file", score)
    config = apply_overrides(get_preset("mnist"), [])
    options = CompareOptions(presets=["mnist"], minutes=1.0, out_dir=tmp_path, num_samples=6,
                             device="cpu")
    assert _snapshot_fid(model, config, tmp_path, options) == 123.0
    images = seen["images"]
    assert images.abs().max() <= 1.0 and (images.abs() == 1.0).float().mean() > 0.9


def _evaluate_in_process(rank: int, world: int, port: int, run: str, cache: str,
                         md5: dict) -> None:
    """Worker of the torchrun-style evaluation: process ``rank`` of ``world`` (gloo); ``md5``:
    the fake MNIST files' checksums (registered in the parent by the fixture)."""
    import os

    from walkback import distributed

    KNOWN_MD5.update(md5)
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        evaluate(run, options=_options(Path(cache), metrics="fid,kid,classes,bound,chain",
                                       batch_size=8, floor=False))
    finally:
        distributed.shutdown()


def test_two_processes_evaluate_as_one(run_dir: Path, tmp_path: Path) -> None:
    """Chains, bound and sample features shared by 2 processes (rank 0 reports and writes): the
    numbers of one process, up to float summation order."""
    import shutil
    import socket

    import torch.multiprocessing as mp

    one, two = tmp_path / "one", tmp_path / "two"
    for run in (one, two):
        shutil.copytree(run_dir, run)
    expected = evaluate(one, options=_options(tmp_path / "cache1",
                                              metrics="fid,kid,classes,bound,chain", batch_size=8,
                                              floor=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    md5 = {name: KNOWN_MD5[name] for name in KNOWN_MD5 if "ubyte" in name}
    mp.spawn(_evaluate_in_process, args=(2, port, str(two), str(tmp_path / "cache2"), md5),
             nprocs=2, join=True)
    got = json.loads((two / "eval.json").read_text())
    assert got["fid"]["value"] == pytest.approx(expected["fid"]["value"], rel=1e-6)
    assert got["kid"]["mean"] == pytest.approx(expected["kid"]["mean"], rel=1e-6)
    assert got["classes"]["fractions"] == expected["classes"]["fractions"]
    assert got["classes"]["classifier_fid"] == pytest.approx(expected["classes"]["classifier_fid"],
                                                             rel=1e-6)
    for a, b in zip(got["bound"]["estimates"], expected["bound"]["estimates"]):
        assert a["bits_per_dim"] == pytest.approx(b["bits_per_dim"], rel=1e-9)
        assert a["num_points"] == b["num_points"] == 20
    for a, b in zip(got["chain"]["snapshots"], expected["chain"]["snapshots"]):
        assert a["fid"] == pytest.approx(b["fid"], rel=1e-6)
        for key in ("move_from_previous_per_dim", "last_step_move_per_dim", "pair_distance_per_dim"):
            want = b["mixing"][key]
            assert a["mixing"][key] == (None if want is None else pytest.approx(want, rel=1e-9))
