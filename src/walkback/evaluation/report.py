"""Writing an image evaluation: figures staged in a temporary folder and moved into place, then
``eval.json`` written atomically (nothing is replaced unless everything was computed); and the
short summary the CLI prints."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text

__all__ = ["machine", "caption", "jsonable", "read_metrics", "write_outputs", "image_summary"]

FigureFn = Callable[[Path], None]


def machine(device: torch.device) -> dict[str, str]:
    """The device the evaluation ran on (GPU kind or CPU) and the torch version."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {"device": str(device), "name": name or platform.machine(), "torch": torch.__version__}


def caption(p: dict[str, Any]) -> str:
    """A figure title from a protocol dict."""
    keys = ("data", "split", "num_samples", "num_points", "K", "E", "seed")
    text = ", ".join(f"{k}={p[k]}" for k in keys if p.get(k) is not None)
    if p.get("checksum"):
        text += f", data {str(p['checksum'])[:12]}"
    return textwrap.fill(text, width=90)


def jsonable(value: Any) -> Any:
    """Non-finite floats -> ``None``; tensors -> lists; containers converted recursively."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_metrics(path: Path) -> list[dict]:
    """The records of a metrics.jsonl (empty when absent; stops at a cut line)."""
    records: list[dict] = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return records



def write_outputs(out_dir: Path, result: dict, figures: dict[str, tuple[FigureFn, dict]]) -> dict:
    """Render ``figures`` (name -> (draw(path), protocol)) into a temporary folder, move them to
    ``out_dir/figures/<name>.png``, then write ``out_dir/eval.json``; returns the final dict."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".eval-figures-", dir=out_dir))
    try:
        for name, (draw, _) in figures.items():
            draw(staging / f"{name}.png")
        final = out_dir / "figures"
        final.mkdir(exist_ok=True)
        for name in figures:
            os.replace(staging / f"{name}.png", final / f"{name}.png")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result = jsonable({**result, "figures": {name: {"path": f"figures/{name}.png", "protocol": p}
                                             for name, (_, p) in figures.items()}})
    atomic_write_text(out_dir / "eval.json", json.dumps(result, indent=2, allow_nan=False))
    return result


def _fmt(value: Any, spec: str = ".3f") -> str:
    return "n/a" if value is None else format(value, spec)


def _quality_line(label: str, entry: dict) -> str:
    parts = [f"  {label}"]
    if "fid" in entry:
        fid = entry["fid"]
        parts.append(f"FID {_fmt(fid['value'] if isinstance(fid, dict) else fid, '.2f')}")
    if "kid" in entry:
        parts.append(f"KID {_fmt(entry['kid'].get('mean'), '.4f')}")
    if "classes" in entry:
        c = entry["classes"]
        parts.append(f"classes min {_fmt(c.get('min_fraction'))} (digit {c.get('min_class')}), "
                     f"classifier FID {_fmt(c.get('classifier_fid'), '.2f')}")
    return "; ".join(parts)


def image_summary(result: dict) -> list[str]:
    """A few lines for the terminal from an image ``eval.json`` dict."""
    s = result.get("samples", {}).get("protocol", {})  # none when the bound alone was asked for
    shown = (f"{s['num_samples']} samples, K={s.get('K')}, E={s.get('E')}" if s
             else f"K={result.get('K')}")
    lines = [f"{result['data']['name']}: {shown}, seed {result['seed']}, on "
             f"{result['machine']['name']}"]
    if s:
        lines.append(_quality_line("samples:", result))
    if "fid" in result and result["fid"]["floor"]["value"] is not None:
        lines.append(f"  real-vs-real floor ({result['fid']['floor']['protocol']['split']}): "
                     f"FID {_fmt(result['fid']['floor']['value'], '.2f')}")
    for snap in result.get("chain", {}).get("snapshots", []):
        mixing = snap["mixing"]
        line = _quality_line(f"chain E={snap['E']}:", snap)
        if mixing["move_from_previous_per_dim"] is not None:
            line += (f"; moved {_fmt(mixing['move_from_previous_per_dim'])}/dim since "
                     f"E={mixing['previous_E']} (pairs {_fmt(mixing['pair_distance_per_dim'])})")
        lines.append(line)
    for est in result.get("bound", {}).get("estimates", []):
        lines.append(f"  bound M={est['num_paths']}: {est['bits_per_dim']:.4f} "
                     f"+- {_fmt(est['bits_per_dim_stderr'], '.4f')} bits/dim on "
                     f"{est['num_points']} test images")
    if "parzen" in result:
        p = result["parzen"]
        lines.append(f"  Parzen: {p['test_log_likelihood']:.1f} +- {_fmt(p['test_stderr'], '.1f')} "
                     f"nats (sigma {p['sigma']:.3f})")
    return lines
