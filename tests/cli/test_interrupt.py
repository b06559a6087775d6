"""Ctrl-C says what was kept and gives the command that carries on."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from cifarkit.cli import app

runner = CliRunner()


def test_ctrl_c_in_export_names_what_is_kept_and_the_command_that_resumes(monkeypatch, tmp_path: Path):
    import cifarkit.formats.export

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cifarkit.formats.export, "export_dataset", interrupted)
    out = tmp_path / "my out"
    result = runner.invoke(app, ["export", "--format", "png", "--out", str(out), "--quiet"])
    assert result.exit_code == 130
    line = result.stderr.strip()
    assert "\n" not in line
    assert line.startswith("cifarkit: error: interrupted; the images and shards already written are kept")
    assert line.endswith(f"cifarkit export --format png --out '{out}' --quiet")


def test_ctrl_c_elsewhere_is_one_plain_line(monkeypatch):
    import cifarkit.sources

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cifarkit.sources, "open_source", interrupted)
    result = runner.invoke(app, ["info"])
    assert result.exit_code == 130
    assert result.stderr == "cifarkit: error: interrupted\n"
