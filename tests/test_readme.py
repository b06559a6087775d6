"""The README's quick start runs as written on the bundled sample, in a folder of its own, and
prints what the README says it prints."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from typer.testing import CliRunner

from cifarkit.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"
runner = CliRunner()


def quick_start() -> tuple[list[list[str]], str]:
    """(the commands of the quick start's first block, the block of what they print)."""
    section = README.read_text(encoding="utf-8").split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"((?:^    .*\n)+)", section, re.M)
    commands = [shlex.split(line.strip())[1:] for line in blocks[0].splitlines()]
    return commands, blocks[1]


def test_the_quick_start_runs_on_the_bundled_sample_as_the_readme_shows(tmp_path, monkeypatch):
    commands, printed = quick_start()
    assert [c[0] for c in commands] == ["export", "train", "predict"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no dataset anywhere: the sample, as for a newcomer
    monkeypatch.delenv("CIFARKIT_DATA", raising=False)
    outputs = []
    for command in commands:
        result = runner.invoke(app, command)
        assert result.exit_code == 0, (command, result.output)
        outputs.append(result.output)
    assert "using the small real CIFAR-10 sample bundled with cifarkit" in outputs[0]
    exported = next(line for line in printed.splitlines() if "Exported" in line).strip()
    assert exported.split(" in ")[0] in outputs[0]  # the counts; the seconds differ
    assert re.search(r"^epoch 3/3: loss \d\.\d{4}, accuracy", outputs[1], re.M)
    assert "Trained lenet5 for 3 epochs" in outputs[1] and "(last.keras, the final model)" in outputs[1]
    assert (tmp_path / "runs" / "first" / "last.keras").is_file()
    table = outputs[2].splitlines()
    assert table[0].split() == ["file", "top", "5"]
    assert table[1].startswith("cifar10-png/test/cat/00006.png") and len(table[1].split()) == 11
