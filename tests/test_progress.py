"""cifarkit.runtime.progress: which mode a command uses, how often a line is written, the JSON records."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import pytest

from cifarkit.runtime import progress
from cifarkit.runtime.progress import RECORD_KEYS, Meter, Pacer, duration, progress_mode, record


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def strict_json(line: str) -> dict:
    """A line as a program reads it: JSON without Python's NaN and Infinity extensions."""

    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize(
    ("quiet", "json_progress", "stream", "mode"),
    [
        (False, False, Terminal(), "bar"),
        (False, False, io.StringIO(), "lines"),  # a log file, a pipe, CI
        (True, False, Terminal(), "off"),
        (True, False, io.StringIO(), "off"),
        (False, True, Terminal(), "json"),
        (True, True, io.StringIO(), "json"),  # --quiet silences the notes, not the records asked for
    ],
)
def test_the_mode_follows_the_flags_and_the_terminal(quiet, json_progress, stream, mode):
    assert progress_mode(quiet, json_progress, stream) == mode


def test_a_count_writes_a_line_at_each_tenth_and_one_summary_however_many_updates(capsys):
    clock = Clock()
    with Meter(10_000, "export", "train", "lines", clock=clock) as meter:
        for _ in range(10_000):
            clock.now += 0.001  # ten seconds in all: no line is due by time
            meter.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:-1] == [
        f"export train: {n:,}/10,000 images ({n // 100}%) (1,000 images/s), {n / 1000:.1f} s so far, "
        f"ETA {(10_000 - n) / 1000:.1f} s"
        for n in range(1000, 10_000, 1000)
    ]
    assert lines[-1] == "export train: 10,000 images in 10.0 s (1,000 images/s)"


def test_a_slow_count_writes_a_line_every_30_s_then_less_often_so_a_day_stays_short(capsys):
    clock = Clock()
    meter = Meter(10**9, "export", "train", "lines", clock=clock)
    times = []
    for _ in range(24 * 3600):  # one image a second for a day: never a tenth of the total
        clock.now += 1
        meter.update(1)
        if capsys.readouterr().err:
            times.append(clock.now - 1000)
    assert times[:10] == [30 * n for n in range(1, 11)]  # every 30 s for the first five minutes
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert max(gaps) == progress.MAX_LINE_SECONDS  # a long run still shows it is alive every 10 minutes
    assert len(times) < 200


def test_json_records_hold_every_key_and_parse_as_strict_json(capsys):
    clock = Clock()
    with Meter(100, "export", "test", "json", clock=clock) as meter:
        for _ in range(100):
            clock.now += 0.5
            meter.update(1)
    records = [strict_json(line) for line in capsys.readouterr().err.splitlines()]
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert [r["event"] for r in records] == ["progress"] * 9 + ["done"]
    assert [r["step"] for r in records] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    first, last = records[0], records[-1]
    assert (first["task"], first["split"], first["total"], first["unit"]) == ("export", "test", 100, "img")
    assert (first["elapsed_s"], first["eta_s"], first["metrics"]) == (5.0, 45.0, {"images_per_s": 2.0})
    assert (last["elapsed_s"], last["eta_s"]) == (50.0, 0.0)


def test_a_metric_that_is_not_a_number_is_null_not_nan():
    entry = record("epoch", "train", step=4, total=4, unit="step", elapsed_s=1.0, metrics={"loss": math.nan})
    assert strict_json(json.dumps(entry))["metrics"] == {"loss": None}


def test_an_error_or_ctrl_c_ends_a_count_without_a_summary(capsys):
    clock = Clock()
    with pytest.raises(KeyboardInterrupt), Meter(10, "export", "train", "lines", clock=clock) as meter:
        clock.now += 3
        meter.update(3)
        raise KeyboardInterrupt
    # the line the 30% mark wrote, and no "10 images in ..." after it
    assert capsys.readouterr().err == "export train: 3/10 images (30%) (1 images/s), 3.0 s so far, ETA 7.0 s\n"


def test_off_writes_nothing_and_a_bar_stays_a_tqdm_bar(capsys):
    with Meter(10, "export", "train", "off") as meter:
        meter.update(10)
    assert capsys.readouterr().err == ""
    with Meter(10, "export", "train", "bar", desc="train") as meter:
        meter.update(10)
        assert meter.bar is not None and meter.bar.n == 10


def test_a_pacer_without_a_total_writes_by_time_alone():
    clock = Clock()
    pacer = Pacer(None, clock)
    clock.now += 29
    assert not pacer.due(10**6)
    clock.now += 1
    assert pacer.due(10**6)
    clock.now += 20
    pacer.mark()  # another line was written: the wait starts again
    clock.now += 29
    assert not pacer.due(10**6)


@pytest.mark.parametrize(
    ("seconds", "text"), [(None, "?"), (math.inf, "?"), (4.25, "4.2 s"), (185, "3 min 05 s"), (7620, "2 h 07 min")]
)
def test_durations_read_as_a_person_says_them(seconds, text):
    assert duration(seconds) == text


def test_the_guide_documents_every_key_and_event_of_the_records():
    readme = (Path(__file__).parents[1] / "docs" / "GUIDE.md").read_text(encoding="utf-8")
    section = readme.split("## Progress in logs and for programs", 1)[1].split("\n## ", 1)[0]
    documented = {key for row in re.findall(r"^\| (.+?) \|", section, re.M) for key in re.findall(r"`(\w+)`", row)}
    assert set(RECORD_KEYS) <= documented
    assert all(f"`{event}`" in section for event in progress.EVENTS)
