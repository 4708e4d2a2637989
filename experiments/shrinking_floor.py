"""A variance floor that shrinks toward T = 1 (``model.min_var_at_1``, docs/method.md "Variance
floor") against the toy presets (no floor to speak of: ``min_var = 1e-6``) and against the image
presets' constant floor ``min_var = 0.01``, on the 2-D presets, 3 seeds per arm.

Usage, from the repository root (one process at a time, one thread each):
    python experiments/shrinking_floor.py [OUT] [--presets mog,spiral] [--seeds 0,1,2]
        [--arm 'NAME|key=value,key=value' ...] [--steps N] [--num-samples N] [--table-only]
Each run is ``walkback train --preset P --run-dir OUT/P/NAME/seedS --set seed=S --set
train.threads=1 --set train.steps=N [--set ...]`` then ``walkback evaluate --run-dir ...
--no-progress --num-samples N`` (OMP_NUM_THREADS=1); a run whose eval.json exists is not run
again. The table (mean +- sample standard deviation over the seeds) is printed and written to
OUT/table.md. Beside the evaluation's numbers it gives the M = 1 bound's terms of the steps at
T = 1 (the first ``schedule.n1`` = 5, summed: ``log p - log q``) and of the prior, and the
operator's variance ``var`` at T = 1 (median over the 2,000 held-out points and both
coordinates): where it sits on the floor, the floor binds.

Arms (default): ``preset``; ``floor-0.01`` (``model.min_var=0.01``: at least ``0.01 T`` noise at
every step, as the image presets); ``0.01-to-1e-4`` and ``0.01-to-1e-6`` (the floor 0.01 at the
top temperature T_K = 1.2^24 = 79.5, shrinking geometrically in T to 1e-4, resp. the presets'
1e-6, at T = 1).

Measured: RESULTS below (CPU, 2 cores shared with another training process, torch 2.13.0; every
arm 600 minibatches of 500, not the presets' 1,000, to fit the 24 runs in 45 minutes; each run
~50-80 s training + ~10-15 s evaluation, 27 minutes in all). Command:
    python experiments/shrinking_floor.py runs/shrinking-floor --steps 600 --num-samples 2000

mog (mean ± sample std over seeds 0,1,2; bound in nats per point on 2,000 held-out points)

| arm | bound M=1 | bound M=16 | T=1 terms | prior term | in 3 std E=0 | w min E=0 | w max E=0 | ratio E=0 | in 3 std E=10K | w min E=10K | w max E=10K | ratio E=10K | var at T=1 | train s |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| preset | -0.91 ± 0.11 | -0.20 ± 0.12 | -0.58 ± 0.09 | -2.47 ± 0.00 | 0.767 ± 0.034 | 0.027 ± 0.013 | 0.148 ± 0.005 | 1.07 ± 0.10 | 0.971 ± 0.008 | 0.021 ± 0.028 | 0.143 ± 0.001 | 0.81 ± 0.04 | 9.3e-04 ± 4.1e-05 | 52 |
| floor-0.01 | -1.29 ± 0.13 | -0.44 ± 0.15 | 0.76 ± 0.08 | -3.33 ± 0.00 | 0.801 ± 0.076 | 0.027 ± 0.013 | 0.185 ± 0.022 | 1.20 ± 0.22 | 0.904 ± 0.037 | 0.003 ± 0.002 | 0.356 ± 0.098 | 0.97 ± 0.12 | 1.1e-02 ± 5.3e-05 | 57 |
| 0.01-to-1e-4 | -0.94 ± 0.16 | -0.14 ± 0.17 | -0.39 ± 0.08 | -3.27 ± 0.00 | 0.808 ± 0.033 | 0.018 ± 0.007 | 0.153 ± 0.008 | 0.93 ± 0.04 | 0.975 ± 0.006 | 0.004 ± 0.007 | 0.141 ± 0.006 | 0.78 ± 0.02 | 1.4e-03 ± 1.2e-05 | 49 |
| 0.01-to-1e-6 | -1.04 ± 0.14 | -0.27 ± 0.15 | -0.49 ± 0.05 | -3.24 ± 0.00 | 0.759 ± 0.043 | 0.020 ± 0.008 | 0.155 ± 0.018 | 1.08 ± 0.10 | 0.972 ± 0.013 | 0.005 ± 0.007 | 0.149 ± 0.011 | 0.81 ± 0.03 | 1.2e-03 ± 2.4e-05 | 48 |

spiral (mean ± sample std over seeds 0,1,2; bound in nats per point on 2,000 held-out points)

| arm | bound M=1 | bound M=16 | T=1 terms | prior term | ratio E=0 | MMD E=0 | ratio E=10K | MMD E=10K | var at T=1 | train s |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| preset | 0.17 ± 0.04 | 0.70 ± 0.07 | 0.29 ± 0.02 | -1.37 ± 0.02 | 1.67 ± 0.19 | 2.4e-02 ± 7.8e-03 | 1.53 ± 0.11 | 4.1e-02 ± 4.4e-02 | 7.5e-04 ± 4.4e-05 | 47 |
| floor-0.01 | -0.89 ± 0.03 | -0.30 ± 0.02 | 0.16 ± 0.03 | -2.94 ± 0.01 | 26.10 ± 1.27 | 6.1e-03 ± 4.9e-03 | 32.25 ± 2.94 | 3.1e-02 ± 2.2e-02 | 1.1e-02 ± 2.4e-04 | 48 |
| 0.01-to-1e-4 | -0.18 ± 0.04 | 0.52 ± 0.06 | 0.30 ± 0.01 | -2.89 ± 0.01 | 1.67 ± 0.17 | 2.7e-02 ± 6.8e-03 | 1.51 ± 0.15 | 4.8e-02 ± 2.6e-02 | 1.0e-03 ± 1.9e-04 | 48 |
| 0.01-to-1e-6 | -0.18 ± 0.05 | 0.54 ± 0.07 | 0.29 ± 0.04 | -2.87 ± 0.01 | 1.70 ± 0.10 | 3.0e-02 ± 8.5e-03 | 1.60 ± 0.18 | 4.8e-02 ± 3.9e-02 | 8.5e-04 ± 2.3e-04 | 48 |

MNIST check (``--mnist-steps N``: the ``mnist`` preset with a small MLP on the CPU, seed 0,
``--set model.backbone=mlp train.amp=none train.device=cpu data.root=DATA`` for N minibatches,
then ``walkback evaluate --metrics bound --bound-points 500``; ``--data-root DATA``, default
data, as ``data.root``):
    python experiments/shrinking_floor.py runs/shrinking-floor --table-only --mnist-steps 300

MNIST, MLP, 300 minibatches, seed 0; bits/dim on 500 test images (+- standard error), and
the M = 1 bound's terms of the T = 1 step and of the hottest step

| arm | M=1 | M=16 | last step (T=1) bits/dim, M=1 | hottest step, M=1 |
| --- | --- | --- | --- | --- |
| mnist-mlp | 14.831 ± 0.003 | 14.719 ± 0.002 | -0.007 | -0.019 |
| mnist-mlp-to-1e-4 | 14.971 ± 0.003 | 14.877 ± 0.001 | -0.006 | -0.020 |

At 300 minibatches the MNIST operator's var at T = 1 is still near its initial 0.01 (median
0.011 / 0.012 on test images) in both arms: the floor does not bind yet, and the check says
nothing about the last step; the two bounds differ by their prior terms (8.22 / 8.30 bits/dim).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from toy_arms import WALKBACK, arm_parser, eval_metrics, run_arm, table

ARMS = [
    "preset|",
    "floor-0.01|model.min_var=0.01",
    "0.01-to-1e-4|model.min_var=0.01,model.min_var_at_1=1e-4",
    "0.01-to-1e-6|model.min_var=0.01,model.min_var_at_1=1e-6",
]
MNIST_ARMS = [
    "mnist-mlp|",
    "mnist-mlp-to-1e-4|model.min_var_at_1=1e-4",
]
MNIST_SETS = ["model.backbone=mlp", "train.amp=none", "train.device=cpu", "train.threads=1"]


def var_at_1(run_dir: Path) -> float:
    """The median of the operator's ``var`` at T = 1 over the held-out points (EMA model)."""
    import torch

    from walkback.model import load
    from walkback.runs import load_data, load_run_config

    torch.set_num_threads(1)
    model = load(run_dir).eval()
    x = load_data(load_run_config(run_dir)).heldout[:2000]
    with torch.no_grad():
        return float(model.operator(x, 1.0).var.median())


def run_metrics(run_dir: Path) -> dict[str, float]:
    """The numbers of one run's eval.json, its training time and its var at T = 1."""
    out = eval_metrics(run_dir)
    ev = json.loads((run_dir / "eval.json").read_text())
    n1 = json.loads((run_dir / "config.json").read_text())["schedule"]["n1"]
    for est in ev["bound"]["estimates"]:
        if est["num_paths"] == 1:  # the walk back's terms at T = 1, and the prior's
            out["t1"], out["prior"] = sum(est["step_terms"][:n1]), est["prior_term"]
    out["var1"] = var_at_1(run_dir)
    return out


COLUMNS = {
    "mog": [("M1", ".2f", "bound M=1"), ("M16", ".2f", "bound M=16"),
            ("t1", ".2f", "T=1 terms"), ("prior", ".2f", "prior term"),
            ("in0", ".3f", "in 3 std E=0"), ("wmin0", ".3f", "w min E=0"),
            ("wmax0", ".3f", "w max E=0"), ("ratio0", ".2f", "ratio E=0"),
            ("in10K", ".3f", "in 3 std E=10K"), ("wmin10K", ".3f", "w min E=10K"),
            ("wmax10K", ".3f", "w max E=10K"), ("ratio10K", ".2f", "ratio E=10K"),
            ("var1", ".1e", "var at T=1")],
    "spiral": [("M1", ".2f", "bound M=1"), ("M16", ".2f", "bound M=16"),
               ("t1", ".2f", "T=1 terms"), ("prior", ".2f", "prior term"),
               ("ratio0", ".2f", "ratio E=0"), ("mmd0", ".1e", "MMD E=0"),
               ("ratio10K", ".2f", "ratio E=10K"), ("mmd10K", ".1e", "MMD E=10K"),
               ("var1", ".1e", "var at T=1")],
}


def run_mnist(out: Path, name: str, sets: str, steps: int, data_root: str) -> dict:
    """Train and bound one MNIST arm (seed 0); the bound's estimates of its eval.json."""
    run_dir = out / "mnist" / name
    if not (run_dir / "eval.json").exists():
        args = [WALKBACK, "train", "--preset", "mnist", "--run-dir", str(run_dir), "--overwrite",
                "--no-progress", "--set", f"train.steps={steps}", "--set",
                f"data.root={data_root}"]
        for item in MNIST_SETS + [s for s in sets.split(",") if s]:
            args += ["--set", item]
        start = time.time()
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
        trained = time.time() - start
        # (not check=True: evaluate --metrics bound of an image run writes eval.json, then its
        # summary asks for the samples' section it did not compute; the file is read below)
        subprocess.run([WALKBACK, "evaluate", "--run-dir", str(run_dir), "--no-progress",
                        "--metrics", "bound", "--bound-points", "500", "--device", "cpu"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})
        print(f"mnist {name}: train {trained:.0f} s, "
              f"evaluate {time.time() - start - trained:.0f} s",
              flush=True)
    return json.loads((run_dir / "eval.json").read_text())["bound"]["estimates"]


def mnist_table(out: Path, steps: int, data_root: str) -> str:
    lines = [f"MNIST, MLP, {steps} minibatches, seed 0; bits/dim on 500 test images (+- standard "
             "error), and\nthe M = 1 bound's terms of the T = 1 step and of the hottest step",
             "", "| arm | M=1 | M=16 | last step (T=1) bits/dim, M=1 | hottest step, M=1 |",
             "| --- | --- | --- | --- | --- |"]
    for arm in MNIST_ARMS:
        name, sets = arm.split("|")
        est = {e["num_paths"]: e for e in run_mnist(out, name, sets, steps, data_root)}
        one, many = est[1], est[max(est)]
        lines.append(f"| {name} | {one['bits_per_dim']:.3f} ± {one['bits_per_dim_stderr']:.3f} | "
                     f"{many['bits_per_dim']:.3f} ± {many['bits_per_dim_stderr']:.3f} | "
                     f"{one['step_bits_per_dim'][0]:.3f} | {one['step_bits_per_dim'][-1]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = arm_parser(__doc__, "runs/shrinking-floor")
    parser.add_argument("--num-samples", type=int, default=None, help="evaluate's chains")
    parser.add_argument("--mnist-steps", type=int, default=0, help="also the MNIST check")
    parser.add_argument("--data-root", default="data", help="MNIST folder (data.root)")
    args = parser.parse_args()
    out, arms = Path(args.out), args.arm or ARMS
    presets, seeds = args.presets.split(","), [int(s) for s in args.seeds.split(",")]
    os.makedirs(out, exist_ok=True)
    if not args.table_only:
        for seed in seeds:  # seed by seed: a stopped measurement leaves every arm the same seeds
            for preset in presets:
                for arm in arms:
                    name, sets = arm.split("|")
                    run_arm(out, preset, name, sets, seed, args.steps,
                            ["--num-samples", str(args.num_samples)] if args.num_samples else [],
                            evaluate_one_thread=True)
    text = "\n\n".join(f"{preset} (mean ± sample std over seeds {args.seeds}; bound in nats "
                       "per point on 2,000 held-out points)\n\n"
                       + table(out, preset, arms, seeds, COLUMNS, run_metrics)
                       for preset in presets)
    if args.mnist_steps:
        text += "\n\n" + mnist_table(out, args.mnist_steps, args.data_root)
    print(text)
    (out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
