"""Training batches of photo files shuffle file names and encoded records, never decoded images:
a tree draws a new order of its files every pass, a TFRecord split a new order of its shards and
a buffer of encoded records, both before anything is decoded. Each pass reads every image once,
the same seed gives the same passes, and a broken file is still named."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import synth

from cifarkit import data
from cifarkit.errors import SourceError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.readers.file_shuffle import ENCODED_SHUFFLE_RECORDS
from cifarkit.readers.pipeline import uint8_batches
from cifarkit.readers.reader import DECODED_SHUFFLE_BUFFER
from cifarkit.runtime.lazy import tf
from cifarkit.sources import open_source

SIZE = 32
DECODES = {"DecodeJpeg", "DecodeAndCropJpeg", "DecodePng", "DecodeImage", "DecodeGif", "DecodeBmp"}


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """12 JPEG photos of three sizes, and their TFRecord export in 3 shards."""
    root = tmp_path_factory.mktemp("shuffle")
    sizes = ((70, 90), (90, 70), (81, 67))
    tree = synth.make_image_folder(root / "tree", per_class={"train": 6}, sizes=sizes, ext="jpg", seed=4)
    export_dataset(
        open_source(tree.path), root / "tfrecord", ExportOptions(format="tfrecord", workers=1, shards=3, quiet=True)
    )
    return {"tree": tree.path, "tfrecord": root / "tfrecord"}


def _shuffles(ds) -> list[tuple[int, bool]]:
    """(buffer size, whether what it holds was decoded) of every shuffle in a pipeline's graph,
    inside dataset functions (a flat_map's) too."""
    graph = tf.compat.v1.GraphDef.FromString(ds._as_serialized_graph().numpy())
    functions = {f.signature.name: f for f in graph.library.function}

    def called(node) -> list[str]:
        return [name for a in node.attr.values() for name in [a.func.name, *(f.name for f in a.list.func)] if name]

    def decodes(function: str, seen: set) -> bool:
        if function in seen or function not in functions:
            return False
        seen.add(function)
        return any(n.op in DECODES or any(decodes(f, seen) for f in called(n)) for n in functions[function].node_def)

    found = []
    for scope in [list(graph.node), *(list(f.node_def) for f in functions.values())]:
        nodes = {n.name: n for n in scope}

        def upstream_decodes(name: str, seen: set, nodes: dict = nodes) -> bool:
            node = nodes.get(name.lstrip("^").split(":")[0])
            if node is None or node.name in seen:
                return False
            seen.add(node.name)
            return any(decodes(f, set()) for f in called(node)) or any(
                upstream_decodes(i, seen, nodes) for i in node.input
            )

        for node in scope:
            if node.op.startswith("ShuffleDataset"):
                size = nodes[node.input[1].split(":")[0]].attr["value"].tensor.int64_val
                found.append((int(size[0]) if size else -1, upstream_decodes(node.input[0], set())))
    return found


@pytest.mark.parametrize("kind", ["tree", "tfrecord"])
def test_training_batches_hold_no_shuffle_buffer_of_decoded_images(photos, kind):
    source = data.open_data(photos[kind])
    ds = uint8_batches(source, "train", batch_size=4, shuffle=True, seed=3, drop_remainder=True, image_size=SIZE)
    shuffles = _shuffles(ds)
    assert shuffles and not any(decoded for _, decoded in shuffles), shuffles
    # The tree shuffles its 12 file indices; the export its 3 shards, then at most
    # ENCODED_SHUFFLE_RECORDS encoded records.
    assert all(size <= max(12, ENCODED_SHUFFLE_RECORDS) for size, _ in shuffles)
    # A selection of a tree is a shorter list of files, shuffled the same way; one of the records
    # can only shuffle decoded images, and still does, bounded (the graph check sees it).
    part = source.select({"train": "train[:6]"})
    ds = uint8_batches(part, "train", batch_size=2, shuffle=True, seed=3, drop_remainder=True, image_size=SIZE)
    assert (min(6, DECODED_SHUFFLE_BUFFER), kind == "tfrecord") in _shuffles(ds)


def _passes(path, seed: int, passes: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
    ds = data.open_data(path).dataset("train", image_size=SIZE, shuffle=True, seed=seed)
    assert len(ds) == 12
    return [data.to_numpy(ds) for _ in range(passes)]


@pytest.mark.parametrize("kind", ["tree", "tfrecord"])
def test_each_shuffled_pass_reads_every_image_once_in_a_new_order(photos, kind):
    images, labels = data.to_numpy(data.open_data(photos[kind]).dataset("train", image_size=SIZE))
    passes = _passes(photos[kind], seed=3)
    for shuffled, shuffled_labels in passes:
        order = [next(i for i, image in enumerate(images) if np.array_equal(image, s)) for s in shuffled]
        assert sorted(order) == list(range(12))  # every image once, with its own label
        np.testing.assert_array_equal(shuffled_labels, labels[order])
    assert not np.array_equal(passes[0][0], passes[1][0])  # a new order every pass
    again = _passes(photos[kind], seed=3)  # the same seed, the same sequence of orders
    for (first, _), (second, _) in zip(passes, again):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(_passes(photos[kind], seed=4, passes=1)[0][0], passes[0][0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_broken_file_is_named_in_a_shuffled_pass(photos, tmp_path, seed):
    tree = tmp_path / "tree"
    shutil.copytree(photos["tree"], tree)
    broken = sorted((tree / "train").rglob("*.jpg"))[5]
    broken.write_bytes(broken.read_bytes()[:200])  # the header survives, the scan does not
    ds = data.open_data(tree).dataset("train", image_size=SIZE, shuffle=True, seed=seed)
    with pytest.raises(tf.errors.OpError) as caught:
        data.to_numpy(ds)
    error = data.source_error_in(caught.value)
    assert isinstance(error, SourceError) and str(error).startswith(str(broken)), error
