"""Dataset metadata written by someone else: every file is parsed once into checked types
(cifarkit/metadata), and a crafted one is one line naming it, never a path outside the folder,
a traceback or memory without bound.

Each case starts from a real export (TFRecord with TFDS's metadata, or a PNG tree with its
manifest) and changes one thing, as an attacker would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cifarkit import data
from cifarkit.cli import app
from cifarkit.errors import SourceError, UnsafeInputError
from cifarkit.formats.export import ExportOptions, export_dataset
from cifarkit.metadata import tfds
from cifarkit.metadata.labels import NumberedNames
from cifarkit.sources import open_source
from cifarkit.sources.labelled import Batch, LabelledImages

runner = CliRunner()


def one_line_error(result, *needles: str) -> str:
    """The CLI failed with exit 1 and one ``cifarkit: error:`` line holding each needle."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error: ")]
    assert len(errors) == 1 and result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="module")
def tfrecord_export(cifar10_tar, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tfr") / "export"
    export_dataset(
        open_source(cifar10_tar.path), out, ExportOptions(format="tfrecord", shards=2, workers=1, quiet=True)
    )
    return out


@pytest.fixture(scope="module")
def png_export(cifar10_tar, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("png") / "export"
    export_dataset(open_source(cifar10_tar.path), out, ExportOptions(format="png", workers=1, quiet=True))
    return out


def tfds_folder(export: Path, dest: Path) -> Path:
    """The TFRecord export as TFDS would have prepared it: shards and TFDS's metadata only."""
    shutil.copytree(
        export, dest, ignore=shutil.ignore_patterns("cifarkit_info.json", ".cifarkit*", "manifest.csv", "labels.txt")
    )
    return dest


def edit_json(path: Path, edit) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


def cli_export(source: Path, out: Path, *more: str):
    return runner.invoke(
        app,
        ["export", "--source", str(source), "--format", "png", "--out", str(out), "--workers", "1", "--quiet", *more],
    )


def victim(tmp_path: Path) -> Path:
    """A folder outside OUT that an attack would write into or, with --overwrite, delete."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "sentinel").write_text("keep")
    return folder


def assert_untouched(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == ["sentinel"]
    assert (folder / "sentinel").read_text() == "keep"


# --- split names never become paths ---------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
@pytest.mark.parametrize("attack", ["../../victim", "absolute"])
def test_a_split_name_in_dataset_info_json_cannot_reach_outside_out(tfrecord_export, tmp_path, attack, overwrite):
    target = victim(tmp_path)
    name = str(target) if attack == "absolute" else attack
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    for shard in source.glob("cifar10-train.tfrecord-*"):  # shard names without the split in them
        shard.rename(source / ("x-" + shard.name.rsplit("-", 3)[-3] + "-of-" + shard.name.rsplit("-", 1)[-1]))

    def edit(info):
        info["splits"][0].update(name=name, filepathTemplate="x-{SHARD_X_OF_Y}")
        return info

    edit_json(source / "dataset_info.json", edit)
    out = tmp_path / "a" / "out"
    out.mkdir(parents=True)
    one_line_error(cli_export(source, out, *overwrite), "dataset_info.json", "split name", "path separator")
    assert_untouched(target)
    assert not any(out.iterdir())


def test_a_split_name_in_manifest_csv_cannot_reach_outside_out(png_export, tmp_path):
    target = victim(tmp_path)
    source = tmp_path / "tree"
    shutil.copytree(png_export, source)
    manifest = (source / "manifest.csv").read_text()
    (source / "manifest.csv").write_text(manifest.replace(",train,", ",../../victim,"))
    out = tmp_path / "a" / "out"
    one_line_error(cli_export(source, out, "--overwrite"), "manifest.csv", "split name", "'../../victim'")
    assert_untouched(target)
    with pytest.raises(SourceError, match="split name"):
        data.open_data(source)


def test_a_split_name_in_cifarkit_info_json_cannot_reach_outside_out(tfrecord_export, tmp_path):
    target = victim(tmp_path)
    source = tmp_path / "tfr"
    shutil.copytree(tfrecord_export, source)
    edit_json(source / "cifarkit_info.json", lambda info: {**info, "splits": {"../../victim": info["splits"]["train"]}})
    out = tmp_path / "a" / "out"
    one_line_error(cli_export(source, out, "--overwrite"), "cifarkit_info.json", "'../../victim'")
    assert_untouched(target)


@pytest.mark.parametrize("template", ["../{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "/etc/{SHARD_INDEX}"])
def test_a_shard_file_template_leading_out_of_the_folder_is_refused(tfrecord_export, tmp_path, template):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    edit_json(
        source / "dataset_info.json",
        lambda info: {**info, "splits": [{**s, "filepathTemplate": template} for s in info["splits"]]},
    )
    with pytest.raises(UnsafeInputError, match="shard file name"):
        data.open_data(source)


def test_an_export_refuses_split_names_that_are_not_folder_names(tmp_path):
    images = np.zeros((2, 32, 32, 3), np.uint8)
    batch = Batch("x", images, np.array([0, 1]), ["a", "b"])
    for names in (("../up",), ("train", "Train")):
        dataset = LabelledImages("d", "test", Path("made-up"), ("a", "b"), {n: [batch] for n in names})
        with pytest.raises(UnsafeInputError, match="split name"):
            export_dataset(dataset, tmp_path / "out", ExportOptions(format="tfrecord", workers=1, quiet=True))
        assert not (tmp_path / "out").exists()


# --- class names that would share a folder --------------------------------------------------------


@pytest.mark.parametrize(
    "names, shown",
    [
        (("cat", "cat "), ["'cat'", "'cat '", "one folder"]),
        (("Dog", "dog"), ["'Dog'", "'dog'", "one folder"]),
        ((" ", "_"), ["' '", "blank"]),
        (("a/b", "c"), ["'a/b'", "path separator"]),
    ],
)
def test_class_names_that_would_share_or_escape_a_folder_are_refused_not_merged(tmp_path, names, shown):
    images = np.zeros((4, 32, 32, 3), np.uint8)
    batch = Batch("train", images, np.array([0, 1, 0, 1]), ["f"] * 4)
    dataset = LabelledImages("d", "test", Path("made-up"), names, {"train": [batch]})
    out = tmp_path / "out"
    with pytest.raises(UnsafeInputError) as caught:
        export_dataset(dataset, out, ExportOptions(format="png", workers=1, quiet=True))
    assert all(part in str(caught.value) for part in shown) and "\n" not in str(caught.value)
    assert not out.exists()


def test_a_photo_tree_with_cat_and_cat_space_folders_is_refused_by_the_cli(tmp_path):
    import synth

    tree = synth.make_image_folder(tmp_path / "pets", classes=("cat", "cat ")).path
    one_line_error(cli_export(tree, tmp_path / "out"), "'cat'", "'cat '", "one folder")
    assert not (tmp_path / "out").exists()


# --- counts and shapes bounded by what a folder can hold ------------------------------------------


def _features(folder: Path, edit) -> None:
    edit_json(folder / "features.json", lambda tree: (edit(tree["featuresDict"]["features"]), tree)[1])


def test_ten_to_the_twelve_classes_without_names_is_one_line_and_allocates_nothing(tfrecord_export, tmp_path):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    (source / "label.labels.txt").unlink()
    _features(source, lambda f: f["label"]["classLabel"].update(numClasses=str(10**12)))
    one_line_error(runner.invoke(app, ["info", str(source)]), "features.json", "numClasses", "1000000")


def test_a_million_classes_without_names_are_numbered_lazily(tfrecord_export, tmp_path):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    (source / "label.labels.txt").unlink()
    _features(source, lambda f: f["label"]["classLabel"].update(numClasses="1000000"))
    names = tfds.read_folder_info(source).labels["label"]
    assert isinstance(names, NumberedNames) and len(names) == 10**6
    assert (names[0], names[-1], names[3:5]) == ("0", "999999", ("3", "4"))
    assert len(data.open_data(source).class_names) == 10**6


def test_a_30000_square_tensor_without_encoding_is_refused_before_tensorflow(tfrecord_export, tmp_path):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    tensor = {
        "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"dtype": "uint8", "encoding": "none", "shape": {"dimensions": ["30000", "30000", "3"]}},
    }
    _features(source, lambda f: f.update(image=tensor))
    for command in (["info", str(source)], ["stats", "--data", str(source), "--out", str(tmp_path / "s.json")]):
        one_line_error(runner.invoke(app, command), "features.json", "100,000,000 pixels")


@pytest.mark.parametrize("dims", [["30000", "-1", "3"], ["-1", "30000", "3"]])
def test_a_declared_raw_shape_with_a_varying_dimension_is_sized_by_its_known_ones(tfrecord_export, tmp_path, dims):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    tensor = {
        "pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
        "tensor": {"dtype": "uint8", "encoding": "bytes", "shape": {"dimensions": dims}},
    }
    _features(source, lambda f: f.update(image=tensor))
    for command in (["info", str(source)], ["stats", "--data", str(source), "--out", str(tmp_path / "s.json")]):
        one_line_error(runner.invoke(app, command), "features.json", "90,000 values", "more than any of its shards")


@pytest.mark.parametrize("channels", ["100000", "2", "0"])
def test_an_image_feature_of_channels_no_decoder_produces_is_refused_where_features_json_is_read(
    tfrecord_export, tmp_path, channels
):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    _features(source, lambda f: f["image"]["image"]["shape"].update(dimensions=["32", "32", channels]))
    one_line_error(runner.invoke(app, ["info", str(source)]), "features.json", "image.shape")
    with pytest.raises(SourceError, match="features.json") as caught:
        data.open_data(source)  # before TensorFlow's decoder refuses it inside tf.data
    assert "\n" not in str(caught.value)


def test_the_pixel_budget_of_declared_shapes_is_the_image_decoders():
    from cifarkit.sources import image_file

    assert tfds.MAX_PIXELS == image_file.MAX_PIXELS


@pytest.mark.parametrize(
    "file, edit, where",
    [
        ("dataset_info.json", lambda i: {**i, "name": 5}, "name"),
        ("dataset_info.json", lambda i: {**i, "splits": {"train": i["splits"][0]}}, "splits"),
        ("dataset_info.json", lambda i: {**i, "splits": [{**i["splits"][0], "shardLengths": "20"}]}, "shardLengths"),
        ("dataset_info.json", lambda i: {**i, "splits": [{**i["splits"][0], "shardLengths": [[1]]}]}, "shardLengths.0"),
        (
            "dataset_info.json",
            lambda i: {**i, "splits": [{**i["splits"][0], "shardLengths": ["-3"]}]},
            "shardLengths.0",
        ),
        ("dataset_info.json", lambda i: {**i, "splits": [{**i["splits"][0], "name": 7}]}, "splits.0.name"),
        ("dataset_info.json", lambda i: {**i, "fileFormat": []}, "fileFormat"),
        ("dataset_info.json", lambda i: [i], "JSON object"),
        ("features.json", lambda t: {**t, "featuresDict": []}, "featuresDict"),
        ("features.json", lambda t: (t["featuresDict"]["features"].update(image="x"), t)[1], "features.image"),
        (
            "features.json",
            lambda t: (t["featuresDict"]["features"]["image"]["image"]["shape"].update(dimensions="32"), t)[1],
            "dimensions",
        ),
        (
            "features.json",
            lambda t: (
                t["featuresDict"]["features"]["image"]["image"]["shape"].update(dimensions=["32", "abc", "3"]),
                t,
            )[1],
            "dimensions.1",
        ),
        (
            "features.json",
            lambda t: (t["featuresDict"]["features"]["label"]["classLabel"].update(numClasses={}), t)[1],
            "numClasses",
        ),
        (
            "features.json",
            lambda t: (t["featuresDict"]["features"]["label"]["classLabel"].update(numClasses="-5"), t)[1],
            "numClasses",
        ),
    ],
)
def test_wrong_types_in_tfds_metadata_are_one_line_naming_the_field(tfrecord_export, tmp_path, file, edit, where):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    edit_json(source / file, edit)
    with pytest.raises(SourceError) as caught:
        data.open_data(source)
    message = str(caught.value)
    assert file in message and where in message and "\n" not in message


@pytest.mark.parametrize("digits", ['"%s"', "%s"])
def test_a_five_thousand_digit_shard_length_is_refused(tfrecord_export, tmp_path, digits):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    text = (source / "dataset_info.json").read_text()
    info = json.loads(text)
    info["splits"][0]["shardLengths"][0] = "@@"
    huge = digits % ("9" * 5000)
    (source / "dataset_info.json").write_text(json.dumps(info).replace('"@@"', huge))
    error = one_line_error(runner.invoke(app, ["info", str(source)]), "dataset_info.json")
    assert "shardLengths" in error if digits.startswith('"') else "number out of range" in error


@pytest.mark.parametrize("edit", [lambda split: split.update(shardLengths=[]), lambda split: split.pop("shardLengths")])
def test_a_split_listing_no_shards_is_refused_as_tfds_refuses_it(tfrecord_export, tmp_path, edit):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    edit_json(source / "dataset_info.json", lambda info: (edit(info["splits"][-1]), info)[1])
    split = json.loads((source / "dataset_info.json").read_text())["splits"][-1]["name"]
    for command in (
        ["info", str(source)],
        ["export", "--data", str(source), "--format", "png", "--out", str(tmp_path / "out"), "--workers", "1"],
    ):
        one_line_error(runner.invoke(app, command), "dataset_info.json", repr(split), "no shards")
    with pytest.raises(SourceError, match="no shards"):
        data.open_data(source)


def test_the_shard_lengths_the_metadata_lists_are_on_the_typed_folder(tfrecord_export):
    folder = tfds.read_folder_info(tfrecord_export)
    assert folder.lengths == {"train": [15, 15], "test": [5, 5]} and folder.counts == {"train": 30, "test": 10}
    assert all(len(folder.files[s]) == len(folder.lengths[s]) for s in folder.lengths)


# --- nesting, encodings, sizes --------------------------------------------------------------------


@pytest.mark.parametrize("file", ["dataset_info.json", "features.json", "cifarkit_info.json"])
def test_deeply_nested_json_in_each_metadata_file_is_one_line(tfrecord_export, tmp_path, file):
    source = tmp_path / "tfr"
    shutil.copytree(tfrecord_export, source)
    text = (source / file).read_text()
    (source / file).write_text(text.replace("{", '{"extra": ' + "[" * 100_000 + "]" * 100_000 + ",", 1))
    with pytest.raises(SourceError, match="nested more than") as caught:
        data.open_data(source)
    assert file in str(caught.value)


@pytest.mark.parametrize("file", ["dataset_info.json", "label.labels.txt", "cifarkit_info.json"])
def test_non_utf8_bytes_in_tfrecord_metadata_are_one_line(tfrecord_export, tmp_path, file):
    source = tmp_path / "tfr"
    shutil.copytree(tfrecord_export, source)
    raw = (source / file).read_bytes()
    (source / file).write_bytes(raw.replace(b"cifar10" if file != "label.labels.txt" else b"cat", b"ci\xff\xfe", 1))
    with pytest.raises(SourceError) as caught:
        data.open_data(source)
    assert file in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("file", ["labels.txt", "manifest.csv"])
def test_non_utf8_bytes_in_an_image_export_are_one_line(png_export, tmp_path, file):
    source = tmp_path / "tree"
    shutil.copytree(png_export, source)
    raw = (source / file).read_bytes()
    (source / file).write_bytes(raw.replace(b"cat", b"c\xffat", 1))
    with pytest.raises(SourceError, match="not UTF-8") as caught:
        open_source(source)
    assert file in str(caught.value)


def test_a_ten_megabyte_labels_file_is_refused_at_the_size_its_class_count_allows(tfrecord_export, tmp_path):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    (source / "label.labels.txt").write_bytes(b"\n" * 9_000_000 + b"x\n" * 500_000)
    probe = textwrap.dedent("""
        import resource, sys
        from pathlib import Path
        from cifarkit.errors import SourceError
        from cifarkit.metadata import tfds
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            tfds.read_folder_info(Path(sys.argv[1]))
        except SourceError as exc:
            print(exc)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", probe, str(source)], capture_output=True, text=True, timeout=120)
    message, grown_mb = done.stdout.splitlines()
    assert "label.labels.txt" in message and "larger than" in message
    assert int(grown_mb) < 20  # the file's first ~40 KB are read, not its 10 MB


def test_more_names_than_declared_classes_is_refused_at_the_first_extra(tfrecord_export, tmp_path):
    source = tfds_folder(tfrecord_export, tmp_path / "tfds")
    (source / "label.labels.txt").write_text("".join(f"n{i}\n" for i in range(11)))
    with pytest.raises(SourceError, match="more than the 10 class names"):
        data.open_data(source)
    (source / "label.labels.txt").write_text("".join(f"n{i}\n" for i in range(9)))
    with pytest.raises(SourceError, match="lists 9 class names where its metadata declares 10"):
        data.open_data(source)


@pytest.mark.parametrize("file", ["label.labels.txt", "dataset_info.json", "features.json", "cifarkit_info.json"])
def test_a_metadata_file_linked_to_a_file_outside_the_folder_is_refused(tfrecord_export, tmp_path, file):
    source = tmp_path / "tfr"
    shutil.copytree(tfrecord_export, source)
    outside = tmp_path / "outside"
    shutil.copy(source / file, outside)
    (source / file).unlink()
    (source / file).symlink_to(outside)
    with pytest.raises(UnsafeInputError, match="outside") as caught:
        data.open_data(source)
    assert file in str(caught.value)


def test_a_metadata_link_that_stays_inside_the_folder_is_followed(tfrecord_export, tmp_path):
    source = tmp_path / "tfr"
    shutil.copytree(tfrecord_export, source)
    (source / "label.labels.txt").rename(source / "names.txt")
    os.symlink("names.txt", source / "label.labels.txt")
    assert data.open_data(source).class_names[:2] == ("airplane", "automobile")


@pytest.mark.parametrize("file", ["labels.txt", "manifest.csv"])
def test_an_image_export_metadata_file_linked_outside_is_refused(png_export, tmp_path, file):
    source = tmp_path / "tree"
    shutil.copytree(png_export, source)
    shutil.copy(source / file, tmp_path / "outside")
    (source / file).unlink()
    (source / file).symlink_to(tmp_path / "outside")
    with pytest.raises(UnsafeInputError, match="outside"):
        open_source(source)


# --- manifest.csv and labels.txt ------------------------------------------------------------------


def _plain_tree(png_export: Path, dest: Path) -> Path:
    """The PNG export without its cifarkit_info.json and state: the manifest is all there is."""
    shutil.copytree(png_export, dest, ignore=shutil.ignore_patterns("cifarkit_info.json", ".cifarkit*"))
    return dest


def _set_label(tree: Path, value: str) -> None:
    lines = (tree / "manifest.csv").read_text().splitlines()
    fields = lines[1].split(",")
    fields[3] = value
    lines[1] = ",".join(fields)
    (tree / "manifest.csv").write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("label", ["10", "-1", "9" * 5000, "x"])
def test_a_manifest_label_outside_labels_txt_is_one_line(png_export, tmp_path, label):
    tree = _plain_tree(png_export, tmp_path / "tree")
    _set_label(tree, label)
    result = runner.invoke(app, ["info", str(tree)])
    one_line_error(result, "manifest.csv", "line 2", "label")


def test_a_labels_txt_shorter_than_the_labels_used_is_one_line(png_export, tmp_path):
    tree = _plain_tree(png_export, tmp_path / "tree")
    (tree / "labels.txt").write_text("".join(f"{n}\n" for n in (tree / "labels.txt").read_text().split()[:9]))
    used = {int(row.split(",")[3]) for row in (tree / "manifest.csv").read_text().splitlines()[1:]}
    assert 9 in used  # the manifest uses the class labels.txt no longer names
    with pytest.raises(SourceError, match=r"label '9' is not a class of labels.txt \(0 to 8\)"):
        open_source(tree)
    kept = tmp_path / "kept"  # with cifarkit_info.json, labels.txt is held to its ten classes
    shutil.copytree(png_export, kept)
    (kept / "labels.txt").write_text((tree / "labels.txt").read_text())
    with pytest.raises(SourceError, match="lists 9 class names where its metadata declares 10"):
        open_source(kept)


@pytest.mark.parametrize("size", [10_000, 200_000])
def test_a_huge_csv_field_is_one_line(png_export, tmp_path, size):
    tree = tmp_path / "tree"
    shutil.copytree(png_export, tree)
    lines = (tree / "manifest.csv").read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + "," + "s" * size
    (tree / "manifest.csv").write_text("\n".join(lines) + "\n")
    result = runner.invoke(app, ["info", str(tree)])
    one_line_error(result, "manifest.csv")


def test_a_manifest_listing_fewer_images_than_cifarkit_info_json_is_refused(png_export, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(png_export, tree)
    lines = (tree / "manifest.csv").read_text().splitlines()
    (tree / "manifest.csv").write_text("\n".join(lines[:-3]) + "\n")  # cut: the last rows lost
    with pytest.raises(SourceError, match="lists 7 images of split 'test' where cifarkit_info.json records 10"):
        open_source(tree)
