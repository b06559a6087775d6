"""The version follows the changelog: ``cifarkit/_version.py`` holds the newest release of
docs/CHANGELOG.md, ``cifarkit --version`` prints it, and the package metadata is read from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cifarkit._version import __version__
from cifarkit.cli import app

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "docs" / "CHANGELOG.md"
runner = CliRunner()
RELEASE = re.compile(r"^## \[(\d+)\.(\d+)\.(\d+)\] - (\d{4}-\d{2}-\d{2})$", re.MULTILINE)


def _releases() -> list[tuple[tuple[int, int, int], str]]:
    """(version, date) of every released heading, in the file's order (newest first)."""
    return [((int(a), int(b), int(c)), day) for a, b, c, day in RELEASE.findall(CHANGELOG.read_text())]


def _newest() -> str:
    return ".".join(map(str, _releases()[0][0]))


def test_the_version_is_the_newest_release_in_the_changelog():
    assert _releases(), f"{CHANGELOG} has no '## [X.Y.Z] - YYYY-MM-DD' heading"
    assert __version__ == _newest(), (
        f"cifarkit/_version.py says {__version__}, docs/CHANGELOG.md's newest release is {_newest()}"
    )


def test_the_changelog_lists_unreleased_first_then_releases_newest_first():
    text = CHANGELOG.read_text()
    headings = re.findall(r"^## .*$", text, re.MULTILINE)
    assert headings[0] == "## [Unreleased]"
    assert all(RELEASE.fullmatch(h) for h in headings[1:]), headings
    versions = [v for v, _ in _releases()]
    days = [d for _, d in _releases()]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    assert days == sorted(days, reverse=True)


def test_cifarkit_version_prints_the_changelogs_newest_release():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"cifarkit {_newest()}\n"


def test_the_package_metadata_reads_the_version_from_version_py():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "cifarkit._version.__version__"}
