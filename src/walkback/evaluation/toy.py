"""Evaluation of a 2-D toy run (docs/evaluation.md): long-chain toy metrics with mixing, the
variational bound on held-out points and the figures, each written with its protocol (data, split,
N, K, E, seed and which state is reported) into ``eval.json`` and ``figures/`` of the run folder.
Reached through ``evaluation.evaluate``.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write_text, sha256_file
from ..data.loader import DataSplits
from ..data.toy import toy_modes
from ..metrics import drift_field, mode_statistics, nearest_distance_ratio, rotational_magnitude
from ..metrics import nearest_centre, subsample, toy_metrics
from ..model import MODEL_FILE, Walkback
from ..objective import variational_bound
from ..plots import plot_curves, plot_drift, plot_snapshots
from ..runs import extra_temperature, load_data, load_run_config, load_run_model, run_device
from ..trajectory import walk_away
from .chains import ChainRun, run_chains
from .report import jsonable, machine, read_metrics

__all__ = ["REPORTED", "REPORTED_STATES", "evaluate_toy_run"]

REPORTED = "samples: the mean of the last step (the noise-free output)"
REPORTED_STATES = "states: the chain states (the last step's noise included)"
MAX_BOUND_POINTS = 2000  # held-out points used for the bound
SNAPSHOTS = ((0, "E=0"), (1, "E=K"), (10, "E=10K"))  # extra steps at T = 1, in multiples of K
CURVE_MULTIPLES = (0, 1, 2, 5, 10)  # E / K for chain.png
FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # heating / cooling snapshots at t = fraction * K
DRIFT_LIM, DRIFT_GRID = 1.5, 41


def mean_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """``mean_i ||a_i - b_i||``: how far the same chains moved between two states."""
    return float((a - b).flatten(1).double().norm(dim=1).mean())


def _nonfinite_fraction(x: torch.Tensor) -> float:
    return float((~torch.isfinite(x).flatten(1).all(1)).double().mean())


def _snapshot_entries(name: str, run: ChainRun, data: DataSplits) -> list[dict[str, Any]]:
    """Toy metrics and mixing (in data space, of what is reported) at each ``E`` of
    ``SNAPSHOTS``; the run holds the state one step before each (the last step's move). For a
    mixture, mixing also counts the chains whose nearest mode changed since the previous
    snapshot (``mode_change_fraction``: chains that hopped between modes)."""
    entries: list[dict[str, Any]] = []
    previous: int | None = None
    modes, mode_of = toy_modes(name), None
    for multiple, label in SNAPSHOTS:
        e = multiple * run.k
        shown = run.at(e).shown
        moved = mean_distance(shown, run.at(previous).shown) if previous is not None else None
        last = mean_distance(shown, run.at(e - 1).shown) if e > -run.k else math.nan
        mixing = {"previous_E": previous, "mean_move_from_previous": moved,
                  "mean_last_step_move": last}
        if modes is not None:
            mode_of, before = nearest_centre(shown, modes[0])[1], mode_of
            mixing["mode_change_fraction"] = (None if before is None else
                                              float((mode_of != before).double().mean()))
        entries.append({
            "label": label, "E": e, "chain_steps": run.k + e,
            "metrics": toy_metrics(name, shown, data.train, data.heldout),
            "nonfinite_fraction": _nonfinite_fraction(shown), "mixing": mixing,
        })
        previous = e
    return entries


def _chain_curve(name: str, run: ChainRun, data: DataSplits) -> dict:
    """The chain metric against ``E``: mode statistics for mixtures, else the nearest-distance ratio."""
    es = [m * run.k for m in CURVE_MULTIPLES]
    states = [run.at(e).shown for e in es]
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


def _chain_figures(data: DataSplits, run: ChainRun,
                   curve: dict, fig_dir: Path, base: dict[str, Any]) -> dict[str, dict]:
    """samples.png, samples_E10K.png, cooling.png and chain.png from the captured chain states."""
    k, n, figures = base["K"], base["num_samples"], {}
    train = subsample(data.train, n)
    for multiple, name in ((0, "samples"), (10, "samples_E10K")):
        p = {**base, "split": "train (left)", "E": multiple * k}
        plot_snapshots([(f"data (train, {len(train)})", train),
                        (f"samples (E={multiple * k})", run.at(multiple * k).shown)],
                       fig_dir / f"{name}.png", title=_caption(p))
        figures[name] = p
    ts = _fractions(k)
    panels = [(f"t={t}" + (" (prior)" if t == k else ""), run.at(-t).shown) for t in reversed(ts)]
    panels.append((f"E={10 * k}", run.at(10 * k).shown))
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


def _header(run_dir: Path, data: DataSplits, data_seed: int, device: torch.device,
            command: str) -> dict[str, Any]:
    """Where the evaluation ran and on what: run, command, machine, weights, data."""
    records = read_metrics(run_dir / "metrics.jsonl")
    return {
        "run_dir": str(run_dir), "command": command,
        "machine": machine(device), "model_sha256": sha256_file(run_dir / "model" / MODEL_FILE),
        "train_step": records[-1].get("step") if records else None,
        "data": {"name": data.name, "num_train": len(data.train),
                 "num_heldout": len(data.heldout), "data_seed": data_seed},
    }


def _chain_section(data: DataSplits, run: ChainRun, base: dict) -> dict:
    protocol = {**base, "split": "train (nearest distance), heldout (MMD)",
                "E": [mult * run.k for mult, _ in SNAPSHOTS]}
    return {"protocol": protocol, "snapshots": _snapshot_entries(data.name, run, data),
            "curve": _chain_curve(data.name, run, data)}


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
def evaluate_toy_run(run_dir: str | Path, options) -> dict:
    """Evaluate the toy run in ``run_dir`` (``options``: ``evaluation.EvalOptions``, whose
    ``metrics`` is a subset of ``options.TOY_METRICS``); writes ``eval.json`` and ``figures/``, returns
    the dict.

    The chains are what ``model.sample`` runs (from the saved start prior, if any), on one
    generator seeded ``seed``; ``options.report``: score their ``samples`` (the last steps'
    means) or ``states``. Seeds: bound ``seed + 1`` (M = 1) and ``seed + 2`` (M = num_paths),
    heating figure ``seed + 3``. The heating, drift and loss figures are always drawn.
    """
    run_dir, metrics = Path(run_dir), list(options.metrics)
    config = load_run_config(run_dir)
    device = str(run_device(options.device, config.data.name))
    model = load_run_model(run_dir, device=device).eval()
    data = load_data(config)
    n = options.num_samples if options.num_samples is not None else config.sample.num_samples
    m = options.num_paths if options.num_paths is not None else config.sample.num_paths
    if n < 2 or m < 1:
        raise ValueError(f"need num_samples >= 2 and num_paths >= 1, got {n} and {m}")
    sampler = model.start_at(model.start_step)  # the saved part-way start, or the model itself
    k, dev, seed = len(sampler.active_temperatures), torch.device(device), options.seed
    t_extra = extra_temperature(config, options.extra_temperature)
    base = {"data": data.name, "num_samples": n, "K": k, "T_E": t_extra, "seed": seed,
            "reported": REPORTED if options.report == "samples" else REPORTED_STATES}
    result: dict[str, Any] = {**_header(run_dir, data, config.seed, dev, options.command),
                              "K": k, "seed": seed, "metrics": metrics}
    fig_dir, figures = run_dir / "figures", {}
    if "chain" in metrics:
        # one set of chains: E = 0, K, 10K (and one step before each), the curve, cooling
        es = ({mult * k for mult in CURVE_MULTIPLES} | {-t for t in _fractions(k)}
              | {mult * k - 1 for mult, _ in SNAPSHOTS})
        run = run_chains(sampler, n, sorted(es), generator=torch.Generator(dev).manual_seed(seed),
                         batch_size=n, progress=options.progress, report=options.report,
                         keep=None, images=False, extra_temperature=t_extra)
        result["chain"] = _chain_section(data, run, base)
        figures.update(_chain_figures(data, run, result["chain"]["curve"], fig_dir, base))
    x = data.heldout[:MAX_BOUND_POINTS].to(dev)
    if "bound" in metrics:
        # the bound of the chain that samples: with a saved top prior (start step K), its prior
        whole = len(sampler.active_temperatures) == len(model.active_temperatures)
        result["bound"] = _bound_section((sampler if whole else model).bound_model(), data.name,
                                         x, m, seed + 1)
    figures.update(_model_figures(model, data, run_dir, fig_dir, base, x, seed + 3))
    result["figures"] = {name: ({"path": None, **p} if "skipped" in p else
                                {"path": f"figures/{name}.png", "protocol": p})
                         for name, p in figures.items()}
    result = jsonable(result)
    atomic_write_text(run_dir / "eval.json", json.dumps(result, indent=2, allow_nan=False))
    return result
