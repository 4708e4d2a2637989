"""Plots write non-empty PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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


def test_save_image_grid_tiles_images_row_by_row(tmp_path) -> None:
    from PIL import Image

    from walkback.plots import save_image_grid

    images = torch.linspace(-1, 1, 12).reshape(12, 1, 1, 1).expand(12, 1, 4, 5).clone()
    path = save_image_grid(images, tmp_path / "grid.png", nrow=5)
    grid = np.asarray(Image.open(path))
    assert grid.shape == (3 * 4, 5 * 5)  # 12 images -> 3 rows of 5, grey
    assert grid[0, 0] == 0 and grid[4, 0] == round((images[5, 0, 0, 0].item() + 1) * 127.5)
    assert grid[-1, -1] == 0  # the unused last cells stay black


def test_write_samples_for_images_writes_a_grid_beside_the_npz(tmp_path) -> None:
    from walkback.evaluation.samples import write_samples

    samples = torch.rand(7, 3, 8, 8) * 2 - 1
    write_samples(tmp_path / "s.npz", samples, meta={"N": 7})
    assert np.load(tmp_path / "s.npz")["samples"].shape == (7, 3, 8, 8)
    assert (tmp_path / "s.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tile_grid_places_every_tile_and_pads_with_fill() -> None:
    from walkback.data.images import tile_grid

    pixels = torch.arange(5, dtype=torch.uint8).reshape(5, 1, 1, 1).expand(5, 3, 2, 3).contiguous()
    grid = tile_grid(pixels, 2, pad=1, fill=255)
    assert grid.shape == (3 * 3 + 1, 2 * 4 + 1, 3) and grid.dtype == np.uint8
    for i in range(5):
        r, q = divmod(i, 2)
        assert (grid[1 + 3 * r:3 + 3 * r, 1 + 4 * q:4 + 4 * q] == i).all()
    assert (grid[0] == 255).all() and (grid[:, 0] == 255).all()
    assert (grid[7:9, 5:8] == 255).all()  # the last row's empty tile
    assert tile_grid(pixels, 5).shape == (2, 15, 3)
