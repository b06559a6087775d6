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


def test_a_test_only_mnist_folder_previews_its_test_split_with_statistics_from_it(tmp_path):
    from synth import make_mnist_folder

    truth = make_mnist_folder(tmp_path / "mnist", train=0, test=20)  # t10k-* files alone
    out, cell = tmp_path / "digits.png", 84  # MNIST's 28 pixels, each 3x3
    args = ["augment-preview", "--data", str(tmp_path / "mnist"), "-o", str(out), "--images", "3", "--views", "2"]
    result = runner.invoke(app, [*args, "--cell", str(cell)])
    assert result.exit_code == 0, result.output
    assert f"{tmp_path / 'mnist'} has no train split: showing its test split (--split to choose)" in result.stderr
    assert "statistics: computed from the 20 test images (the data has no train split)" in result.stderr
    assert "3 images x 2 views from the test split, recipe mnist:" in result.stdout  # grey: the mnist recipe
    grid = iio.imread(out)
    assert grid.shape == (3 * (cell + LABEL_HEIGHT + GAP) + GAP, 3 * (cell + GAP) + GAP, 3)
    images, labels = truth["test"]
    first = images[pick_images(images, labels, 3)[0]]
    for channel in range(3):  # the grey digit, drawn on every channel
        np.testing.assert_array_equal(_cell(grid, 0, 0, cell)[::3, ::3, channel], first)


def test_preview_split_and_statistics_where_the_data_has_a_train_split(tmp_path):
    from synth import make_mnist_folder

    from cifarkit.augment.preview import preview_split, preview_stats

    make_mnist_folder(tmp_path / "mnist", train=30, test=20)
    source = data.open_data(tmp_path / "mnist")
    assert preview_split(source.counts, None) == "train" and preview_split(source.counts, "test") == "test"
    stats, note = preview_stats(source, "test", None)
    assert (stats.split, stats.images, note) == ("train", 30, None)  # as training would normalise
    assert preview_split({"test": 20}, None) == "test"


def test_a_colour_recipe_on_grey_images_is_one_line(tmp_path):
    from synth import make_mnist_folder

    make_mnist_folder(tmp_path / "mnist", train=0, test=20)
    out = tmp_path / "p.png"
    result = runner.invoke(
        app, ["augment-preview", "--data", str(tmp_path / "mnist"), "-o", str(out), "-q"] + ["--recipe", "paper"]
    )
    assert result.exit_code == 2, result.output
    assert result.stderr == (
        f"cifarkit: error: --recipe paper shifts colours along RGB's principal components; {tmp_path / 'mnist'} holds "
        "grey images (--recipe mnist or cifar)\n"
    )
    assert not out.exists()


def test_a_view_shows_ops_after_normalisation_as_the_network_sees_them():
    """airbench-cutout standardises, then zeroes a 12x12 square: zero is the training mean's
    colour, so the preview draws the square in that colour (its rows undo the normalisation)."""
    from cifarkit.augment.preview import render_rows
    from cifarkit.augment.recipes import get_recipe
    from cifarkit.readers.stats import RunningMoments

    rng = np.random.default_rng(0)
    moments = RunningMoments()
    moments.update(rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
    stats = moments.finish("synthetic")
    mean_colour = np.round(np.array(stats.mean) * 255).astype(np.uint8)
    images = np.full((3, 32, 32, 3), 250, np.uint8)  # translations and flips leave it as it is
    rows = render_rows(images, get_recipe("airbench-cutout"), stats, views=4, seed=1, stages=True)
    assert [caption for caption, index, _ in rows if index == 0][-1] == "+ cutout 12"
    for caption, _, views in rows:
        for view in views:
            square = (view != 250).any(axis=-1)
            if caption != "+ cutout 12":
                assert not square.any()  # normalised and undone: the colours come back unchanged
                continue
            rows_hit, columns_hit = np.flatnonzero(square.any(axis=1)), np.flatnonzero(square.any(axis=0))
            assert square.sum() == 144 and len(rows_hit) == len(columns_hit) == 12
            np.testing.assert_array_equal(view[square], np.broadcast_to(mean_colour, (144, 3)))
