"""The extra steps' temperature ``T_E`` (``--extra-temperature``, docs/method.md "Sampling") on
trained 2-D runs: each run's chains are scored at E = 0, K and 10K for every ``T_E``, from the
same seed (the chains agree up to K).

Usage, from the repository root, on the runs of a ``walkback compare`` (OUT/ARM/seedS):
    python experiments/extra_temperature.py RUNS [--temperatures 1,1.05,1.2,1.5,2]
        [--num-samples 5000] [--out OUT]
Each run's config.json and model/ are copied to OUT/T_E=<T>/ARM/seedS (default OUT:
RUNS/extra_temperature) and evaluated there (``walkback.evaluate``, metrics ``chain``, seed 0),
so the compare's own eval.json files stay as they are; an evaluation whose eval.json exists is
not run again. The table (mean +- sample standard deviation over the seeds) is printed and
written to OUT/table.md: for mixtures the fraction within 3 std, the smallest and largest mode
weight, the chains that changed mode since the previous snapshot and the mean move; else the
nearest-distance ratio and MMD.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from toy_arms import cell

from walkback.evaluation import evaluate

SNAPS = (("E=0", 0), ("E=K", 1), ("E=10K", 2))


def _copy_run(run: Path, dest: Path) -> None:
    """The files an evaluation reads: config, weights, training log."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(run / "config.json", dest / "config.json")
    if (run / "metrics.jsonl").exists():
        shutil.copy2(run / "metrics.jsonl", dest / "metrics.jsonl")
    shutil.copytree(run / "model", dest / "model", dirs_exist_ok=True)


def _numbers(result: dict) -> dict[str, float]:
    """A flat dict of one evaluation's snapshot numbers, keyed ``"E=K mmd"`` etc."""
    out = {}
    for label, i in SNAPS:
        snap = result["chain"]["snapshots"][i]
        m, mixing = snap["metrics"], snap["mixing"]
        if "fraction_within_3std" in m:
            out[f"{label} in3"] = m["fraction_within_3std"]
            out[f"{label} wmin"] = min(m["mode_weights"])
            out[f"{label} wmax"] = max(m["mode_weights"])
            if mixing.get("mode_change_fraction") is not None:
                out[f"{label} hops"] = mixing["mode_change_fraction"]
        else:
            out[f"{label} ratio"] = m["nearest_distance_ratio"]
        out[f"{label} mmd"] = m["mmd"]
        if mixing["mean_move_from_previous"] is not None:
            out[f"{label} moved"] = mixing["mean_move_from_previous"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs")
    parser.add_argument("--temperatures", default="1,1.05,1.2,1.5,2")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--out")
    args = parser.parse_args()
    runs = Path(args.runs)
    out = Path(args.out) if args.out else runs / "extra_temperature"
    temps = [float(t) for t in args.temperatures.split(",")]
    arms = sorted({p.parent.parent.name for p in runs.glob("*/seed*/config.json")})
    rows: dict[tuple[str, float], list[dict[str, float]]] = {}
    for arm in arms:
        for run in sorted(runs.glob(f"{arm}/seed*/")):
            for t in temps:
                dest = out / f"T_E={t:g}" / arm / run.name
                if not (dest / "eval.json").exists():
                    _copy_run(run, dest)
                    evaluate(dest, metrics="chain", num_samples=args.num_samples,
                             progress=False, extra_temperature=t)
                result = json.loads((dest / "eval.json").read_text())
                rows.setdefault((arm, t), []).append(_numbers(result))
    keys = list(next(iter(rows.values()))[0])
    lines = ["| arm | T_E | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 2)]
    for (arm, t), runs_numbers in rows.items():
        cells = [cell([r[k] for r in runs_numbers], ".2e" if "mmd" in k else ".3f")
                 for k in keys]
        lines.append(f"| {arm} | {t:g} | " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
