"""Training with several processes (torch.distributed on gloo, as torchrun starts them): two
processes train the same updates as one with the same global minibatch, in every training mode;
checkpoints resume across process counts; only rank 0 writes; a process that dies stops the
others with an error, and the last checkpoint still loads."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from walkback import distributed
from walkback.config import apply_overrides
from walkback.errors import ConfigError
from walkback.presets import get_preset
from walkback.train import train

SETS = ["mlp.hidden=32", "data.num_train=2000", "data.num_heldout=200", "schedule.num_steps=5",
        "train.batch_size=64", "train.device=cpu", "train.noise=streams", "train.log_every=5",
        "train.checkpoint_every=10", "sample.num_samples=100", "train.dist_timeout_s=30"]
MODES = {  # every training mode, and both baselines
    "online": ["mog", "train.mode=online"],
    "accumulate": ["mog", "train.mode=accumulate"],
    "transitions": ["mog", "train.mode=transitions", "train.transition_batch=48"],
    "jitter": ["mog", "train.mode=transitions", "train.transition_batch=48", "model.form=conditioned",
               "train.temperature_jitter=true"],
    "input_noise": ["mog", "train.mode=transitions", "train.transition_batch=48", "train.input_noise=0.2"],
    "loss_steps": ["mog", "train.mode=accumulate", "train.loss_steps=2"],
    "bound": ["mog", "train.mode=accumulate", "train.objective=bound"],
    "decoupled": ["mog", "train.mode=online", "train.objective=decoupled"],
    "ddpm": ["mog-diffusion"],
    "fixed": ["mog-fixed"],
}
STEPS = 20


def _config(spec: list[str], steps: int = STEPS):
    return apply_overrides(get_preset(spec[0]), SETS + spec[1:] + [f"train.steps={steps}"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)


def _train_modes(rank: int, world: int, port: int, root: str, jobs: list) -> None:
    """Worker: train each ``(spec, run, steps, resume)`` of ``jobs`` in turn."""
    _join(rank, world, port)
    try:
        for spec, run, steps, resume in jobs:
            train(_config(spec, steps), Path(root) / run, progress=False, resume=resume)
    finally:
        distributed.shutdown()


def _spawn(jobs: list, root: Path, world: int = 2) -> None:
    mp.spawn(_train_modes, args=(world, _free_port(), str(root), jobs), nprocs=world, join=True)


def _max_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    assert sorted(x) == sorted(y)
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    _spawn([(spec, f"{name}-2", STEPS, False) for name, spec in MODES.items()], root)
    return root


@pytest.mark.parametrize("name", list(MODES))
def test_two_processes_train_the_updates_of_one(name: str, two_processes: Path) -> None:
    """The EMA weights after 20 minibatches, 2 processes against 1 (global batch 64 each)."""
    one = two_processes / f"{name}-1"
    train(_config(MODES[name]), one, progress=False)
    assert _max_difference(one, two_processes / f"{name}-2") < 1e-4
    logged = [json.loads(line) for line in (one / "metrics.jsonl").read_text().splitlines()]
    logged2 = [json.loads(line) for line in
               (two_processes / f"{name}-2" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged2] == [r["step"] for r in logged] == [5, 10, 15, 20]
    for a, b in zip(logged, logged2):  # the whole minibatch's statistics, not one share's
        assert b["loss_per_dim"] == pytest.approx(a["loss_per_dim"], rel=1e-4, abs=1e-6)
        assert b["transitions"] == a["transitions"]


def test_only_rank_0_writes(two_processes: Path) -> None:
    run = two_processes / "online-2"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoints", "config.json", "metrics.jsonl", "model"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt_00000010.json", "ckpt_00000010.safetensors", "ckpt_00000020.json",
        "ckpt_00000020.safetensors"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == STEPS // 5


def test_checkpoints_resume_across_process_counts(tmp_path: Path) -> None:
    """10 minibatches on 2 processes then 10 more on 1, and the reverse, equal 20 on 1."""
    spec = MODES["transitions"]
    straight = tmp_path / "straight"
    train(_config(spec), straight, progress=False)
    _spawn([(spec, "two-then-one", 10, False)], tmp_path)
    train(_config(spec), tmp_path / "two-then-one", progress=False, resume=True)
    train(_config(spec, 10), tmp_path / "one-then-two", progress=False)
    _spawn([(spec, "one-then-two", STEPS, True)], tmp_path)
    for run in ("two-then-one", "one-then-two"):
        assert _max_difference(straight, tmp_path / run) < 1e-4, run


def _fails(rank: int, world: int, port: int, root: str, how: str) -> None:
    """Worker: rank 1 dies (``how="dies"``) or hangs after its 12th minibatch (after the
    checkpoint of step 10)."""
    _join(rank, world, port)

    def fail(step: int) -> None:
        if rank == 1 and step == 12:
            os._exit(7) if how == "dies" else time.sleep(120)

    config = apply_overrides(_config(MODES["online"]), ["train.dist_timeout_s=4"])
    try:
        train(config, Path(root) / "run", progress=False, callback=fail)
    finally:
        distributed.shutdown()


@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_failed_process_stops_the_others_and_the_checkpoint_resumes(how: str,
                                                                       tmp_path: Path) -> None:
    """A process that dies is reported by the launcher (torchrun, here spawn), which stops the
    others; one that hangs makes rank 0 stop after train.dist_timeout_s with a one-line error
    naming itself. Either way the checkpoint of step 10 is whole and resumes."""
    started = time.monotonic()
    with pytest.raises(Exception) as failure:
        mp.spawn(_fails, args=(2, _free_port(), str(tmp_path), how), nprocs=2, join=True)
    assert time.monotonic() - started < 60
    if how == "dies":
        assert "process 1 terminated with exit code 7" in str(failure.value)
    else:
        text = str(failure.value)
        assert "ProcessGroupError: rank 0 of 2: " in text and "minibatch 13" in text
        assert "another process died or stopped answering" in text and "--resume" in text
    run = tmp_path / "run"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "ckpt_00000010.json", "ckpt_00000010.safetensors"]
    result = train(_config(MODES["online"]), run, progress=False, resume=True)
    assert result.step == STEPS


def test_several_processes_need_streams_and_whole_shares(tmp_path: Path) -> None:
    """Checked before anything is written (one process stands in for rank 0 of 2)."""
    from walkback.train import _check_world

    two = distributed.World(0, 2)
    with pytest.raises(ConfigError, match="train.noise"):
        _check_world(apply_overrides(_config(MODES["online"]), ["train.noise=global"]), two, 2000)
    with pytest.raises(ConfigError, match="train.batch_size"):
        _check_world(apply_overrides(_config(MODES["online"]), ["train.batch_size=72"]), two, 2000)
    with pytest.raises(ConfigError, match="schedule.max_variance"):
        _check_world(apply_overrides(_config(MODES["online"]), ["schedule.max_variance=5"]), two,
                     2000)
    _check_world(_config(MODES["online"]), two, 2000)  # 64 = 2 x 4 streams of 8
