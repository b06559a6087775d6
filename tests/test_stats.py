"""Dataset statistics: float64 moments, eigen decomposition, the stats file and `cifarkit stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError
from cifarkit.readers.stats import bundled_stats, compute_stats, load_stats, save_stats, stats_for

runner = CliRunner()


def _numpy_truth(images: np.ndarray):
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0
    return pixels.mean(axis=0), pixels.std(axis=0), np.cov(pixels.T, bias=True)


def test_streamed_moments_equal_numpy_on_the_whole_array():
    images = np.random.default_rng(0).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    images[..., 1] = images[..., 0] // 2 + 60  # correlated channels, as in real photos
    result = compute_stats([images[:17], images[17:40], images[40:]])
    mean, std, cov = _numpy_truth(images)
    np.testing.assert_allclose(result.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(result.std, std, rtol=1e-10)
    np.testing.assert_allclose(result.covariance, cov, atol=1e-12)
    values, vectors = np.array(result.eigenvalues), np.array(result.eigenvectors)
    assert list(values) == sorted(values, reverse=True)
    np.testing.assert_allclose(vectors @ np.diag(values) @ vectors.T, cov, atol=1e-12)  # P L P^T = C
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(3), atol=1e-12)
    assert result.images == 50 and result.pixels == 50 * 1024


def test_stats_file_round_trips_and_bad_files_are_clear(tmp_path):
    result = compute_stats([np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)], "x")
    save_stats(result, tmp_path / "stats.json")
    assert load_stats(tmp_path / "stats.json") == result
    written = json.loads((tmp_path / "stats.json").read_text())
    np.testing.assert_allclose(written["mean_255"], np.array(result.mean) * 255)
    assert "[0, 1]" in written["scale"]
    (tmp_path / "bad.json").write_text('{"mean": [1, 2, 3]}')
    with pytest.raises(SourceError, match="bad.json"):
        load_stats(tmp_path / "bad.json")
    with pytest.raises(SourceError, match="no such"):
        load_stats(tmp_path / "missing.json")


def test_bundled_cifar10_stats_are_used_only_for_the_full_training_split(cifar10_tar):
    bundled = bundled_stats("cifar10")
    assert bundled is not None and bundled.images == 50_000 and bundled.dataset == "cifar10"
    assert all(0.4 < m < 0.55 for m in bundled.mean) and all(0.2 < s < 0.3 for s in bundled.std)
    source = data.open_data(cifar10_tar.path)  # 30 synthetic images: computed, not bundled
    computed = stats_for(source)
    mean, _, _ = _numpy_truth(cifar10_tar.splits["train"].images)
    np.testing.assert_allclose(computed.mean, mean, rtol=1e-12)
    source.counts = {**source.counts, "train": 50_000}  # a full training split gets the bundled numbers
    assert stats_for(source) == bundled


@pytest.mark.parametrize("option", ["--source", "--data"])  # --data as in train and evaluate
def test_cli_stats_writes_the_numbers(cifar10_tar, tmp_path, option):
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["stats", option, str(cifar10_tar.path), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "cifar10 train: 30 images" in result.stdout
    mean, std, _ = _numpy_truth(cifar10_tar.splits["train"].images)
    np.testing.assert_allclose(load_stats(out).mean, mean, rtol=1e-12)
    np.testing.assert_allclose(load_stats(out).std, std, rtol=1e-10)


def test_cli_stats_on_a_missing_source_is_one_line(tmp_path):
    result = runner.invoke(app, ["stats", "--source", str(tmp_path / "nothing"), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and "no such file" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "s.json").exists()
