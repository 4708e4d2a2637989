"""N processes (torch.distributed, gloo on the CPU, as torchrun starts them) against one, in every
training mode and both baselines: the largest difference of the EMA weights after the same
minibatches with the same global batch (docs/RESULTS.md, "Several processes").

    PYTHONPATH=src OMP_NUM_THREADS=1 python experiments/distributed_equality.py OUT [N] [STEPS]
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from walkback import distributed
from walkback.config import apply_overrides
from walkback.presets import get_preset
from walkback.train import train

SETS = ["mlp.hidden=32", "data.num_train=2000", "data.num_heldout=200", "schedule.num_steps=5",
        "train.batch_size=64", "train.device=cpu", "train.noise=streams", "train.log_every=5",
        "train.checkpoint_every=10", "sample.num_samples=100"]
MODES = {
    "online": ["mog", "train.mode=online"],
    "accumulate": ["mog", "train.mode=accumulate"],
    "transitions": ["mog", "train.mode=transitions", "train.transition_batch=48"],
    "loss_steps": ["mog", "train.mode=accumulate", "train.loss_steps=2"],
    "bound": ["mog", "train.mode=accumulate", "train.objective=bound"],
    "decoupled": ["mog", "train.mode=online", "train.objective=decoupled"],
    "ddpm": ["mog-diffusion"],
    "fixed": ["mog-fixed"],
}


def _config(spec: list[str], steps: int):
    return apply_overrides(get_preset(spec[0]), SETS + spec[1:] + [f"train.steps={steps}"])


def _worker(rank: int, world: int, port: int, root: str, steps: int) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    try:
        for name, spec in MODES.items():
            train(_config(spec, steps), Path(root) / f"{name}-{world}", progress=False)
    finally:
        distributed.shutdown()


def _max_difference(a: Path, b: Path) -> float:
    x, y = load_file(a / "model" / "model.safetensors"), load_file(b / "model" / "model.safetensors")
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x)


def main() -> None:
    root = Path(sys.argv[1])
    world = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.time()
    mp.spawn(_worker, args=(world, port, str(root), steps), nprocs=world, join=True)
    print(f"{world} processes, {len(MODES)} runs of {steps} minibatches: {time.time() - started:.1f} s")
    torch.set_num_threads(1)
    print(f"| mode | max abs difference of the EMA weights, {world} processes against 1 |")
    print("| --- | --- |")
    for name, spec in MODES.items():
        train(_config(spec, steps), root / f"{name}-1", progress=False)
        print(f"| {name} | {_max_difference(root / f'{name}-1', root / f'{name}-{world}'):.2e} |")


if __name__ == "__main__":
    main()
