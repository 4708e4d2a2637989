"""The training loop: determinism, resume == uninterrupted, the NaN guard, run-folder safety."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import walkback.train as train_module
from walkback.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint
from walkback.config import Config, apply_overrides
from walkback.errors import CheckpointError, ConfigError, TrainingError
from walkback.runs import holds_run
from walkback.train import train

TINY = [
    "mlp.hidden=16", "mlp.depth=2", "train.steps=20", "data.num_train=2000",
    "data.num_heldout=200", "schedule.num_steps=5", "train.batch_size=200", "train.log_every=5",
    "train.checkpoint_every=5", "train.device=cpu", "train.keep_checkpoints=2",
]
TIMING = ("updates_per_s", "images_per_s", "transitions_per_s", "train_seconds")


def _config(*extra: str) -> Config:
    return apply_overrides(Config(), [*TINY, *extra])


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _steps(run_dir: Path) -> list[int]:
    return [int(p.stem.split("_")[1]) for p in list_checkpoints(run_dir / "checkpoints")]


def _assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class _Kill:
    """A callback that simulates a kill (KeyboardInterrupt) right after step ``at``."""

    def __init__(self, at: int | None = None) -> None:
        self.at, self.seen = at, []

    def __call__(self, step: int) -> None:
        self.seen.append(step)
        if step == self.at:
            raise KeyboardInterrupt


# ---------------------------------------------------------------- (i) determinism


def test_same_seed_same_weights_and_samples(tmp_path: Path) -> None:
    a = train(_config(), tmp_path / "a", progress=False)
    b = train(_config(), tmp_path / "b", progress=False)
    c = train(_config("seed=1"), tmp_path / "c", progress=False)
    assert a.step == b.step == 20
    _assert_same_tensors(a.model.state_dict(), b.model.state_dict())
    _assert_same_tensors(load_checkpoint(latest_checkpoint(tmp_path / "a" / "checkpoints")).tensors,
                         load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints")).tensors)
    assert not torch.equal(a.model.operator.backbone.head.weight, c.model.operator.backbone.head.weight)
    # training moved the weights away from the (zero) initial head
    assert float(a.model.operator.backbone.head.weight.abs().max()) > 0
    sa = a.model.sample(64, extra_steps=2, generator=torch.Generator().manual_seed(3))
    sb = b.model.sample(64, extra_steps=2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sa.samples, sb.samples) and torch.equal(sa.states, sb.states)
    assert (tmp_path / "a" / "model" / "model.safetensors").is_file()


# ---------------------------------------------------------------- (ii) resume == uninterrupted


@pytest.mark.parametrize("mode", ["online", "accumulate", "transitions", "accumulate objective=bound",
                                  "transitions temperature_jitter=true", "online ema_warmup=true",
                                  "transitions input_noise=0.2"])
def test_resume_after_kill_equals_uninterrupted_run(tmp_path: Path, mode: str) -> None:
    config = _config(*(f"train.{item}" for item in f"mode={mode}".split()))
    full = train(config, tmp_path / "a", progress=False)

    killed = _Kill(at=13)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", progress=False, callback=killed)
    assert killed.seen[-1] == 13
    assert _steps(tmp_path / "b") == [5, 10]
    assert [r["step"] for r in _metrics(tmp_path / "b")] == [5, 10]
    assert not (tmp_path / "b" / "model").exists()

    resumed_steps = _Kill()
    resumed = train(config, tmp_path / "b", resume=True, progress=False, callback=resumed_steps)
    assert resumed_steps.seen == list(range(11, 21))  # continued from the step-10 checkpoint
    assert resumed.step == full.step == 20

    # final weights, EMA, prior buffers, optimizer and RNG state: bit-identical
    ckpt_a = load_checkpoint(latest_checkpoint(tmp_path / "a" / "checkpoints"))
    ckpt_b = load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert ckpt_a.meta["step"] == ckpt_b.meta["step"] == 20
    _assert_same_tensors(ckpt_a.tensors, ckpt_b.tensors)
    assert {"model.prior.mean", "model.prior.var", "ema.prior.mean", "ema.prior.var"} <= ckpt_a.tensors.keys()
    _assert_same_tensors(full.model.state_dict(), resumed.model.state_dict())
    assert _steps(tmp_path / "a") == _steps(tmp_path / "b") == [15, 20]

    # metrics.jsonl: same steps and same values (up to wall-clock throughput)
    ma, mb = _metrics(tmp_path / "a"), _metrics(tmp_path / "b")
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == [5, 10, 15, 20]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING} for r in rs]  # noqa: E731
    assert strip(ma) == strip(mb)


# ---------------------------------------------------------------- (iii) NaN guard


@pytest.mark.parametrize("mode", ["online", "accumulate", "transitions"])
def test_huge_learning_rate_raises_training_error_naming_step_and_term(tmp_path: Path, mode: str) -> None:
    with pytest.raises(TrainingError, match=r"step \d+.*-log p_T\(s_t-1\|s_t\)"):
        train(_config(f"train.mode={mode}", "train.lr=1e30"), tmp_path, progress=False)
    assert list_checkpoints(tmp_path / "checkpoints") == []
    assert not (tmp_path / "model").exists()


def test_nan_loss_midway_stops_without_writing_a_new_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """A loss that turns NaN in minibatch index 7 (after the step-5 checkpoint), heating step 4."""
    real, calls = train_module.walkback_step_loss, {"n": 0}
    fail_at = 7 * 5 + 3  # online mode: K = 5 calls per minibatch

    def poisoned(*args, **kwargs) -> torch.Tensor:
        loss = real(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == fail_at + 1 else loss

    monkeypatch.setattr(train_module, "walkback_step_loss", poisoned)
    with pytest.raises(TrainingError, match=r"step 7, heating step t=4, term -log p_T") as info:
        train(_config("train.mode=online"), tmp_path, progress=False)
    assert "nan" in str(info.value)
    assert _steps(tmp_path) == [5]
    assert [r["step"] for r in _metrics(tmp_path)] == [5]
    assert not (tmp_path / "model").exists()


def test_nan_loss_in_accumulate_mode(tmp_path: Path, monkeypatch) -> None:
    real, calls = train_module.walkback_loss, {"n": 0}

    def poisoned(*args, **kwargs) -> torch.Tensor:
        loss = real(*args, **kwargs)
        calls["n"] += 1
        return loss * float("inf") if calls["n"] == 12 else loss  # minibatch index 11

    monkeypatch.setattr(train_module, "walkback_loss", poisoned)
    with pytest.raises(TrainingError, match=r"step 11, sum over 5 heating steps of -log p_T"):
        train(_config("train.mode=accumulate"), tmp_path, progress=False)
    assert _steps(tmp_path) == [5, 10]
    assert not (tmp_path / "model").exists()


def test_nan_in_transitions_mode_names_the_first_bad_update_of_the_minibatch(
        tmp_path: Path, monkeypatch) -> None:
    """The minibatch's updates are checked together at its end: the updates after a NaN run on
    broken weights, yet the error names the first bad one and nothing new is saved."""
    real, calls = train_module.transition_walkback_loss, {"n": 0}
    per_minibatch = 5 * 64 // 16  # K transitions of each of the 64 paths, 16 per update

    def poisoned(*args, **kwargs) -> torch.Tensor:
        loss = real(*args, **kwargs)
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 6 * per_minibatch + 3 else loss

    monkeypatch.setattr(train_module, "transition_walkback_loss", poisoned)
    with pytest.raises(TrainingError, match=r"non-finite loss \(nan\) at step 6, update 3: 16 "
                       r"transitions"):
        train(_config("train.mode=transitions", "train.batch_size=64",
                      "train.transition_batch=16"), tmp_path, progress=False)
    assert calls["n"] == 7 * per_minibatch  # the rest of the minibatch ran before the check
    assert _steps(tmp_path) == [5]
    assert not (tmp_path / "model").exists()


def test_the_guard_names_a_non_finite_gradient_norm() -> None:
    guard = train_module._FiniteGuard()
    guard.record(torch.tensor(1.0), torch.tensor(2.0), "update 1")
    guard.record(torch.tensor(1.5), torch.tensor(float("inf")), "update 2")
    guard.record(torch.tensor(float("nan")), torch.tensor(1.0), "update 3")
    with pytest.raises(TrainingError, match=r"^non-finite gradient norm at update 2; stopping"):
        guard.check()
    guard.check()  # emptied by the check: nothing left to report


def test_transitions_mode_makes_k_times_batch_over_size_updates(tmp_path: Path) -> None:
    """5 heating steps x 200 paths = 1000 transitions per minibatch, 300 per update -> 4 updates,
    the last of 100; the per-update terms average to the path's mean step term."""
    train(_config("train.mode=transitions", "train.transition_batch=300", "train.steps=5"),
          tmp_path, progress=False)
    record = _metrics(tmp_path)[-1]
    assert record["updates"] == 4 and record["num_heating_steps"] == 5
    assert record["updates_per_s"] > 0 and torch.isfinite(torch.tensor(record["loss_nats"]))


# ---------------------------------------------------------------- (iv) run-folder safety


def test_existing_run_is_refused_without_resume_or_overwrite(tmp_path: Path) -> None:
    train(_config("train.steps=5"), tmp_path, progress=False)
    before = (tmp_path / "config.json").read_bytes()
    ckpts_before = _steps(tmp_path)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(_config("train.steps=10", "train.lr=0.5"), tmp_path, progress=False)
    assert (tmp_path / "config.json").read_bytes() == before
    assert _steps(tmp_path) == ckpts_before
    # overwrite starts afresh: the new config is written, old checkpoints are gone
    train(_config("train.steps=3", "train.checkpoint_every=3"), tmp_path, overwrite=True, progress=False)
    assert json.loads((tmp_path / "config.json").read_text())["train"]["steps"] == 3
    assert _steps(tmp_path) == [3]


def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_config(), tmp_path / "empty", resume=True, progress=False)


# ---------------------------------------------------------------- (v) corrupt checkpoint on resume


def _killed_run(run_dir: Path) -> Path:
    with pytest.raises(KeyboardInterrupt):
        train(_config(), run_dir, progress=False, callback=_Kill(at=13))
    latest = latest_checkpoint(run_dir / "checkpoints")
    assert latest is not None and latest.name == "ckpt_00000010.json"
    return latest


def _uninterrupted(run_dir: Path) -> dict[str, torch.Tensor]:
    return train(_config(), run_dir, progress=False).model.state_dict()


@pytest.mark.parametrize("damage", ["weights", "sidecar", "edited step"])
def test_resume_falls_back_to_the_newest_intact_checkpoint_with_a_warning(
        tmp_path: Path, damage: str) -> None:
    """A damaged newest checkpoint (flipped weight bytes, a truncated sidecar, or a sidecar whose
    step was edited: the metadata inside the weights file disagrees) is skipped with a warning
    naming it and the checkpoint used instead; the resumed run equals an uninterrupted one."""
    latest = _killed_run(tmp_path / "b")
    weights = latest.with_suffix(".safetensors")
    if damage == "weights":
        data = bytearray(weights.read_bytes())
        data[-3] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif damage == "sidecar":
        latest.write_text(latest.read_text()[:25])
    else:
        meta = json.loads(latest.read_text())
        meta["step"] = 12
        latest.write_text(json.dumps(meta))
    named = weights.name if damage == "weights" else latest.name
    with pytest.warns(UserWarning, match=rf"{named}.*previous checkpoint ckpt_00000005\.json"):
        resumed = train(_config(), tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 20
    _assert_same_tensors(resumed.model.state_dict(), _uninterrupted(tmp_path / "a"))


def test_resume_with_no_intact_checkpoint_names_the_newest(tmp_path: Path) -> None:
    latest = _killed_run(tmp_path)
    for sidecar in list_checkpoints(tmp_path / "checkpoints"):
        sidecar.write_text("{")
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match=r"ckpt_00000010\.json"):
        train(_config(), tmp_path, resume=True, progress=False)
    assert latest.read_text() == "{"


def _refused_resume(run_dir: Path) -> bytes:
    train(_config("train.steps=10"), run_dir, progress=False)
    before = (run_dir / "config.json").read_bytes()
    with pytest.raises(ConfigError, match=r"ckpt_00000010\.json.*'mlp' config differs.*\(mlp\.hidden\)"):
        train(_config("train.steps=20", "mlp.hidden=32"), run_dir, resume=True, progress=False)
    return before


def test_resume_with_an_incompatible_model_config_is_refused(tmp_path: Path) -> None:
    _refused_resume(tmp_path)
    assert _steps(tmp_path) == [5, 10]


def _rewrite_as_older_checkpoint(run_dir: Path, edit) -> dict:
    """Rewrite the newest checkpoint as checkpoints were written before they carried their
    metadata inside the weights file, its config passed through ``edit``; returns that config."""
    import hashlib

    from safetensors.torch import load as load_bytes, save as save_bytes

    sidecar = latest_checkpoint(run_dir / "checkpoints").with_suffix(".json")
    weights = sidecar.with_suffix(".safetensors")
    payload = save_bytes(load_bytes(weights.read_bytes()))  # no metadata inside
    weights.write_bytes(payload)
    meta = json.loads(sidecar.read_text())
    meta["config"] = edit(meta["config"])
    meta["sha256"] = hashlib.sha256(payload).hexdigest()
    sidecar.write_text(json.dumps(meta))
    return meta["config"]


def test_resume_accepts_a_checkpoint_written_before_a_key_existed(tmp_path: Path) -> None:
    """A config key added since the checkpoint was written (here: its config lacks
    rate.gain, at its default; written as checkpoints were before they carried their
    metadata inside the weights file) is no difference: the run resumes."""
    def without_gain(config: dict) -> dict:
        del config["rate"]["gain"]
        return config

    train(_config("train.steps=10"), tmp_path, progress=False)
    _rewrite_as_older_checkpoint(tmp_path, without_gain)
    resumed = train(_config("train.steps=15"), tmp_path, resume=True, progress=False)
    assert resumed.step == 15


def test_resume_accepts_a_checkpoint_of_the_old_config_layout(tmp_path: Path) -> None:
    """A checkpoint whose config has the backbones' keys in ``model`` and ``train.max_file_mb``
    (as written before the backbone sections) resumes; a changed key is still refused under its
    new name."""
    from conftest import old_layout

    train(_config("train.steps=10"), tmp_path, progress=False)
    config = _rewrite_as_older_checkpoint(tmp_path, old_layout)
    assert config["model"]["hidden"] == 16 and "mlp" not in config
    with pytest.raises(ConfigError, match=r"'mlp' config differs from this run's \(mlp\.depth\)"):
        train(_config("train.steps=15", "mlp.depth=3"), tmp_path, resume=True, progress=False)
    resumed = train(_config("train.steps=15"), tmp_path, resume=True, progress=False)
    assert resumed.step == 15


def test_refused_resume_leaves_config_json_unchanged(tmp_path: Path) -> None:
    before = _refused_resume(tmp_path)
    assert (tmp_path / "config.json").read_bytes() == before


# ---------------------------------------------------------------- (vi) the run folder's guards


def test_a_failed_start_leaves_nothing_that_blocks_the_retry(tmp_path: Path, monkeypatch) -> None:
    """A start that fails before its first checkpoint (here: the first minibatch) does not make
    the folder a run: the same command, corrected, starts without --overwrite."""
    def fail(*args, **kwargs):
        raise TrainingError("non-finite loss at step 0; stopping, nothing saved")

    with monkeypatch.context() as patch:
        patch.setattr(train_module, "_train_minibatch", fail)
        with pytest.raises(TrainingError):
            train(_config(), tmp_path, progress=False)
    assert not holds_run(tmp_path)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_config(), tmp_path, resume=True, progress=False)
    assert train(_config(), tmp_path, progress=False).step == 20


def test_stray_temporaries_are_removed_and_files_get_the_umask_mode(tmp_path: Path) -> None:
    import os

    latest = _killed_run(tmp_path)
    stray = [latest.parent / ".ckpt_00000015.safetensors.x1.tmp", tmp_path / ".config.json.x2.tmp"]
    for path in stray:
        path.write_bytes(b"half")
    train(_config(), tmp_path, resume=True, progress=False)
    assert not any(p.exists() for p in stray)
    mask = os.umask(0)
    os.umask(mask)
    for path in (tmp_path / "config.json", latest.parent / "ckpt_00000020.json",
                 tmp_path / "model" / "model.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_resume_to_fewer_steps_than_reached_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    _killed_run(tmp_path)
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(ConfigError, match=r"train\.steps: 7 is below the step the run has reached \(10\)"):
        train(_config("train.steps=7"), tmp_path, resume=True, progress=False)
    assert (tmp_path / "config.json").read_bytes() == before
    assert _steps(tmp_path) == [5, 10]
