"""Image files as input: every mode and format a tree may hold read as RGB alike by export, stats
and train; a broken file named; decompression bombs refused before decoding; paths that are not a
file or folder refused in one line."""

from __future__ import annotations

import os
import struct
import weakref
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError
from cifarkit.sources import open_source
from cifarkit.sources.folder import MAX_PIXELS, read_image
from cifarkit.sources.image_file import PIXELS_PER_BYTE

runner = CliRunner()


def _blocks(height: int, width: int, seed: int = 0) -> np.ndarray:
    """RGB in flat 8x8 blocks: JPEG keeps such colours to within a few levels."""
    rng = np.random.default_rng(seed)
    cells = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(cells, 8, axis=0), 8, axis=1)


def _tree(root: Path, files: dict[str, Image.Image | bytes], **save) -> Path:
    """root/train/<class>/<name> for {"class/name": image or raw bytes}."""
    for name, content in files.items():
        path = root / "train" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            content.save(path, **save)
    return root


def _tree_images(root: Path, image_size: int) -> np.ndarray:
    """What stats and train read: the tf.data reader's images, in the source's order."""
    images, _ = data.to_numpy(data.open_data(root).dataset("train", image_size=image_size))
    return images


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png(width: int, height: int, idat: bytes = b"", *, bit_depth: int = 8) -> bytes:
    """A grey PNG made by hand: its header may claim any size; ``idat`` is the compressed data."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _zero_png(side: int) -> bytes:
    """A real, complete 1-bit black PNG of side x side pixels: tens of KB on disk, side**2 * 3 bytes
    once decoded as RGB."""
    packer = zlib.compressobj(9)
    row = bytes(1 + (side + 7) // 8)  # filter byte, then the packed bits
    return _png(side, side, b"".join(packer.compress(row) for _ in range(side)) + packer.flush(), bit_depth=1)


# ---------------------------------------------------------------------------
# Colour modes: CMYK, grey + alpha, palettes
# ---------------------------------------------------------------------------


def test_cmyk_jpeg_is_converted_to_rgb_by_every_reader(tmp_path):
    rgb = _blocks(32, 48)
    cmyk = Image.fromarray(rgb).convert("CMYK")  # Pillow writes Adobe's inverted CMYK
    root = _tree(tmp_path / "tree", {"a/cmyk.jpg": cmyk}, quality=95)
    assert Image.open(root / "train/a/cmyk.jpg").mode == "CMYK"
    exported = next(iter(open_source(root).take("train", 0, 1).images))  # what export reads
    assert exported.shape == (32, 48, 3)
    assert np.abs(exported.astype(int) - rgb).mean() < 2  # its first three channels were ~128 off
    assert np.abs(exported.astype(int) - rgb).max() <= 12
    streamed = _tree_images(root, image_size=32)[0]  # stats and train: squared to 32x32, centre
    assert np.abs(streamed.astype(int) - rgb[:, 8:40]).mean() < 2


def test_grey_alpha_png_and_palette_gif_are_read_exactly(tmp_path):
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    alpha = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    palette_image = Image.fromarray(_blocks(8, 8, seed=2)).quantize(colors=7)
    root = _tree(
        tmp_path / "tree",
        {
            "a/grey_alpha.png": Image.fromarray(np.stack([grey, alpha], axis=-1), mode="LA"),
            "b/palette.gif": palette_image,
        },
    )
    want = [np.repeat(grey[..., None], 3, axis=-1), np.asarray(palette_image.convert("RGB"))]
    exported = list(open_source(root).take("train", 0, 2).images)
    for got, expected in zip(exported, want):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(_tree_images(root, image_size=8), np.stack(want))


def test_sixteen_bit_grey_keeps_the_high_byte(tmp_path):
    wide = np.arange(0, 65536, 1024, dtype=np.uint16).reshape(8, 8)
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in wide)  # filter 0, big-endian
    (tmp_path / "grey16.png").write_bytes(_png(8, 8, zlib.compress(rows), bit_depth=16))
    got = read_image(tmp_path / "grey16.png")
    np.testing.assert_array_equal(got, np.repeat((wide >> 8).astype(np.uint8)[..., None], 3, axis=-1))


# ---------------------------------------------------------------------------
# Formats TensorFlow does not decode: the same pixels in export, stats and train
# ---------------------------------------------------------------------------


def test_tiff_ppm_pgm_bmp_webp_trees_read_alike_everywhere(tmp_path):
    images = {f"c{i}/{i}.{ext}": _blocks(16, 16, seed=i) for i, ext in enumerate(("tif", "ppm", "bmp", "webp"))}
    files = {name: Image.fromarray(rgb) for name, rgb in images.items()}
    grey = _blocks(16, 16, seed=9)[..., 0]
    files["c4/4.pgm"], images["c4/4.pgm"] = Image.fromarray(grey), np.repeat(grey[..., None], 3, axis=-1)
    root = _tree(tmp_path / "tree", files, lossless=True)  # lossless: for WebP, ignored by the others
    want = np.stack(list(images.values()))

    np.testing.assert_array_equal(np.stack(list(open_source(root).take("train", 0, 5).images)), want)
    np.testing.assert_array_equal(_tree_images(root, image_size=16), want)
    result = runner.invoke(app, ["stats", "-s", str(root), "--image-size", "16", "-o", str(tmp_path / "s.json"), "-q"])
    assert result.exit_code == 0, result.output
    assert f"{want.reshape(-1, 3).mean(axis=0)[0] / 255:.4f}" in result.stdout  # the red mean

    out = tmp_path / "out"
    result = runner.invoke(app, ["export", "--format", "png", "-s", str(root), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    exported = sorted((out / "train").rglob("*.png"), key=lambda p: p.parent.name)
    np.testing.assert_array_equal(np.stack([read_image(p) for p in exported]), want)


# ---------------------------------------------------------------------------
# A broken file is named, wherever it is read
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("position", ["first", "middle", "last"])
def test_a_broken_image_in_a_tree_is_named_by_stats(tmp_path, position):
    good = {f"a/{i}.png": Image.fromarray(_blocks(8, 8, seed=i)) for i in range(1, 4)}
    broken = {"first": "a/0.png", "middle": "a/2b.png", "last": "a/9.png"}[position]
    root = _tree(tmp_path / "tree", good)
    whole = (root / "train/a/1.png").read_bytes()
    (root / "train" / broken).write_bytes(whole[:-20])  # truncated: TensorFlow says "Invalid PNG data"
    result = runner.invoke(app, ["stats", "-s", str(root), "--image-size", "8", "-o", str(tmp_path / "s.json"), "-q"])
    assert result.exit_code == 1
    assert str(root / "train" / broken) in result.output and "cannot decode image" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_the_tree_reader_error_carries_a_source_error(tmp_path):
    import tensorflow as tf

    root = _tree(tmp_path / "tree", {"a/ok.png": Image.fromarray(_blocks(8, 8)), "a/zz.png": b"not a png"})
    with pytest.raises(tf.errors.OpError) as caught:
        _tree_images(root, image_size=8)
    error = data.source_error_in(caught.value)
    assert isinstance(error, SourceError) and str(error).startswith(f"{root / 'train/a/zz.png'}: cannot decode image")


# ---------------------------------------------------------------------------
# Decompression bombs: refused from the header, before any decoding
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "side, claim", [(12000, "12000 x 12000 pixels"), (20000, "20000 x 20000 pixels; the limit is 100 megapixels")]
)
def test_a_huge_png_header_is_refused_before_decoding(tmp_path, side, claim):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(side, side))  # no pixel data at all: decoding would fail differently
    with pytest.raises(SourceError) as caught:
        read_image(bomb)
    assert str(caught.value).startswith(f"{bomb}: image larger than cifarkit reads ({claim}")


def test_an_image_at_the_pixel_cap_is_not_refused_for_its_size(tmp_path):
    edge = tmp_path / "edge.png"
    # Exactly the cap, in a file big enough to hold it at 64 pixels a byte; the data is not a PNG's.
    edge.write_bytes(_png(MAX_PIXELS // 10, 10, bytes(MAX_PIXELS // PIXELS_PER_BYTE)))
    with pytest.raises(SourceError, match="cannot decode image"):
        read_image(edge)


def test_a_header_claiming_more_pixels_than_its_bytes_can_hold_is_refused(tmp_path):
    small = tmp_path / "small.png"
    small.write_bytes(_png(9900, 9900, bytes(300_000)))  # 98 megapixels in 300 KB: a bomb's ratio
    with pytest.raises(SourceError) as caught:
        read_image(small)
    assert str(caught.value).startswith(
        f"{small}: image larger than cifarkit reads (9900 x 9900 pixels; 64 pixels per byte"
    )
    honest = tmp_path / "honest.png"
    honest.write_bytes(_png(4096, 4096))  # at the floor: read whatever its size (and fails as data)
    with pytest.raises(SourceError, match="cannot decode image"):
        read_image(honest)


_PEAK_MEMORY_OF_A_READ = """
import resource, sys
import tensorflow as tf
from cifarkit import data
dataset = data.open_data(sys.argv[1]).dataset("train", image_size=8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    data.to_numpy(dataset)
except tf.errors.OpError as exc:
    print(data.source_error_in(exc))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)  # KiB on Linux
"""


def test_a_real_bomb_in_a_tree_is_refused_by_name_without_decoding(tmp_path):
    import subprocess
    import sys

    payload = _zero_png(12000)  # 432 MB as RGB, as TensorFlow would decode it
    assert len(payload) < 100_000
    root = _tree(tmp_path / "tree", {"a/ok.png": Image.fromarray(_blocks(8, 8)), "a/zero.png": payload})
    result = runner.invoke(app, ["stats", "-s", str(root), "--image-size", "8", "-o", str(tmp_path / "s.json"), "-q"])
    assert result.exit_code == 1
    assert f"{root / 'train/a/zero.png'}: image larger than cifarkit reads (12000 x 12000 pixels" in result.output
    # Peak memory, in a fresh process whose peak nothing else has raised.
    run = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_OF_A_READ, str(root)], capture_output=True, text=True)
    message, grown = run.stdout.strip().splitlines()
    assert "zero.png: image larger than cifarkit reads" in message
    assert int(grown) < 100_000, f"reading the tree raised peak memory by {grown} KiB"


def test_predict_holds_one_decoded_original_at_a_time(tmp_path, monkeypatch):
    import keras

    from cifarkit.evaluation import predict

    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(_blocks(64, 96, seed=i)).save(paths[-1])
    alive: list[weakref.ref] = []
    most_alive = []

    def tracking_read(path, pixels):
        most_alive.append(sum(ref() is not None for ref in alive))  # originals still held
        image = read_image(path)
        alive.append(weakref.ref(image))
        return image, image.shape[:2]

    monkeypatch.setattr("cifarkit.sources.image_file.read_image_scaled", tracking_read)
    monkeypatch.setattr(predict, "model_parts", lambda model: None)  # a bare model stands in
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3)])
    predictions = predict.predict_files(model, paths)
    assert [p.size for p in predictions] == [(64, 96)] * 5
    assert max(most_alive) == 0  # each original was released before the next was decoded


# ---------------------------------------------------------------------------
# Paths that are not a file or folder
# ---------------------------------------------------------------------------


@pytest.fixture
def not_a_source(tmp_path, request):
    if request.param == "device":
        return "/dev/null"
    if request.param == "pipe":
        os.mkfifo(tmp_path / "pipe")
        return str(tmp_path / "pipe")
    if request.param == "empty file":
        (tmp_path / "empty.tar.gz").write_bytes(b"")
        return str(tmp_path / "empty.tar.gz")
    (tmp_path / "file").write_bytes(b"x")
    return str(tmp_path / "file" / "inside")


@pytest.mark.parametrize("command", ["info", "stats", "export"])
@pytest.mark.parametrize(
    "not_a_source, message",
    [
        ("device", "a character device, not a dataset"),
        ("pipe", "a named pipe, not a dataset"),
        ("empty file", "empty file"),
        ("inside a file", "no such file or folder"),
    ],
    indirect=["not_a_source"],
)
def test_a_path_that_is_no_file_or_folder_is_one_clear_line(tmp_path, command, not_a_source, message):
    extra = {"info": [], "stats": ["-o", str(tmp_path / "out"), "-q"], "export": ["--out", str(tmp_path / "out"), "-q"]}
    result = runner.invoke(app, [command, "--source", not_a_source, *extra[command]])
    assert result.exit_code == 1, result.output
    assert result.output.strip() == result.output.strip().splitlines()[0]  # one line
    assert f"{not_a_source}: " in result.output and message in result.output
    assert not (tmp_path / "out").exists()
