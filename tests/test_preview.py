"""`cifarkit augment-preview`: the grid has the promised layout and shows the real images."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.augment.preview import GAP, LABEL_HEIGHT, pick_images
from cifarkit.cli import app

runner = CliRunner()


def _cell(grid: np.ndarray, row: int, column: int, cell: int) -> np.ndarray:
    top = GAP + row * (cell + LABEL_HEIGHT + GAP) + LABEL_HEIGHT
    left = GAP + column * (cell + GAP)
    return grid[top : top + cell, left : left + cell]


def test_preview_on_the_bundled_sample_with_no_arguments(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["augment-preview"])
    assert result.exit_code == 0, result.output
    assert "bundled" in result.stderr and "8 images x 6 views" in result.stdout
    grid = iio.imread(tmp_path / "preview.png")
    cell = 96
    assert grid.shape == (8 * (cell + LABEL_HEIGHT + GAP) + GAP, 7 * (cell + GAP) + GAP, 3)
    # The first column is each source image blown up 3x (nearest neighbour): pixel for pixel.
    from cifarkit.sources.discover import SAMPLE_PATH

    images, labels = data.to_numpy(data.load(SAMPLE_PATH, "train"))
    first = images[pick_images(images, labels, 8)[0]]
    np.testing.assert_array_equal(_cell(grid, 0, 0, cell)[::3, ::3], first)
    views = [_cell(grid, 0, c, cell) for c in range(1, 7)]
    assert len({v.tobytes() for v in views}) == 6  # six different views


def test_preview_stages_and_options(cifar10_tar, tmp_path):
    out = tmp_path / "stages.png"
    args = [
        "augment-preview",
        "--source",
        str(cifar10_tar.path),
        "--out",
        str(out),
        "--images",
        "2",
        "--views",
        "3",
        "--stages",
        "--cell",
        "64",
        "--recipe",
        "cifar",
        "--quiet",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    grid = iio.imread(out)
    rows = 2 * 3  # pad, crop, flip for each image (the cifar recipe has no colour step)
    assert grid.shape == (rows * (64 + LABEL_HEIGHT + GAP) + GAP, 4 * (64 + GAP) + GAP, 3)
    # Same seed, same picture: the command is reproducible.
    again = tmp_path / "again.png"
    runner.invoke(app, args[:4] + [str(again)] + args[5:])
    assert iio.imread(again).tobytes() == grid.tobytes()


def test_preview_bad_option_is_one_line(tmp_path):
    result = runner.invoke(app, ["augment-preview", "--views", "0", "--out", str(tmp_path / "p.png")])
    assert result.exit_code == 2 and "Invalid value for '--views'" in result.stderr
    assert not (tmp_path / "p.png").exists()


def test_pick_images_round_robins_over_classes():
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert list(pick_images(np.zeros((6, 1)), labels, 4)) == [0, 3, 5, 1]
