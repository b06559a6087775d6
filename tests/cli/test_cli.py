"""The command line as a user meets it: CliRunner for the commands, a real subprocess killed with
SIGKILL for the resume guarantee."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import synth
from typer.testing import CliRunner

from cifarkit.cli import app
from cifarkit.sources.discover import SAMPLE_PATH

runner = CliRunner()


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_version_prints_the_installed_version_without_loading_tensorflow():
    from importlib.metadata import version

    probe = (
        "import sys; from cifarkit.cli import main; sys.argv = ['cifarkit', '--version']\n"
        "try:\n    main()\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
        "print('tensorflow' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"cifarkit {version('cifarkit')}", "False"]


def test_bare_command_shows_the_help_laid_out_as_help():
    result = runner.invoke(app, [])
    assert result.exit_code == 2  # as click does for a group called without a command
    lines = result.stderr.splitlines()
    assert lines[0].startswith("Usage: ") and "Commands:" in lines
    assert sum(line.split()[0] in ("export", "train", "predict") for line in lines if line.strip()) == 3
    assert "error" not in result.stderr


def test_export_writes_the_tree_and_says_so(cifar10_tar, tmp_path):
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["export", "--source", str(cifar10_tar.path), "--format", "png", "--out", str(out), "--workers", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "Exported 40 images (train 30, test 10) as png" in result.stdout
    assert len(list(out.rglob("*.png"))) == 40


def test_export_with_no_source_uses_the_bundled_sample_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    result = runner.invoke(app, ["export", "--format", "jpg", "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert "bundled" in result.stderr and "sample" in result.stderr
    out = tmp_path / "work" / "cifar10-sample-jpg"
    for split, per_class in (("train", 20), ("test", 10)):
        counts = {d.name: len(list(d.glob("*.jpg"))) for d in (out / split).iterdir()}
        assert counts == {name: per_class for name in counts} and len(counts) == 10


@pytest.mark.parametrize("how", [[], ["--source"], ["-s"], ["--data"]])
def test_info_reports_format_verification_and_counts(how):
    result = runner.invoke(app, ["info", *how, str(SAMPLE_PATH)])
    assert result.exit_code == 0, result.output
    assert "CIFAR-10, python version" in result.stdout
    assert "verified" in result.stdout
    lines = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.strip()}
    assert lines["airplane"] == ["20", "10"] and lines["total"] == ["200", "100"]


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["export", "--source", "/no/such/place"], 1, "no such file or folder"),
        (["export", "--format", "bmp"], 2, "'bmp' is not one of 'jpg', 'png', 'tfrecord'"),
        (["export", "--quality", "0"], 2, "quality=0"),
        (["export", "--bogus"], 2, "No such option"),
        (["download", "cifar11"], 2, "cifar10"),
        (["info", "a.tar.gz", "--source", "b.tar.gz"], 2, "describe one at a time"),
        (["stats", "--split", "nosuch", "-q"], 2, "no split 'nosuch'"),
    ],
)
def test_errors_are_one_line_with_an_exit_code(args, code, message):
    result = runner.invoke(app, args)
    assert result.exit_code == code
    lines = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert result.stderr.endswith(lines[0] + "\n"), result.stderr  # nothing of the message on further lines
    assert "Traceback" not in result.output


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    archive = synth.write_tar_gz(
        tmp_path / "evil.tar.gz",
        {
            "cifar-10-batches-py/data_batch_1": synth.malicious_pickle(marker),
        },
    )
    result = runner.invoke(app, ["export", "--source", str(archive), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "refused to unpickle global" in result.stderr and "system" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_truncated_archive_is_a_clear_error(cifar10_tar, tmp_path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(cifar10_tar.path.read_bytes()[: cifar10_tar.path.stat().st_size // 2])
    result = runner.invoke(app, ["info", str(broken)])
    assert result.exit_code == 1
    assert "corrupt or truncated" in result.stderr


def _tfrecord_export(cifar10_tar, out: Path) -> Path:
    result = runner.invoke(
        app,
        [
            "export",
            "--source",
            str(cifar10_tar.path),
            "--format",
            "tfrecord",
            "--out",
            str(out),
            "--encoding",
            "raw",
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_a_corrupt_tfrecord_is_one_line_not_a_tensorflow_traceback(cifar10_tar, tmp_path):
    export = _tfrecord_export(cifar10_tar, tmp_path / "records")
    shard = next(export.glob("*train.tfrecord-*"))
    corrupt = bytearray(shard.read_bytes())
    length = int.from_bytes(corrupt[:8], "little")
    corrupt[12 + length // 2] ^= 0xFF  # inside the first record's pixels: its CRC no longer matches
    shard.write_bytes(bytes(corrupt))
    result = runner.invoke(app, ["stats", "--source", str(export), "--out", str(tmp_path / "stats.json"), "--quiet"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("cifarkit: error:")]
    assert len(errors) == 1 and "the data is corrupt" in errors[0] and "corrupted record" in errors[0], result.stderr
    assert "{{" not in errors[0] and "Traceback" not in result.output
    assert not (tmp_path / "stats.json").exists()


def test_a_tfrecord_export_shorter_than_its_info_says_is_refused(cifar10_tar, tmp_path):
    import json

    export = _tfrecord_export(cifar10_tar, tmp_path / "records")
    info = json.loads((export / "cifarkit_info.json").read_text())
    info["splits"]["train"]["count"] = 31  # the shard holds 30
    (export / "cifarkit_info.json").write_text(json.dumps(info))
    result = runner.invoke(app, ["stats", "--source", str(export), "--out", str(tmp_path / "stats.json"), "--quiet"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"cifarkit: error: {export}: the train split's shards hold 30 records; the dataset's metadata lists 31"
    )  # refused before any record is read
    assert "Traceback" not in result.output


def test_killed_export_resumes_and_ends_byte_identical(tmp_path):
    data = synth.make_cifar10_python(tmp_path / "src", per_batch=1600, test=1000)
    command = [
        sys.executable,
        "-m",
        "cifarkit",
        "export",
        "--source",
        str(data.path),
        "--format",
        "png",
        "--workers",
        "2",
        "--quiet",
    ]
    reference, out = tmp_path / "reference", tmp_path / "out"
    subprocess.run(command + ["--out", str(reference)], check=True, capture_output=True)

    job = subprocess.Popen(
        command + ["--out", str(out)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )

    def images_written() -> int:  # the split is written in its staging folder, .partial-train
        return len(list(out.rglob("*.png"))) if out.exists() else 0

    deadline = time.monotonic() + 60
    while images_written() < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.killpg(job.pid, signal.SIGKILL)  # the whole job, workers included, as an OOM kill would
    job.wait()
    written = len(list(out.rglob("*.png")))
    assert 0 < written < 8000, "the kill should land mid-export"
    assert not (out / "manifest.csv").exists() and not (out / "train").exists()

    rerun = subprocess.run(command + ["--out", str(out)], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert _tree(out) == _tree(reference)


def test_a_checksum_refusal_names_the_flag_on_the_command_line_and_the_keyword_from_python(tmp_path):
    truth = synth.make_cifar10_python(tmp_path, archive_name="cifar-10-python.tar.gz")
    result = runner.invoke(app, ["info", "--source", str(truth.path)])
    assert result.exit_code == 1 and "Pass --no-verify to read it anyway" in result.stderr
    from cifarkit.errors import ChecksumError
    from cifarkit.sources import open_source

    with pytest.raises(ChecksumError, match="Pass verify=False to read it anyway"):
        open_source(truth.path)  # the same process, after the CLI ran: the wording is per call
