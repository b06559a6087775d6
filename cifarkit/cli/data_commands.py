"""Commands that read and write datasets: export, info, download, stats, augment-preview."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..formats.beam_export import RUNNERS
from .app import app
from .options import (
    DataOption,
    Encoding,
    ExportFormat,
    JsonProgressOption,
    NoVerifyOption,
    QuietOption,
    RecipeName,
    TreeLayout,
    choices,
    open_data,
    open_records,
    say,
    split_list,
)

ExportRunner = choices("ExportRunner", RUNNERS)


@app.command()
def export(
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", case_sensitive=False, help="Output format (jpeg: jpg).")
    ] = ExportFormat.jpg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder. Default: ./<dataset>-<format>.")
    ] = None,
    source: DataOption = None,
    split: Annotated[str | None, typer.Option(help="Comma-separated splits, e.g. train,test. Default: all.")] = None,
    quality: Annotated[
        int, typer.Option(help="JPEG quality, 1-100: jpg, or tfrecord and webdataset with --encoding jpeg.")
    ] = 95,
    workers: Annotated[int | None, typer.Option(help="Worker processes. Default: all cores.")] = None,
    shards: Annotated[
        int | None,
        typer.Option(
            help="TFRecord or WebDataset shards per split. Default: one per 5,000 images (TFRecord: and 256 MiB)."
        ),
    ] = None,
    shard_size: Annotated[
        str | None,
        typer.Option(
            help="TFRecord, ArrayRecord, WebDataset or Parquet: bytes a shard holds about, e.g. 256MB or 1GiB; "
            "shards even in bytes. Not with --shards."
        ),
    ] = None,
    encoding: Annotated[
        Encoding,
        typer.Option(
            case_sensitive=False,
            help="TFRecord or WebDataset image encoding: auto keeps a JPEG/PNG file's own bytes (photo trees) "
            "and writes PNG otherwise; png is lossless; raw is uint8 pixels (tfrecord).",
        ),
    ] = Encoding.auto,
    tfds_layout: Annotated[
        bool,
        typer.Option(
            "--tfds-layout",
            help="TFRecord: write into OUT/<name>/<version>/ so that tfds.load(name, data_dir=OUT) finds it.",
        ),
    ] = False,
    layout: Annotated[
        TreeLayout,
        typer.Option(
            case_sensitive=False, help="Image trees: <split>/<class>/ or, for CIFAR-100, <split>/<coarse>/<fine>/."
        ),
    ] = TreeLayout("class"),  # noqa: B008  (Typer reads an option's default from here)
    skip_bad: Annotated[
        bool,
        typer.Option(
            "--skip-bad",
            help="Leave out image files that cannot be read (listed in cifarkit_info.json) instead of refusing the "
            "export.",
        ),
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an earlier export in --out.")] = False,
    runner: Annotated[
        ExportRunner,
        typer.Option(
            case_sensitive=False,
            help="local: this machine's worker processes; beam: an Apache Beam pipeline (pip install "
            "'cifarkit[beam]'), the same bytes.",
        ),
    ] = ExportRunner("local"),  # noqa: B008  (Typer reads an option's default from here)
    beam_options: Annotated[
        str | None,
        typer.Option(
            help="--runner beam: Beam's pipeline flags in one string, e.g. \"--runner=DataflowRunner --project=P "
            '--region=R --temp_location=gs://B/tmp". Default: the DirectRunner, --workers processes.',
        ),
    ] = None,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
    json_progress: JsonProgressOption = False,
) -> None:
    """Write a dataset as a labelled JPEG/PNG folder tree, sharded TFRecords or WebDataset tar shards."""
    from ..formats.beam_export import make_runner
    from ..formats.export import ExportOptions, export_dataset
    from ..formats.parallel import default_workers
    from ..runtime.progress import progress_mode
    from ..sources.spill import arrays_on_disk

    options = ExportOptions(
        format=format.value,
        splits=split_list(split),
        quality=quality,
        shards=shards,
        shard_size=shard_size,
        workers=default_workers() if workers is None else workers,
        encoding=encoding.value,
        overwrite=overwrite,
        quiet=quiet,
        tfds_layout=tfds_layout,
        skip_bad=skip_bad,
        layout=layout.value,
        progress=progress_mode(quiet, json_progress),
        runner=make_runner(runner.value, beam_options),
    )
    with arrays_on_disk():  # the pixels in mapped temporary files: the workers read them, this process holds none
        dataset, sample = open_records(source, no_verify, quiet)
    if out is None:
        out = Path(f"{dataset.name}{'-sample' if sample else ''}-{options.format}")
    start = time.perf_counter()
    summary = export_dataset(dataset, out, options)
    seconds = time.perf_counter() - start
    total = sum(summary.counts.values())
    per_split = ", ".join(f"{s} {n:,}" for s, n in summary.counts.items())
    if summary.complete:
        typer.echo(f"{summary.out} is already complete: {total:,} images ({per_split}); nothing to do")
        return
    if summary.skipped:
        say(f"resumed: {summary.skipped:,} images were already written by an earlier run", quiet)
    if summary.bad:
        say(
            f"left out {len(summary.bad):,} image files that cannot be read (listed in "
            f"{summary.out / 'cifarkit_info.json'}), the first: {summary.bad[0].error}",
            quiet,
        )
    written = total - summary.skipped  # the rate of this run's own work, not of what a resumed run found
    typer.echo(
        f"Exported {total:,} images ({per_split}) as {options.format} to {summary.out} "
        f"in {seconds:.1f} s ({written / max(seconds, 1e-9):,.0f} images/s)"
    )
    for line in options.adapter.usage(summary.out):  # how a client opens it (WebDataset's brace patterns)
        typer.echo(line)


@app.command()
def info(
    source: Annotated[
        Path | None, typer.Argument(help="Dataset to describe (or --data). Default: as for export.")
    ] = None,
    source_option: DataOption = None,
    no_verify: NoVerifyOption = False,
) -> None:
    """Show the format found, its verification status and counts per split and class."""
    if source is not None and source_option is not None and source != source_option:
        raise UsageError(f"two datasets named ({source} and --data {source_option}); describe one at a time")
    dataset, _ = open_records(source if source is not None else source_option, no_verify, quiet=True)
    lines = [
        f"source:       {dataset.location}",
        f"dataset:      {dataset.name}",
        f"format:       {dataset.format}",
        f"verification: {dataset.verification}",
    ]
    lines += [f"note:         {note}" for note in dataset.notes]
    splits = dataset.splits
    lines.append(
        f"classes:      {len(dataset.class_names)}"
        + (f" fine, {len(dataset.coarse_class_names)} coarse" if dataset.coarse_class_names else "")
    )
    width = max(12, *(len(n) for n in dataset.class_names))
    lines.append("")
    lines.append(f"{'class':<{width}}" + "".join(f"{s:>10}" for s in splits))
    counts = {s: dataset.class_counts(s) for s in splits}
    for name in dataset.class_names:
        lines.append(f"{name:<{width}}" + "".join(f"{counts[s][name]:>10,}" for s in splits))
    lines.append(f"{'total':<{width}}" + "".join(f"{dataset.count(s):>10,}" for s in splits))
    typer.echo("\n".join(lines))


@app.command()
def download(
    name: Annotated[str, typer.Argument(help="cifar10, cifar10-binary, cifar100 or cifar100-binary.")] = "cifar10",
    dest: Annotated[Path, typer.Option("--dest", "--out", "-o", help="Folder to download into.")] = Path("data"),
    url: Annotated[str | None, typer.Option(help="Mirror: full URL of the file, or a base URL ending in '/'.")] = None,
    md5: Annotated[str | None, typer.Option(help="Expected md5 (default: the official one).")] = None,
    retries: Annotated[int, typer.Option(help="Retries after a failed or cut-off transfer.")] = 3,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download an official archive: resumable, retried, checksum-verified, atomic."""
    from ..sources.download import download as fetch

    path = fetch(name, dest, url=url, md5=md5, retries=retries, timeout=timeout, verify=not no_verify, quiet=quiet)
    typer.echo(str(path))


@app.command()
def stats(
    source: DataOption = None,
    split: Annotated[str, typer.Option(help="Split to measure.")] = "train",
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the statistics.")] = Path("stats.json"),
    image_size: Annotated[int | None, typer.Option(min=1, help="Square size for image trees of mixed sizes.")] = None,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
    json_progress: JsonProgressOption = False,
) -> None:
    """Per-channel mean and std, RGB covariance and its eigen decomposition (float64, [0, 1] scale)."""
    from ..readers.stats import compute_source_stats, save_stats
    from ..runtime.progress import progress_mode

    data = open_data(source, no_verify, quiet)
    if data.image_shape is None and image_size is None:
        image_size = 256
        say("images differ in size: measuring them brought to 256x256 (--image-size to change)", quiet)
    result = compute_source_stats(data, split, image_size=image_size, progress=progress_mode(quiet, json_progress))
    save_stats(result, out)
    fmt = lambda values: "  ".join(f"{v:.4f}" for v in values)  # noqa: E731
    typer.echo(
        "\n".join(
            [
                f"{data.name} {split}: {result.images:,} images, pixel scale {result.scale}",
                f"mean        {fmt(result.mean)}   (x255: {fmt(m * 255 for m in result.mean)})",
                f"std         {fmt(result.std)}   (x255: {fmt(s * 255 for s in result.std)})",
                f"eigenvalues {fmt(result.eigenvalues)}",
                f"wrote {out}",
            ]
        )
    )


@app.command("augment-preview")
def augment_preview(
    source: DataOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("preview.png"),
    recipe: Annotated[
        RecipeName | None,
        typer.Option(case_sensitive=False, help="Augmentation recipe. Default: paper, or mnist for grey images."),
    ] = None,
    crop: Annotated[int | None, typer.Option(help="Crop size for the paper recipe (227 or 224).")] = None,
    images: Annotated[int, typer.Option(min=1, help="Source images (rows).")] = 8,
    views: Annotated[int, typer.Option(min=1, help="Augmented views per image.")] = 6,
    seed: Annotated[int, typer.Option(help="Seed of the random views.")] = 0,
    stages: Annotated[bool, typer.Option(help="One row per step: resize, crop, flip, colour.")] = False,
    split: Annotated[
        str | None,
        typer.Option(help="Split to take images from. Default: train, or the split the data has (a test set alone)."),
    ] = None,
    cell: Annotated[int, typer.Option(min=16, help="Size of each picture in the grid, in pixels.")] = 96,
    no_verify: NoVerifyOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a PNG grid: each source image followed by the views the network will see."""
    from ..augment.preview import (
        decoded_views,
        pick_images,
        preview_recipe,
        preview_split,
        preview_stats,
        write_preview,
    )
    from ..data import to_numpy

    data = open_data(source, no_verify, quiet)
    chosen = preview_recipe(data, recipe.value if recipe is not None else None, crop)
    shown = preview_split(data.counts, split)
    if split is None and shown != "train":
        say(f"{data.location} has no train split: showing its {shown} split (--split to choose)", quiet)
    size = None if data.image_shape else chosen.source_size
    # A few hundred images are enough to pick a varied set from without reading a whole split.
    pixels, labels = to_numpy(data.dataset(shown, image_size=size), limit=max(images * 50, 500))
    picked = pick_images(pixels, labels, images)
    statistics, note = preview_stats(data, shown, size)
    if note is not None:
        say(note, quiet)
    captions = [data.class_names[labels[i]] for i in picked]
    decoded = decoded_views(data, shown, picked, chosen, seed, views)  # inception's crops as training takes them
    width, height = write_preview(
        out,
        pixels[picked],
        captions,
        chosen,
        statistics,
        views=views,
        seed=seed,
        stages=stages,
        cell=cell,
        decoded=decoded,
    )
    typer.echo(
        f"Wrote {out} ({width}x{height}): {len(picked)} images x {views} views from the {shown} split, recipe "
        f"{chosen.name}: {chosen.describe()}"
    )
