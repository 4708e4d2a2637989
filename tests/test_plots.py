"""Plots write non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import torch

from walkback.data import make_toy
from walkback.metrics import drift_field
from walkback.plots import plot_curves, plot_drift, plot_samples, plot_snapshots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_plot_samples(tmp_path: Path) -> None:
    data = make_toy("mog", 500, generator=torch.Generator().manual_seed(0))
    path = tmp_path / "nested" / "samples.png"
    plot_samples(data, data + 0.1, path, title="mog")
    _assert_png(path)


def test_plot_snapshots(tmp_path: Path) -> None:
    x = make_toy("spiral", 300, generator=torch.Generator().manual_seed(0))
    snaps = [(f"T={t:.2f}", x + t * torch.randn(300, 2)) for t in (0.0, 0.1, 0.5)]
    path = tmp_path / "snapshots.png"
    plot_snapshots(snaps, path, title="heating")
    _assert_png(path)


def test_plot_drift(tmp_path: Path) -> None:
    rotation = torch.tensor([[-0.2, -0.5], [0.5, -0.2]])
    field = drift_field(lambda s: s + s @ rotation.T, lim=1.5, grid=21)
    path = tmp_path / "drift.png"
    plot_drift(field, path, data=make_toy("circle", 200), title="drift")
    _assert_png(path)
    plot_drift(drift_field(lambda s: s, grid=5), tmp_path / "zero.png")  # zero curl still plots
    _assert_png(tmp_path / "zero.png")


def test_plot_curves_skips_missing_keys(tmp_path: Path) -> None:
    records = [{"step": i, "loss": 1.0 / (i + 1)} for i in range(10)]
    records += [{"step": 10, "mmd": 0.01}, {"epoch": 3, "loss": 0.5}]
    path = tmp_path / "curves.png"
    plot_curves(records, ["loss", "mmd", "absent"], path, title="curves", log_y=True)
    _assert_png(path)
