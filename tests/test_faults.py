"""Faults during training: kills at random moments (between steps and in the middle of file
writes) and a full disk while a checkpoint is written. After each kill the run is resumed (or,
before its first checkpoint, started again); the end result is bitwise the uninterrupted run's."""

from __future__ import annotations

import errno
import os
import random
from pathlib import Path

import pytest
import torch

import walkback.atomic as atomic_module
from walkback.checkpoint import list_checkpoints, load_checkpoint
from walkback.config import apply_overrides, Config
from walkback.errors import CheckpointError
from walkback.train import holds_run, train

TINY = ["mlp.hidden=16", "mlp.depth=2", "train.steps=24", "data.num_train=1000",
        "data.num_heldout=100", "schedule.num_steps=4", "train.batch_size=100",
        "train.log_every=4", "train.checkpoint_every=4", "train.device=cpu",
        "train.keep_checkpoints=2"]


def _config() -> Config:
    return apply_overrides(Config(), TINY)


class _Killer:
    """Raises KeyboardInterrupt at the ``at``-th atomic write (after the temporary file is written,
    before it replaces the target) or after training step ``step``."""

    def __init__(self, write: int | None = None, step: int | None = None) -> None:
        self.write_at, self.step_at, self.writes = write, step, 0

    def replace(self, real):
        def wrapped(src, dst):
            self.writes += 1
            if self.writes == self.write_at:
                raise KeyboardInterrupt(f"killed during write {self.writes} of {dst}")
            return real(src, dst)
        return wrapped

    def callback(self, step: int) -> None:
        if step == self.step_at:
            raise KeyboardInterrupt(f"killed after step {step}")


def _run(run_dir: Path, killer: _Killer, monkeypatch: pytest.MonkeyPatch):
    with monkeypatch.context() as patch:
        patch.setattr(atomic_module.os, "replace", killer.replace(os.replace))
        return train(_config(), run_dir, resume=holds_run(run_dir), progress=False,
                     callback=killer.callback)


def test_random_kills_then_resume_give_the_uninterrupted_run(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Killer()
    full = _run(tmp_path / "full", counter, monkeypatch)
    total_writes = counter.writes
    rng = random.Random(0)
    kills = [_Killer(write=rng.randint(1, total_writes)) for _ in range(5)]
    kills += [_Killer(step=rng.randint(1, 23)) for _ in range(2)]
    run = tmp_path / "killed"
    done = None
    for killer in kills:
        try:
            done = _run(run, killer, monkeypatch)
        except KeyboardInterrupt:
            pass
    while done is None:  # finish without faults
        done = _run(run, _Killer(), monkeypatch)
    assert not list(run.rglob("*.tmp"))
    assert done.step == full.step == 24
    a, b = full.model.state_dict(), done.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca = load_checkpoint(list_checkpoints(tmp_path / "full" / "checkpoints")[-1])
    cb = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    assert ca.tensors.keys() == cb.tensors.keys()
    assert all(torch.equal(ca.tensors[k], cb.tensors[k]) for k in ca.tensors)


def test_a_full_disk_during_a_checkpoint_leaves_the_previous_one_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = atomic_module._atomic_write

    def full_disk(path: Path, write) -> None:
        if path.name.startswith("ckpt_00000008"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, write)

    monkeypatch.setattr(atomic_module, "_atomic_write", full_disk)
    with pytest.raises(CheckpointError, match=r"step 8 failed \(No space left on device\); the "
                                              r"previous checkpoint ckpt_00000004\.json is intact"):
        train(_config(), tmp_path, progress=False)
    monkeypatch.setattr(atomic_module, "_atomic_write", real)
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["ckpt_00000004.json"]
    assert load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[0]).meta["step"] == 4
    assert not list(tmp_path.rglob("*.tmp"))
    assert train(_config(), tmp_path, resume=True, progress=False).step == 24
