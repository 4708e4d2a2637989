"""Named arms of the 2-D presets over several seeds: the pieces that experiments/
decoupled_objective.py and experiments/shrinking_floor.py share.

An arm is ``'NAME|key=value,key=value'``; its run of seed S on preset P is OUT/P/NAME/seedS.
``run_arm`` trains and evaluates one run with the ``walkback`` command (skipped when its
eval.json exists), ``eval_metrics`` reads the numbers of a run's eval.json and training time
into a flat dict, ``cell`` formats mean ± sample standard deviation over the seeds, and ``table``
builds a preset's markdown table from columns ``(key, format, header)`` and a function that
gives a run's dict.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

WALKBACK = str(Path(sys.executable).with_name("walkback"))
Column = tuple[str, str, str]  # (key of the run's dict, format spec, header)


def arm_parser(doc: str, default_out: str) -> argparse.ArgumentParser:
    """The options every arms script takes: the output folder, presets, seeds, arms, the
    minibatches of every arm and ``--table-only``; a script adds its own."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("out", nargs="?", default=default_out)
    parser.add_argument("--presets", default="mog,spiral")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--arm", action="append", help="NAME|key=value,... (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="train.steps for every arm")
    parser.add_argument("--table-only", action="store_true")
    return parser


def run_dir(out: Path, preset: str, name: str, seed: int) -> Path:
    return out / preset / name / f"seed{seed}"


def has_eval(out: Path, preset: str, name: str, seed: int) -> bool:
    return (run_dir(out, preset, name, seed) / "eval.json").exists()


def run_arm(out: Path, preset: str, name: str, sets: str, seed: int, steps: int | None,
            evaluate_args: list[str] | None = None, evaluate_one_thread: bool = False) -> None:
    """``walkback train`` (seed, one CPU thread, the arm's ``sets``, ``train.steps=steps`` when
    given) then ``walkback evaluate [evaluate_args]`` (with OMP_NUM_THREADS=1 when
    ``evaluate_one_thread``); nothing when the run's eval.json exists."""
    path = run_dir(out, preset, name, seed)
    if (path / "eval.json").exists():
        return
    args = [WALKBACK, "train", "--preset", preset, "--run-dir", str(path), "--overwrite",
            "--no-progress",
            "--set", f"seed={seed}", "--set", "train.threads=1", "--set", "train.device=cpu"]
    for item in [s for s in sets.split(",") if s] + ([f"train.steps={steps}"] if steps else []):
        args += ["--set", item]
    start = time.time()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    trained = time.time() - start
    subprocess.run([WALKBACK, "evaluate", "--run-dir", str(path), "--no-progress",
                    *(evaluate_args or [])], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"} if evaluate_one_thread else None)
    print(f"{preset} {name} seed {seed}: train {trained:.0f} s, evaluate "
          f"{time.time() - start - trained:.0f} s", flush=True)


def last_logged(path: Path) -> dict:
    """The last line of a run's metrics.jsonl."""
    return json.loads((path / "metrics.jsonl").read_text().splitlines()[-1])


def eval_metrics(path: Path) -> dict[str, float]:
    """A run's eval.json at E = 0 and E = 10K (``ratio``, ``mmd``; on mog also ``in``, ``wmin``,
    ``wmax``, ``modes``; suffixed 0 / 10K), its bounds (``M1``, ``M16``, ...) and ``train_s``."""
    ev = json.loads((path / "eval.json").read_text())
    out: dict[str, float] = {}
    for snap in ev["chain"]["snapshots"]:
        if snap["label"] not in ("E=0", "E=10K"):
            continue
        m, tag = snap["metrics"], snap["label"][2:]
        out[f"ratio{tag}"] = m["nearest_distance_ratio"]
        out[f"mmd{tag}"] = m["mmd"]
        if "fraction_within_3std" in m:
            out[f"in{tag}"] = m["fraction_within_3std"]
            out[f"wmin{tag}"] = min(m["mode_weights"])
            out[f"wmax{tag}"] = max(m["mode_weights"])
            out[f"modes{tag}"] = m["modes_covered"]
    for est in ev["bound"]["estimates"]:
        out[f"M{est['num_paths']}"] = est["log_bound"]
    out["train_s"] = last_logged(path)["train_seconds"]
    return out


def cell(values: list[float], fmt: str) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{fmt}} ± {spread:{fmt}}" + ("" if len(values) == 3 else f" (n={len(values)})")


def preset_columns(columns: dict[str, list[Column]], preset: str) -> list[Column]:
    """A preset's columns; a preset without its own takes the spiral's."""
    return columns.get(preset, columns["spiral"])


def table(out: Path, preset: str, arms: list[str], seeds: list[int],
          columns: dict[str, list[Column]], metrics: Callable[[Path], dict[str, float]]) -> str:
    """One row per arm with runs (``metrics`` of each seed's run folder): a cell per column, then
    the mean training seconds."""
    cols = preset_columns(columns, preset)
    lines = ["| arm | " + " | ".join(c[2] for c in cols) + " | train s |",
             "| --- " * (len(cols) + 2) + "|"]
    for arm in arms:
        name = arm.split("|")[0]
        runs = [metrics(run_dir(out, preset, name, s)) for s in seeds
                if has_eval(out, preset, name, s)]
        if not runs:
            continue
        row = [cell([r[key] for r in runs], fmt) for key, fmt, _ in cols]
        row.append(f"{statistics.fmean(r['train_s'] for r in runs):.0f}")
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)
