"""The command line, run in-process: train, sample, evaluate, show-config and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from walkback.cli import main
from walkback.config import config_from_dict, config_to_dict
from walkback.presets import get_preset

TINY = [
    "train.steps=3", "mlp.hidden=16", "data.num_train=2000", "data.num_heldout=400",
    "schedule.num_steps=5", "sample.num_samples=200", "sample.num_paths=3",
    "train.log_every=1", "train.device=cpu",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


def _train_args(run_dir: Path, preset: str = "mog", extra: list[str] | None = None) -> list[str]:
    return ["train", "--preset", preset, *_sets(TINY + (extra or [])), "--run-dir", str(run_dir),
            "--no-progress"]


def _one_line_error(err: str) -> str:
    """The stderr of a failed command: exactly one line, ``walkback: error: ...``, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("walkback: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained mog run shared by the tests of this module (do not modify it)."""
    path = tmp_path_factory.mktemp("runs") / "mog"
    assert main(_train_args(path)) == 0
    return path


def test_train_writes_run_folder(run_dir: Path) -> None:
    for name in ("config.json", "metrics.jsonl", "model/model.safetensors", "model/config.json"):
        assert (run_dir / name).is_file(), name
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["train"]["steps"] == 3 and saved["mlp"]["hidden"] == 16


def test_sample_writes_npz_and_png(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "samples.npz"
    code = main(["sample", "--run-dir", str(run_dir), "--num-samples", "50", "--extra-steps", "2",
                 "--seed", "3", "--out", str(out)])
    assert code == 0
    assert str(out) in capsys.readouterr().out
    with np.load(out) as npz:
        assert npz["samples"].dtype == np.float32 and npz["samples"].shape == (50, 2)
        assert npz["states"].shape == (50, 2)
        assert not np.array_equal(npz["samples"], npz["states"])
        meta = json.loads(str(npz["meta"]))
    assert meta["K"] == 5 and meta["E"] == 2 and meta["seed"] == 3 and meta["N"] == 50
    assert meta["reported"].startswith("samples") and meta["states"].startswith("states")
    assert out.with_suffix(".png").read_bytes()[:8] == PNG_SIGNATURE


def test_sample_is_deterministic_and_refuses_overwrite(run_dir: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    base = ["sample", "--run-dir", str(run_dir), "--num-samples", "20", "--seed", "1"]
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    assert main([*base, "--out", str(a)]) == 0 and main([*base, "--out", str(b)]) == 0
    with np.load(a) as npz_a, np.load(b) as npz_b:
        np.testing.assert_array_equal(npz_a["samples"], npz_b["samples"])
    before = a.read_bytes()
    capsys.readouterr()
    assert main([*base, "--seed", "2", "--out", str(a)]) != 0
    assert str(a) in _one_line_error(capsys.readouterr().err)
    assert a.read_bytes() == before
    assert main([*base, "--seed", "2", "--out", str(a), "--overwrite"]) == 0
    assert a.read_bytes() != before


def test_sample_runs_a_toy_run_on_the_cpu_when_a_gpu_is_present(
        run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As `walkback evaluate`: --device defaults to auto, which keeps a 2-D run on the CPU (the
    same chains as on a machine without a GPU) and would take the GPU for images."""
    base = ["sample", "--run-dir", str(run_dir), "--num-samples", "20", "--seed", "1"]
    assert main([*base, "--out", str(tmp_path / "a.npz")]) == 0
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert main([*base, "--out", str(tmp_path / "b.npz")]) == 0
    with np.load(tmp_path / "a.npz") as a, np.load(tmp_path / "b.npz") as b:
        np.testing.assert_array_equal(a["samples"], b["samples"])


def test_evaluate_writes_eval_json_and_figures(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", "--run-dir", str(run_dir), "--num-samples", "100", "--seed", "0",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "modes" in out and "nats/point" in out
    result = json.loads((run_dir / "eval.json").read_text())
    assert {"run_dir", "command", "machine", "data", "K", "seed", "chain", "bound",
            "figures"} <= set(result)
    assert result["K"] == 5
    snapshots = result["chain"]["snapshots"]
    assert [s["E"] for s in snapshots] == [0, 5, 50]
    for snap in snapshots:
        assert {"fraction_within_3std", "modes_covered", "mode_weights", "nearest_distance_ratio",
                "mmd"} <= set(snap["metrics"])
        assert "mean_move_from_previous" in snap["mixing"]
    assert snapshots[0]["mixing"]["mean_move_from_previous"] is None
    assert snapshots[2]["mixing"]["mean_move_from_previous"] > 0
    protocol = result["chain"]["protocol"]
    assert protocol["num_samples"] == 100 and protocol["reported"].startswith("samples")
    estimates = result["bound"]["estimates"]
    assert [e["num_paths"] for e in estimates] == [1, 3]
    for est in estimates:
        assert {"log_bound", "elbo", "step_terms", "prior_term"} <= set(est)
        assert len(est["step_terms"]) == 5
        assert est["log_bound"] >= est["elbo"] - 1e-4  # IW bound >= plain bound (Jensen)
    assert result["bound"]["protocol"]["split"] == "heldout"
    names = ("samples", "samples_E10K", "heating", "cooling", "drift", "loss", "chain")
    for name in names:
        assert (run_dir / "figures" / f"{name}.png").read_bytes()[:8] == PNG_SIGNATURE, name
        assert name in result["figures"]


def test_show_config_round_trips(capsys: pytest.CaptureFixture) -> None:
    assert main(["show-config", "--preset", "spiral", "--set", "train.lr=0.002"]) == 0
    printed = json.loads(capsys.readouterr().out)
    config = config_from_dict(printed)
    assert config.data.name == "spiral" and config.train.lr == 0.002
    expected = get_preset("spiral")
    expected.train.lr = 0.002
    assert config_to_dict(config) == config_to_dict(expected) == printed


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["show-config", "--preset", "nosuchpreset"], "nosuchpreset"),
        (["show-config", "--preset", "mog", "--set", "train.nosuchkey=1"], "train.nosuchkey"),
        (["show-config", "--preset", "mog", "--set", "train.lr=abc"], "train.lr"),
        (["show-config", "--preset", "mog", "--set", "data.name=nosuchdata"], "data.name"),
    ],
)
def test_config_errors_exit_2(args: list[str], needle: str, capsys: pytest.CaptureFixture) -> None:
    assert main(args) == 2
    captured = capsys.readouterr()
    assert needle in _one_line_error(captured.err)
    assert captured.out == ""


def test_train_config_error_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_train_args(run, extra=["train.lr=abc"])) == 2
    assert "train.lr" in _one_line_error(capsys.readouterr().err)
    assert not (run / "config.json").exists()


def test_argparse_usage_error_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["sample", "--run-dir", "x"])  # --num-samples and --out missing
    assert info.value.code == 2


def test_second_train_refused(run_dir: Path, capsys: pytest.CaptureFixture) -> None:
    before = (run_dir / "config.json").read_bytes()
    assert main(_train_args(run_dir, extra=["train.lr=0.5"])) != 0
    assert "--resume" in _one_line_error(capsys.readouterr().err)
    assert (run_dir / "config.json").read_bytes() == before


def test_resume_extends_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert main(_train_args(run, extra=["train.steps=2"])) == 0
    assert main(["train", "--resume", "--set", "train.steps=4", "--run-dir", str(run),
                 "--no-progress"]) == 0
    assert "step 4" in capsys.readouterr().out
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert json.loads((run / "config.json").read_text())["train"]["steps"] == 4


def test_sample_without_model(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "unfinished"  # a run folder whose training never wrote model/
    run.mkdir()
    (run / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    out = tmp_path / "s.npz"
    assert main(["sample", "--run-dir", str(run), "--num-samples", "5", "--out", str(out)]) != 0
    assert str(run / "model" / "model.safetensors") in _one_line_error(capsys.readouterr().err)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["sample", "--run-dir", str(empty), "--num-samples", "5", "--out", str(out)]) != 0
    assert "config.json" in _one_line_error(capsys.readouterr().err)
    assert not out.exists()


def test_sample_corrupt_model(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "copy"
    (run / "model").mkdir(parents=True)
    for name in ("config.json", "model/config.json"):
        (run / name).write_bytes((run_dir / name).read_bytes())
    weights = (run_dir / "model" / "model.safetensors").read_bytes()
    (run / "model" / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    for command in (["sample", "--num-samples", "5", "--out", str(tmp_path / "s.npz")],
                    ["evaluate", "--no-progress"]):
        code = main([command[0], "--run-dir", str(run), *command[1:]])
        assert code not in (0, 2)
        assert "model.safetensors" in _one_line_error(capsys.readouterr().err)


def test_a_second_evaluation_needs_overwrite_and_changes_nothing_without_it(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "eval.json").write_text("previous")
    assert main(["evaluate", "--run-dir", str(run), "--num-samples", "50", "--no-progress"]) == 2
    assert "--overwrite" in _one_line_error(capsys.readouterr().err)
    assert (run / "eval.json").read_text() == "previous"
    assert main(["evaluate", "--run-dir", str(run), "--num-samples", "50", "--no-progress",
                 "--overwrite"]) == 0
    assert json.loads((run / "eval.json").read_text())["chain"]["protocol"]["num_samples"] == 50
