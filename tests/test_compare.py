"""``walkback compare``: every arm trains for the same minutes through the one loop, is scored as a
user gets it, and lands in one table, one JSON and one plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from walkback.cli import main
from walkback.compare import CompareOptions, _sampling_rate

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("compare")
    code = main(["compare", "--presets", "mog,mog-diffusion", "--minutes", "0.05", "--save-at",
                 "0.02", "--out-dir", str(out), "--device", "cpu", "--num-samples", "300",
                 "--set", "mlp.hidden=32", "--no-progress"])
    assert code == 0
    return out


def test_every_arm_trains_for_the_same_minutes_and_is_scored(compared: Path) -> None:
    result = json.loads((compared / "compare.json").read_text())
    assert [a["preset"] for a in result["arms"]] == ["mog", "mog-diffusion"]
    assert result["minutes"] == 0.05 and result["curve_metric"] == "fraction_within_3std"
    for arm in result["arms"]:
        assert 3.0 <= arm["train_seconds"] < 10.0, arm["train_seconds"]
        assert arm["transitions_per_s"] > 0 and arm["images_per_s"] > 0
        assert arm["sampling_evals_per_s"] > 0 and arm["K"] == 30
        assert [c["minutes"] for c in arm["curve"]] == [0.02, 0.05]
        assert set(arm["chain"]) == {"E=0", "E=K", "E=10K"}
        assert isinstance(arm["bound_nats"], float)
        assert (Path(arm["run_dir"]) / "snapshots" / "min0.02" / "model.safetensors").is_file()
        assert json.loads((Path(arm["run_dir"]) / "compare_arm.json").read_text()) == arm
    vw, ddpm = result["arms"]
    # VW scores K walk-back terms per training example, the DDPM one denoising term
    assert vw["transitions_per_s"] == pytest.approx(30 * vw["images_per_s"], rel=1e-6)
    assert ddpm["transitions_per_s"] == pytest.approx(ddpm["images_per_s"], rel=1e-6)
    table = (compared / "compare.md").read_text()
    assert "| mog | 1 |" in table and "| mog-diffusion | 1 |" in table
    assert (compared / "compare.png").read_bytes()[:8] == PNG


def test_a_second_compare_is_refused_and_mixed_data_sets_are_errors(
        compared: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["compare", "--presets", "mog", "--minutes", "0.05", "--device", "cpu", "--no-progress"]
    assert main([*args, "--out-dir", str(compared)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["compare", "--presets", "mog,spiral", "--minutes", "0.01", "--device", "cpu",
                 "--out-dir", str(tmp_path / "x")]) == 2
    assert "different data sets" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["compare", "--presets", "mog,nosuch", "--minutes", "0.01", "--out-dir",
                 str(tmp_path / "y")]) == 2
    assert "nosuch" in capsys.readouterr().err


def test_a_stopped_comparison_continues_from_the_kept_arms(compared: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Run again with --overwrite: nothing is trained or scored again (both are refused here),
    the table is rewritten from the kept arms."""
    import shutil

    import walkback.compare as compare_module

    out = tmp_path / "again"
    shutil.copytree(compared, out)
    for arm in json.loads((compared / "compare.json").read_text())["arms"]:  # the copies' paths
        copy = out / Path(arm["run_dir"]).relative_to(compared)
        saved = json.loads((copy / "compare_arm.json").read_text())
        (copy / "compare_arm.json").write_text(json.dumps({**saved, "run_dir": str(copy)}))

    def refuse(*args, **kwargs):
        raise AssertionError("retrained or rescored a kept arm")

    monkeypatch.setattr(compare_module, "train", refuse)
    monkeypatch.setattr(compare_module, "_arm_result", refuse)
    assert main(["compare", "--presets", "mog,mog-diffusion", "--minutes", "0.05", "--save-at",
                 "0.02", "--out-dir", str(out), "--device", "cpu", "--num-samples", "300",
                 "--set", "mlp.hidden=32", "--no-progress", "--overwrite"]) == 0
    again = json.loads((out / "compare.json").read_text())
    assert [a["run_dir"] for a in again["arms"]] == [str(out / "mog" / "seed0"),
                                                     str(out / "mog-diffusion" / "seed0")]


def test_variants_at_equal_minibatches_train_their_own_overrides_in_processes(
        tmp_path: Path) -> None:
    """``--variant`` arms get their preset with their own overrides; ``--steps`` trains every arm
    for exactly that many minibatches (no timed snapshots); ``--jobs 2 --gpus 1`` trains the arms
    as two processes at a time."""
    out = tmp_path / "screen"
    assert main(["compare", "--presets", "mog", "--variant", "wide", "mog", "mlp.hidden=48",
                 "--variant", "floor", "mog", "model.min_var_at_1=1e-4", "--steps", "7",
                 "--out-dir", str(out), "--device", "cpu", "--num-samples", "200", "--jobs", "2",
                 "--gpus", "1", "--set", "mlp.hidden=32", "--no-progress"]) == 0
    result = json.loads((out / "compare.json").read_text())
    assert [a["preset"] for a in result["arms"]] == ["mog", "wide", "floor"]
    assert result["steps"] == 7 and result["minutes"] is None and result["save_at"] == []
    assert result["variants"]["wide"] == {"preset": "mog", "sets": ["mlp.hidden=48"]}
    configs = {a["preset"]: json.loads((Path(a["run_dir"]) / "config.json").read_text())
               for a in result["arms"]}
    assert configs["mog"]["mlp"]["hidden"] == 32 and configs["wide"]["mlp"]["hidden"] == 48
    assert configs["floor"]["model"]["min_var_at_1"] == 1e-4
    assert configs["mog"]["model"]["min_var_at_1"] == 0.0
    for arm in result["arms"]:
        assert arm["train_steps"] == 7
        assert not (Path(arm["run_dir"]) / "snapshots").exists()
        assert (Path(arm["run_dir"]).parent / "seed0.log").is_file()  # trained in a process
        assert len(arm["curve"]) == 1 and arm["curve"][0]["step"] == 7
    table = (out / "compare.md").read_text()
    assert "7 minibatches per arm" in table and "| wide | 1 |" in table
    assert "variant `floor`: `mog` with `model.min_var_at_1=1e-4`" in table


@pytest.mark.parametrize("args, message", [
    (["--variant", "mog", "mog", "mlp.hidden=8", "--presets", "mog", "--steps", "2"],
     "name of a compared preset"),
    (["--variant", "a/b", "mog", "--steps", "2"], "a label is letters"),
    (["--variant", "a", "mog", "hidden", "--steps", "2"], "'hidden' is not KEY=VALUE"),
    (["--variant", "a", "--steps", "2"], "needs LABEL PRESET"),
    (["--variant", "a", "nosuch", "--steps", "2"], "nosuch"),
    (["--presets", "mog"], "--minutes (equal time) or --steps"),
    (["--presets", "mog", "--steps", "2", "--jobs", "2", "--gpus", "3"], "more than --jobs"),
])
def test_bad_variants_and_budgets_are_refused_before_training(
        args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["compare", *args, "--out-dir", str(tmp_path / "x"), "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_sampling_rate_is_timed_after_a_warm_up_at_the_same_shape() -> None:
    """cuDNN autotunes each new input shape: a warm-up of another batch size left the autotuning
    inside the timed run of a process's first arm. Both runs sample ``num`` chains."""
    class Recorder:
        start_step, active_temperatures = 0, [1.0] * 30

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def sample(self, n: int, generator: torch.Generator) -> None:
            self.sizes.append(n)

    model = Recorder()
    options = CompareOptions(presets=["mog"], out_dir="unused", minutes=1.0)
    rate = _sampling_rate(model, 1000, torch.device("cpu"), options)  # type: ignore[arg-type]
    assert model.sizes == [1000, 1000] and rate > 0


def test_an_arm_that_fails_is_reported_and_the_others_are_scored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A diverged arm (training raises ``TrainingError``) is marked failed in the table and the
    JSON, the arm after it still trains and is scored, and the command exits non-zero. Each arm
    on the clock trains one untimed minibatch first, in a scratch folder that is deleted."""
    import walkback.compare as compare_module
    from walkback.errors import TrainingError

    real_train, calls = compare_module.train, []

    def train(config, run_dir, **kwargs):
        calls.append((Path(run_dir).name, config.train.steps, config.train.time_limit_s))
        if "mog-diffusion" in str(run_dir) and config.train.steps > 1:
            raise TrainingError("non-finite loss (nan) at minibatch 3; stopping, nothing saved")
        return real_train(config, run_dir, **kwargs)

    monkeypatch.setattr(compare_module, "train", train)
    out = tmp_path / "failing"
    assert main(["compare", "--presets", "mog-diffusion,mog", "--minutes", "0.02", "--out-dir",
                 str(out), "--device", "cpu", "--num-samples", "200", "--set", "mlp.hidden=32",
                 "--no-progress"]) == 1
    assert "1 of 2 arms failed (first: mog-diffusion seed 0: non-finite" in capsys.readouterr().err
    assert calls == [("seed0.warm-up", 1, 0.0), ("seed0", 10**9, 1.2)] * 2
    assert sorted(p.name for p in (out / "mog").iterdir()) == ["seed0"]
    result = json.loads((out / "compare.json").read_text())
    failed, scored = result["arms"]
    assert failed["preset"] == "mog-diffusion" and "non-finite" in failed["failed"]
    assert scored["preset"] == "mog" and scored["train_steps"] > 1 and "failed" not in scored
    table = (out / "compare.md").read_text()
    assert "| mog-diffusion | 0 (1 failed) | n/a |" in table and "| mog | 1 |" in table
