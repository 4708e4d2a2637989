"""Print the markdown table of docs/RESULTS.md from the eval.json files under a runs folder.

Usage: python experiments/summarize_toy.py runs/toy
"""

import json
import sys
from pathlib import Path


def row(path: Path) -> str:
    ev = json.loads(path.read_text())
    cells = [path.parent.name]
    for snap in ev["chain"]["snapshots"]:
        if snap["label"] not in ("E=0", "E=10K"):
            continue
        m = snap["metrics"]
        text = f"ratio {m['nearest_distance_ratio']:.2f}, MMD {m['mmd']:.1e}"
        if "radius_error_median" in m:
            text += f", radial error {m['radius_error_median']:.4f}"
        if "mode_weights" in m:
            w = m["mode_weights"]
            text = (f"{m['fraction_within_3std']:.3f} in, {m['modes_covered']}/{m['num_modes']} modes, "
                    f"w [{min(w):.3f}, {max(w):.3f}], " + text)
        move = snap["mixing"]["mean_move_from_previous"]
        cells.append(text + (f", moved {move:.3f}" if move is not None else ""))
    bounds = {e["num_paths"]: e["log_bound"] for e in ev["bound"]["estimates"]}
    cells.append(", ".join(f"M={k}: {v:.2f}" for k, v in sorted(bounds.items())))
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    print("| run | end of annealing (E=0) | after 10K extra steps | bound, nats/point (held-out) |")
    print("| --- | --- | --- | --- |")
    for path in sorted(Path(sys.argv[1]).glob("*/eval.json")):
        print(row(path))
