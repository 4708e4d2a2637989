"""Figures for 2-D runs: data vs samples, heating / cooling snapshots, the drift's curl map and
metric curves. Every function writes one PNG at ``path`` (parent folders created) and closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from .metrics.drift import DriftField  # noqa: E402

__all__ = ["plot_curves", "plot_drift", "plot_samples", "plot_snapshots"]

PathLike = str | Path
MARKER_SIZE = 1.0
ALPHA = 0.4
PANEL_INCHES = 3.5


def _to_numpy(points: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, 2)`` points as a float64 numpy array (detached, on CPU)."""
    if isinstance(points, torch.Tensor):
        points = points.detach().to("cpu", torch.float64).numpy()
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _shared_limits(point_sets: Sequence[np.ndarray], margin: float = 0.05) -> tuple[float, float]:
    """Limits ``(lo, hi)``, the same for both axes, covering all finite points plus a margin."""
    finite = [p[np.isfinite(p).all(axis=1)] for p in point_sets]
    finite = [p for p in finite if len(p) > 0]
    if not finite:
        return -1.0, 1.0
    stacked = np.concatenate(finite)
    lo, hi = float(stacked.min()), float(stacked.max())
    pad = margin * max(hi - lo, 1e-6)
    return lo - pad, hi + pad


def _scatter(ax: Axes, points: np.ndarray, limits: tuple[float, float], label: str) -> None:
    """One square scatter panel with the given limits and title."""
    ax.scatter(points[:, 0], points[:, 1], s=MARKER_SIZE, alpha=ALPHA, linewidths=0)
    ax.set_xlim(*limits)
    ax.set_ylim(*limits)
    ax.set_aspect("equal")
    ax.set_title(label)


def _save(fig: Figure, path: PathLike, title: str) -> Path:
    """Set the suptitle, save the figure as PNG at ``path`` (creating folders) and close it."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out


def plot_snapshots(
    snapshots: list[tuple[str, torch.Tensor]], path: PathLike, *, title: str = ""
) -> Path:
    """One row of scatter panels, one per ``(label, (N, 2) points)``, with shared square limits."""
    if not snapshots:
        raise ValueError("plot_snapshots needs at least one snapshot")
    arrays = [_to_numpy(points) for _, points in snapshots]
    limits = _shared_limits(arrays)
    n = len(snapshots)
    fig, axes = plt.subplots(1, n, figsize=(PANEL_INCHES * n, PANEL_INCHES + 0.4), squeeze=False)
    for ax, (label, _), points in zip(axes[0], snapshots, arrays):
        _scatter(ax, points, limits, label)
    return _save(fig, path, title)


def plot_samples(
    data: torch.Tensor, samples: torch.Tensor, path: PathLike, *, title: str = ""
) -> Path:
    """Two square panels, data (left) and samples (right), with the same axis limits."""
    return plot_snapshots([("data", data), ("samples", samples)], path, title=title)


def _quiver_step(grid: int, arrows_per_side: int = 21) -> int:
    """Stride that leaves at most about ``arrows_per_side`` arrows along each axis."""
    return max(1, int(np.ceil(grid / arrows_per_side)))


def plot_drift(
    field: DriftField,
    path: PathLike,
    *,
    data: torch.Tensor | None = None,
    title: str = "",
) -> Path:
    """Curl colour map (diverging, symmetric limits, colour bar "curl") under a subsampled quiver
    of the drift ``d(s) = mean(s) - s``; optional faint scatter of ``data`` on top."""
    xs, ys = field.xs.cpu().numpy(), field.ys.cpu().numpy()
    curl = field.curl.cpu().numpy()
    drift = field.drift.cpu().numpy()
    vmax = float(np.nanmax(np.abs(curl))) if np.isfinite(curl).any() else 1.0
    vmax = vmax if vmax > 0 else 1.0
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 1.5, PANEL_INCHES * 1.3))
    extent = (xs[0], xs[-1], ys[0], ys[-1])
    image = ax.imshow(curl, origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    fig.colorbar(image, ax=ax, label="curl")
    k = _quiver_step(len(xs))
    gx, gy = np.meshgrid(xs[::k], ys[::k])
    if np.abs(drift).max() > 0:  # matplotlib cannot autoscale an all-zero quiver
        ax.quiver(gx, gy, drift[::k, ::k, 0], drift[::k, ::k, 1], color="black", alpha=0.8)
    if data is not None:
        points = _to_numpy(data)
        ax.scatter(points[:, 0], points[:, 1], s=0.5, alpha=0.15, color="grey", linewidths=0)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_aspect("equal")
    return _save(fig, path, title)


def plot_curves(
    records: list[dict],
    keys: list[str],
    path: PathLike,
    *,
    x_key: str = "step",
    title: str = "",
    log_y: bool = False,
) -> Path:
    """Line plot of ``record[key]`` against ``record[x_key]`` for each key, skipping records that
    lack either (records as read from a metrics.jsonl, one dict per line)."""
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 1.8, PANEL_INCHES))
    for key in keys:
        pairs = [(r[x_key], r[key]) for r in records if key in r and x_key in r]
        pairs = [(x, y) for x, y in pairs if isinstance(y, (int, float))]
        if pairs:
            xs, ys = zip(*pairs)
            ax.plot(xs, ys, label=key)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(x_key)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return _save(fig, path, title)


def save_image_grid(images: torch.Tensor, path: str | Path, *, nrow: int = 10) -> Path:
    """Save up to ``nrow**2`` images ``(N, C, H, W)`` in model space [-1, 1] as one PNG grid
    (clipped for display only)."""
    from PIL import Image  # noqa: PLC0415

    from .data.images import tile_grid, to_display_uint8  # noqa: PLC0415

    array = tile_grid(to_display_uint8(images[: nrow * nrow].detach().float().cpu()), nrow)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, format="PNG")
    return path


def plot_compare(curves: dict[str, list[list[tuple[float, float]]]], path: PathLike, *,
                 y_label: str, title: str = "") -> Path:
    """One line per name: the mean over its curves (one per seed) of ``value`` against
    ``minutes``, the range over seeds shaded; curves are ``[(minutes, value), ...]``."""
    fig, ax = plt.subplots(figsize=(PANEL_INCHES * 1.8, PANEL_INCHES))
    for name, runs in curves.items():
        runs = [r for r in runs if r]
        if not runs:
            continue
        minutes = sorted({m for run in runs for m, _ in run})
        table = np.array([[dict(run).get(m, np.nan) for m in minutes] for run in runs])
        mean = np.nanmean(table, axis=0)
        ax.plot(minutes, mean, marker="o", label=f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        if len(runs) > 1:
            ax.fill_between(minutes, np.nanmin(table, axis=0), np.nanmax(table, axis=0), alpha=0.2)
    ax.set_xlabel("training minutes")
    ax.set_ylabel(y_label)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path, title)
