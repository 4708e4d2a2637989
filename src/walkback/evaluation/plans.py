"""Which figures an image evaluation draws and the protocol each is recorded with: name ->
``(draw(path), protocol)``, rendered by ``report.write_outputs``."""

from __future__ import annotations

import torch

from . import figures as F
from .chains import ChainRun
from .report import caption

__all__ = ["sample_figures", "chain_figures", "class_fractions"]


def sample_figures(images: torch.Tensor, quality: dict, floor: dict | None, base: dict,
                   reference_labels: torch.Tensor | None) -> dict:
    """samples.png (and classes.png when the class histogram was computed)."""
    shown = min(100, len(images))
    figures = {"samples": (lambda p: F.plot_grid(images, p, title=caption(base)),
                           {**base, "num_shown": shown, "shown": "the first samples"})}
    if "classes" in quality:
        hists = {"samples": quality["classes"]["fractions"]}
        if floor and "classes" in floor:
            hists[f"real {floor['protocol']['split']} (predicted)"] = floor["classes"]["fractions"]
        if reference_labels is not None:
            hists["real test (true labels)"] = class_fractions(reference_labels)
        figures["classes"] = (lambda p: F.plot_class_histograms(hists, p, title=caption(base)),
                              {**base, "bars": list(hists)})
    return figures


def class_fractions(labels: torch.Tensor) -> list[float]:
    """Fraction of each of the 10 classes among ``labels`` ``(N,)``."""
    return (torch.bincount(labels, minlength=10).double() / len(labels)).tolist()


def chain_figures(chains: ChainRun, section: dict, base: dict) -> dict:
    """chain.png (metrics and mixing against E) and chain_snapshots.png (the same chains)."""
    es = [s["E"] for s in section["snapshots"]]
    curves: dict[str, list] = {}
    for key, get in (("FID (Inception)", lambda s: s.get("fid")),
                     ("KID (Inception)", lambda s: s.get("kid", {}).get("mean")),
                     ("classifier FID", lambda s: s.get("classes", {}).get("classifier_fid")),
                     ("min class fraction", lambda s: s.get("classes", {}).get("min_fraction")),
                     ("moved / pair distance", lambda s: _move_ratio(s["mixing"]))):
        values = [get(s) for s in section["snapshots"]]
        if any(v is not None for v in values):
            curves[key] = values
    rows = [(f"E={s.extra_steps}", s.images) for s in chains.snapshots]
    p = {**base, "E": es}
    return {"chain": (lambda path: F.plot_chain_curves(es, curves, path, title=caption(p)),
                      {**p, "curves": list(curves)}),
            "chain_snapshots": (lambda path: F.plot_snapshot_rows(rows, path, title=caption(p)),
                                {**p, "rows": "the same 12 chains at each E"})}


def _move_ratio(mixing: dict) -> float | None:
    move, pair = mixing["move_from_previous_per_dim"], mixing["pair_distance_per_dim"]
    return None if move is None or not pair else move / pair
