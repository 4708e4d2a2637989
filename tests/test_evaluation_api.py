"""``walkback.evaluate(run, metrics=[...])``: one entry point for 2-D and image runs; the bound
alone runs no sampling chain; the numbers equal those of the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import walkback
from walkback.cli import main
from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.presets import get_preset
from walkback.train import train

TINY = ["train.steps=3", "mlp.hidden=16", "data.num_train=2000", "data.num_heldout=400",
        "schedule.num_steps=5", "sample.num_samples=200", "sample.num_paths=3",
        "train.log_every=1", "train.device=cpu"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("runs") / "mog"
    train(apply_overrides(get_preset("mog"), TINY), path, progress=False)
    return path


def _no_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every sampling chain of the evaluation fail loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a sampling chain ran")

    import walkback.evaluation.chains as chains
    import walkback.pictures as pictures
    monkeypatch.setattr(chains, "anneal", refuse)
    monkeypatch.setattr(pictures, "states_at", refuse)


def test_toy_bound_alone_runs_no_chain(toy_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_chains(monkeypatch)
    result = walkback.evaluate(toy_run, metrics=["bound"], progress=False)
    assert result["metrics"] == ["bound"] and "chain" not in result
    assert [e["num_paths"] for e in result["bound"]["estimates"]] == [1, 3]
    assert json.loads((toy_run / "eval.json").read_text()) == result
    assert "samples" not in result["figures"] and "heating" in result["figures"]


def test_toy_evaluate_equals_the_command_line(toy_run: Path, tmp_path: Path) -> None:
    """The library call and ``walkback evaluate`` give the same numbers (one path)."""
    lib = walkback.evaluate(toy_run, num_samples=100, seed=2, progress=False)
    assert lib["metrics"] == ["bound", "chain"]
    assert main(["evaluate", "--run-dir", str(toy_run), "--num-samples", "100", "--seed", "2",
                 "--no-progress", "--overwrite"]) == 0
    cli = json.loads((toy_run / "eval.json").read_text())
    assert cli["chain"] == lib["chain"] and cli["bound"] == lib["bound"]
    snaps = lib["chain"]["snapshots"]
    assert [s["E"] for s in snaps] == [0, 5, 50]
    assert snaps[0]["mixing"]["mean_move_from_previous"] is None
    assert all(s["mixing"]["mean_last_step_move"] > 0 for s in snaps)


def test_metric_names_are_checked_per_kind(toy_run: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric fid for mog"):
        walkback.evaluate(toy_run, metrics="fid")
    with pytest.raises(TypeError, match="unknown setting colour"):
        walkback.evaluate(toy_run, colour="red")
    with pytest.raises(ConfigError, match="--report median"):
        walkback.evaluate(toy_run, report="median")
