"""Evaluate a trained run (docs/evaluation.md): long-chain toy metrics with mixing, the variational bound
on held-out points and the figures, each written with its protocol (data, split, N, K, E, seed and
which state is reported) into ``eval.json`` and ``figures/`` of the run folder.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from . import parts
from .atomic import atomic_write_bytes, atomic_write_text
from .data.loader import DataSplits
from .data.toy import TOY_DATASETS, toy_modes
from .errors import CheckpointError
from .evaluation.report import jsonable, machine
from .metrics import drift_field, mode_statistics, nearest_distance_ratio, rotational_magnitude
from .metrics import subsample, toy_metrics
from .model import MODEL_FILE, Walkback
from .objective import variational_bound
from .plots import plot_curves, plot_drift, plot_snapshots, save_image_grid
from .sampler import anneal_progressive
from .runs import load_data, load_run_config, load_run_model
from .trajectory import walk_away

__all__ = ["REPORTED", "REPORTED_STATES", "evaluate_run", "write_samples"]

REPORTED = "samples: the mean of the last step (the noise-free output)"
REPORTED_STATES = "states: the chain states (the last step's noise included)"
MAX_BOUND_POINTS = 2000  # held-out points used for the bound
SNAPSHOTS = ((0, "E=0"), (1, "E=K"), (10, "E=10K"))  # extra steps at T = 1, in multiples of K
CURVE_MULTIPLES = (0, 1, 2, 5, 10)  # E / K for chain.png
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # heating / cooling snapshots at t = fraction * K
DRIFT_LIM, DRIFT_GRID = 1.5, 41





def _as_float32(x: torch.Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float32).numpy()


def write_samples(path: str | Path, samples: torch.Tensor, *, states: torch.Tensor | None = None,
                  meta: dict, reference: torch.Tensor | None = None) -> None:
    """Write ``samples`` ``(N, *data_shape)`` (float32, data space: the noise-free output), the
    chains' ``states`` when given and a ``meta`` JSON string to an .npz atomically, and a picture
    of ``samples`` ``<stem>.png`` beside it: for 2-D data a scatter (data ``reference`` on the
    left when given), for images a 10x10 grid."""
    path = Path(path)
    arrays = {"samples": _as_float32(samples), "meta": np.array(json.dumps(meta))}
    if states is not None:
        arrays["states"] = _as_float32(states)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    if samples.dim() == 4:  # images: a grid of the first 100
        tmp = path.with_name(f".{path.stem}.png.tmp")
        save_image_grid(samples, tmp)
        os.replace(tmp, path.with_suffix(".png"))
    elif samples.dim() == 2 and samples.shape[1] == 2:
        panels = [] if reference is None else [("data", reference)]
        title = ", ".join(f"{k}={meta[k]}" for k in ("K", "E", "seed", "N") if k in meta)
        tmp = path.with_name(f".{path.stem}.png.tmp")
        plot_snapshots(panels + [("samples", samples)], tmp, title=title)
        os.replace(tmp, path.with_suffix(".png"))


@dataclass
class Captured:
    """A chain state ``(N, *shape)`` after ``index`` operator applications, and the mean distance
    the chains moved in the step that produced it (NaN for the prior draw)."""

    index: int
    state: torch.Tensor
    last_step_move: float


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``mean_i ||a_i - b_i||``: how far the same chains moved between two states."""
    return float((a - b).flatten(1).double().norm(dim=1).mean())


def _run_chain(model: Walkback, n: int, indices: set[int], *, generator: torch.Generator,
               progress: bool, report: str = "samples") -> dict[int, Captured]:
    """Run ONE set of ``n`` chains to chain index ``max(indices)`` (``K`` cooling steps, then
    steps at ``T = 1``); keep at ``indices`` (0 = the prior draw) the mean of the step that
    produced each state (``report="samples"``) or the states themselves (``"states"``)."""
    temps = model.active_temperatures
    extra = max(indices) - len(temps)
    chain = anneal_progressive(model.operator, model.prior, temps, n, extra_steps=extra,
                               generator=generator)
    captured, previous = {}, None
    for item in tqdm(chain, total=len(temps) + extra + 1, disable=not progress, desc="chain"):
        shown = item.mean if report == "samples" and item.mean is not None else item.state
        state = model.visible(shown)  # data space (the rate network's v units)
        if item.index in indices:
            move = mean_distance(state, previous) if previous is not None else math.nan
            captured[item.index] = Captured(item.index, state.cpu(), move)
        previous = state
    return captured


def _nonfinite_fraction(x: torch.Tensor) -> float:
    return float((~torch.isfinite(x).flatten(1).all(1)).double().mean())


def _snapshot_entries(name: str, captured: dict[int, Captured], k: int,
                      data: DataSplits) -> list[dict[str, Any]]:
    """Toy metrics and mixing of the chain state at each ``E`` of ``SNAPSHOTS``."""
    entries: list[dict[str, Any]] = []
    previous: Captured | None = None
    for multiple, label in SNAPSHOTS:
        cap = captured[k + multiple * k]
        moved = mean_distance(cap.state, previous.state) if previous is not None else None
        entries.append({
            "label": label, "E": multiple * k, "chain_steps": cap.index,
            "metrics": toy_metrics(name, cap.state, data.train, data.heldout),
            "nonfinite_fraction": _nonfinite_fraction(cap.state),
            "mixing": {"previous_E": None if previous is None else previous.index - k,
                       "mean_move_from_previous": moved, "mean_last_step_move": cap.last_step_move},
        })
        previous = cap
    return entries


def _chain_curve(name: str, captured: dict[int, Captured], k: int, data: DataSplits) -> dict:
    """The chain metric against ``E``: mode statistics for mixtures, else the nearest-distance ratio."""
    es = [m * k for m in CURVE_MULTIPLES]
    states = [captured[k + e].state for e in es]
    modes = toy_modes(name)
    if modes is None:
        ratios = [nearest_distance_ratio(s, data.train, data.heldout).ratio for s in states]
        return {"E": es, "nearest_distance_ratio": ratios}
    stats = [mode_statistics(s, modes[0], modes[1], radius=3.0) for s in states]
    return {"E": es, "fraction_within_3std": [s.fraction_within for s in stats],
            "modes_covered": [s.modes_covered for s in stats], "num_modes": len(modes[0])}


def _bound_entry(model: Walkback, x: torch.Tensor, num_paths: int, seed: int) -> dict[str, Any]:
    """Mean over points of the (importance-weighted) bound and its parts, nats per point."""
    generator = torch.Generator(x.device).manual_seed(seed)
    x = model.lift(x, generator=generator)  # x itself, or [x; relaxed h] (rate network)
    r = variational_bound(model.operator, model.prior, model.heating_path(),
                          model.active_temperatures, x, num_paths=num_paths, generator=generator)
    return {"num_paths": num_paths, "seed": seed, "log_bound": float(r.log_bound.mean()),
            "elbo": float(r.elbo.mean()), "step_terms": r.step_terms.mean(1).tolist(),
            "prior_term": float(r.prior_term.mean())}


def _caption(p: dict[str, Any]) -> str:
    """A one-line figure title from a protocol dict."""
    keys = ("data", "split", "num_samples", "num_points", "K", "E", "seed")
    text = ", ".join(f"{key}={p[key]}" for key in keys if key in p)
    text += ", chain states" if p.get("reported") == REPORTED_STATES else ""
    return textwrap.fill(text, width=64)


def _chain_figures(data: DataSplits, captured: dict[int, Captured],
                   curve: dict, fig_dir: Path, base: dict[str, Any]) -> dict[str, dict]:
    """samples.png, samples_E10K.png, cooling.png and chain.png from the captured chain states."""
    k, n, figures = base["K"], base["num_samples"], {}
    train = subsample(data.train, n)
    for multiple, name in ((0, "samples"), (10, "samples_E10K")):
        p = {**base, "split": "train (left)", "E": multiple * k}
        plot_snapshots([(f"data (train, {len(train)})", train),
                        (f"samples (E={multiple * k})", captured[k + multiple * k].state)],
                       fig_dir / f"{name}.png", title=_caption(p))
        figures[name] = p
    ts = _fractions(k)
    panels = [(f"t={t}" + (" (prior)" if t == k else ""), captured[k - t].state) for t in reversed(ts)]
    panels.append((f"E={10 * k}", captured[11 * k].state))
    p = {**base, "t": list(reversed(ts)), "E": [0, 10 * k]}
    plot_snapshots(panels, fig_dir / "cooling.png", title="cooling: " + _caption(p))
    figures["cooling"] = p
    records, keys = _curve_records(curve)
    p = {**base, "E": curve["E"], "metrics": keys}
    plot_curves(records, keys, fig_dir / "chain.png", x_key="E", title=_caption(p))
    figures["chain"] = p
    return figures


def _curve_records(curve: dict) -> tuple[list[dict], list[str]]:
    """chain.png's records: fraction within 3 std and modes covered / M, or the nearest ratio."""
    if "modes_covered" in curve:
        covered = f"modes covered / {curve['num_modes']}"
        values = {"fraction within 3 std": curve["fraction_within_3std"],
                  covered: [c / curve["num_modes"] for c in curve["modes_covered"]]}
    else:
        values = {"nearest-distance ratio": curve["nearest_distance_ratio"]}
    records = [{"E": e, **{key: v[i] for key, v in values.items()}} for i, e in enumerate(curve["E"])]
    return records, list(values)


def _fractions(k: int) -> list[int]:
    """Distinct heating indices ``round(f K)`` for ``f`` in ``FRACTIONS``, increasing."""
    return sorted({round(f * k) for f in FRACTIONS})


def _model_figures(model: Walkback, data: DataSplits, run_dir: Path, fig_dir: Path,
                   base: dict[str, Any], x: torch.Tensor, seed: int) -> dict[str, dict]:
    """heating.png (a heating path from held-out points), drift.png and loss.png."""
    k, figures = base["K"], {}
    generator = torch.Generator(x.device).manual_seed(seed)
    path = walk_away(model.heating_path(), model.lift(x, generator=generator), generator=generator)
    ts = _fractions(k)
    p = {"data": base["data"], "split": "heldout", "num_points": len(x), "K": k, "t": ts,
         "seed": seed, "reported": "heating path states s_t (samples, visible part)"}
    plot_snapshots([(f"t={t}", model.visible(path.states[t])) for t in ts],
                   fig_dir / "heating.png", title="heating: " + _caption(p))
    figures["heating"] = p
    if model.hidden_dim:
        figures["drift"] = {"skipped": "the rate network's state [v; h] is not 2-D"}
    else:
        figures["drift"] = _drift_figure(model, data, fig_dir, base)
    records = read_metrics(run_dir / "metrics.jsonl")
    if records:
        plot_curves(records, ["loss_per_dim"], fig_dir / "loss.png",
                    title="training loss per dimension")
        figures["loss"] = {"source": "metrics.jsonl", "keys": ["loss_per_dim"]}
    return figures


def _drift_figure(model: Walkback, data: DataSplits, fig_dir: Path, base: dict[str, Any]) -> dict:
    """drift.png: the drift of the operator's mean at T = 1 on a grid, and its curl."""
    device = next(model.parameters()).device
    field = drift_field(lambda s: model.operator(s.to(device), 1.0).mean, lim=DRIFT_LIM,
                        grid=DRIFT_GRID)
    p = {"data": base["data"], "split": "train (grey points)", "T": 1.0, "lim": DRIFT_LIM,
         "grid": DRIFT_GRID, "reported": "drift d(s) = mean(s, T=1) - s and its curl"}
    plot_drift(field, fig_dir / "drift.png", data=subsample(data.train, 2000),
               title=f"drift at T=1, {base['data']}")
    return {**p, "mean_abs_curl": float(field.curl.abs().mean()),
            "max_abs_curl": float(field.curl.abs().max()),
            "rotational_magnitude": rotational_magnitude(field)}


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


def _header(run_dir: Path, data: DataSplits, data_seed: int, device: torch.device,
            command: str | None) -> dict[str, Any]:
    """Where the evaluation ran and on what: run, command, machine, weights, data."""
    records = read_metrics(run_dir / "metrics.jsonl")
    return {
        "run_dir": str(run_dir), "command": command or " ".join(sys.argv),
        "machine": machine(device), "model_sha256": parts.sha256_of(run_dir / "model" / MODEL_FILE),
        "train_step": records[-1].get("step") if records else None,
        "data": {"name": data.name, "num_train": len(data.train),
                 "num_heldout": len(data.heldout), "data_seed": data_seed},
    }


def _chain_section(data: DataSplits, captured: dict[int, Captured], base: dict) -> dict:
    k = base["K"]
    protocol = {**base, "split": "train (nearest distance), heldout (MMD)",
                "E": [mult * k for mult, _ in SNAPSHOTS]}
    return {"protocol": protocol, "snapshots": _snapshot_entries(data.name, captured, k, data),
            "curve": _chain_curve(data.name, captured, k, data)}


def _bound_section(model: Walkback, name: str, x: torch.Tensor, num_paths: int, seed: int) -> dict:
    """The bound for ``M = 1`` (seed ``seed``) and ``M = num_paths`` (seed ``seed + 1``)."""
    ms = list(dict.fromkeys((1, num_paths)))
    protocol = {"data": name, "split": "heldout", "num_points": len(x),
                "K": len(model.active_temperatures), "M": ms, "units": "nats per point"}
    if model.hidden_dim:
        protocol["state"] = (f"full state [v; h] ({model.hidden_dim} hidden units relaxed for "
                             f"{model.relax_steps} steps with v = x): a bound on log p(v, h), "
                             "not on log p(x)")
    return {"protocol": protocol,
            "estimates": [_bound_entry(model, x, m, seed + i) for i, m in enumerate(ms)]}


@torch.no_grad()
def evaluate_run(run_dir: str | Path, *, num_samples: int | None = None, seed: int = 0,
                 num_paths: int | None = None, device: str = "cpu", progress: bool = True,
                 command: str | None = None, report: str = "samples") -> dict:
    """Evaluate the run in ``run_dir``; writes ``eval.json`` and ``figures/``, returns the dict.

    The chains are what ``model.sample`` runs (from the saved start prior, if any); ``report``:
    score their ``samples`` (the last steps' means) or ``states``. Seeds: chains ``seed``, bound
    ``seed + 1`` (M = 1) and ``seed + 2`` (M = num_paths), heating figure ``seed + 3``.
    ``command`` is recorded (default: ``sys.argv``).
    """
    if report not in ("samples", "states"):
        raise ValueError(f"report must be 'samples' or 'states', got {report!r}")
    run_dir = Path(run_dir)
    model = load_run_model(run_dir, device=device).eval()
    config = load_run_config(run_dir)
    data = load_data(config)
    if data.name not in TOY_DATASETS:
        raise CheckpointError(f"{run_dir}: evaluation is implemented for 2-D toy data only")
    n = num_samples if num_samples is not None else config.sample.num_samples
    m = num_paths if num_paths is not None else config.sample.num_paths
    if n < 2 or m < 1:
        raise ValueError(f"need num_samples >= 2 and num_paths >= 1, got {n} and {m}")
    sampler = model.start_at(model.start_step)  # the saved part-way start, or the model itself
    k, dev = len(sampler.active_temperatures), torch.device(device)
    base = {"data": data.name, "num_samples": n, "K": k, "seed": seed,
            "reported": REPORTED if report == "samples" else REPORTED_STATES}

    # one set of chains from the same start: E = 0, K, 10K, the curve's E and cooling snapshots
    wanted = {k + mult * k for mult in CURVE_MULTIPLES} | {k - t for t in _fractions(k)}
    captured = _run_chain(sampler, n, wanted, generator=torch.Generator(dev).manual_seed(seed),
                          progress=progress, report=report)
    chain = _chain_section(data, captured, base)
    x = data.heldout[:MAX_BOUND_POINTS].to(dev)
    bound = _bound_section(model.bound_model(), data.name, x, m, seed + 1)

    fig_dir = run_dir / "figures"
    figures = _chain_figures(data, captured, chain["curve"], fig_dir, base)
    figures.update(_model_figures(model, data, run_dir, fig_dir, base, x, seed + 3))
    result = jsonable({
        **_header(run_dir, data, config.seed, dev, command), "K": k, "seed": seed,
        "chain": chain, "bound": bound,
        "figures": {name: ({"path": None, **p} if "skipped" in p else
                           {"path": f"figures/{name}.png", "protocol": p})
                    for name, p in figures.items()},
    })
    atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2, allow_nan=False))
    return result
