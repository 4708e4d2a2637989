"""Figures of the image evaluation; each writes one PNG at ``path`` with the protocol as its title."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ..data.images import tile_grid  # noqa: E402

__all__ = ["image_grid", "plot_grid", "plot_snapshot_rows", "plot_step_bits", "plot_chain_curves",
           "plot_class_histograms"]


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` -> one uint8 image on white (``data.images.tile_grid``)."""
    return tile_grid(images, ncol, pad=pad, fill=255)


def _show(ax, grid: np.ndarray) -> None:
    ax.imshow(grid[..., 0] if grid.shape[2] == 1 else grid, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _save(fig, path: Path, title: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
    return path


def plot_grid(images: torch.Tensor, path: Path, *, title: str, ncol: int = 10) -> Path:
    """The first ``ncol^2`` images as a square grid."""
    grid = image_grid(images[: ncol * ncol], ncol)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1] + 0.6))
    _show(ax, grid)
    return _save(fig, path, title)


def plot_snapshot_rows(rows: Sequence[tuple[str, torch.Tensor]], path: Path, *, title: str,
                       ncol: int = 12) -> Path:
    """One row per snapshot, the same ``ncol`` chains in every row (how far each chain moved)."""
    fig, axes = plt.subplots(len(rows), 1, figsize=(ncol * 0.6, 0.75 * len(rows) + 0.8), squeeze=False)
    for ax, (label, images) in zip(axes[:, 0], rows):
        _show(ax, image_grid(images[:ncol], ncol))
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return _save(fig, path, title)


def plot_step_bits(step_bits: Sequence[float], prior_bits: float, constant_bits: float, path: Path,
                   *, title: str) -> Path:
    """Bar chart of the bits/dim each heating step t = 1..K adds, with the prior and the constant."""
    k = len(step_bits)
    labels = [str(t) for t in range(1, k + 1)] + ["p*", "const"]
    values = list(step_bits) + [prior_bits, constant_bits]
    colours = ["tab:blue"] * k + ["tab:orange", "tab:grey"]
    fig, ax = plt.subplots(figsize=(max(5.0, 0.3 * (k + 2) + 1.5), 3.5))
    ax.bar(range(k + 2), values, color=colours)
    ax.set_xticks(range(k + 2), labels, fontsize=7)
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("heating step t (and prior p*(s_K), constant 7)")
    ax.set_ylabel("bits/dim")
    return _save(fig, path, title)


def plot_chain_curves(es: Sequence[int], curves: dict[str, Sequence[float | None]], path: Path, *,
                      title: str) -> Path:
    """One panel per curve against E (symmetric-log x axis, so E = 0 shows)."""
    fig, axes = plt.subplots(1, len(curves), figsize=(3.6 * len(curves), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], curves.items()):
        pairs = [(e, v) for e, v in zip(es, values) if v is not None and np.isfinite(v)]
        if pairs:
            ax.plot(*zip(*pairs), marker="o")
        ax.set_xscale("symlog", linthresh=max(1, min([e for e in es if e > 0], default=1)))
        ax.set_xticks(list(es), [str(e) for e in es], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("E (extra steps at T=1)")
        ax.set_title(name, fontsize=9)
    return _save(fig, path, title)


def plot_class_histograms(histograms: dict[str, Sequence[float]], path: Path, *, title: str) -> Path:
    """Grouped bars: fraction of each digit class for each labelled set."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    width = 0.8 / max(1, len(histograms))
    for i, (label, fractions) in enumerate(histograms.items()):
        ax.bar(np.arange(len(fractions)) + i * width, fractions, width, label=label)
    ax.axhline(0.1, color="black", linewidth=0.5, linestyle="--")
    ax.set_xticks(np.arange(10) + 0.4 - width / 2, [str(c) for c in range(10)])
    ax.set_xlabel("class (MNIST classifier)")
    ax.set_ylabel("fraction")
    ax.legend(fontsize=7)
    return _save(fig, path, title)
