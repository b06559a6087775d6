"""Progress that a terminal, a log file and a program can each read.

On a terminal: a tqdm bar, redrawn in place. Anywhere else (``nohup``, ``| tee``, a scheduler, CI,
a notebook) a bar is off, so plain lines take its place, at a pace that keeps a log short
(:class:`Pacer`). With ``--json-progress``: one JSON object a line, every one with the keys
:data:`RECORD_KEYS`, for programs. All of it goes to stderr, so stdout keeps each command's
result line; with ``--quiet`` too, stderr holds the JSON lines alone (and an error, if one ends
the command).
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Mapping

MODES = ("bar", "lines", "json", "off")
# Every JSON record has exactly these keys (None where one does not apply), in this order.
RECORD_KEYS = ("event", "task", "split", "epoch", "epochs", "step", "total", "unit", "metrics", "elapsed_s", "eta_s")
EVENTS = ("progress", "epoch", "done")
UNITS = {"img": "images", "step": "steps"}

LINE_FRACTION = 0.1  # a line at each tenth of a known total ...
LINE_SECONDS = 30.0  # ... or when this long has passed since the last line,
MAX_LINE_SECONDS = 600.0  # a wait that grows to a tenth of the time so far, up to this

Clock = Callable[[], float]


def progress_mode(quiet: bool = False, json_progress: bool = False, stream=None) -> str:
    """Which of :data:`MODES` a command uses: JSON when asked (``--quiet`` then silences only
    the notes), nothing when quiet, a bar on a terminal, lines anywhere else."""
    if json_progress:
        return "json"
    if quiet:
        return "off"
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


class Pacer:
    """When the next line is due: at each ``fraction`` of ``total`` (None: by time only), or
    when the wait has passed since the last line. The wait is a tenth of the time so far, from
    :data:`LINE_SECONDS` to :data:`MAX_LINE_SECONDS`, so a run of any length writes a bounded
    number of lines (about a hundred in a day)."""

    def __init__(self, total: int | None = None, clock: Clock = time.monotonic, fraction: float = LINE_FRACTION):
        self.clock, self.total = clock, total
        self.start = self.last = clock()
        self.mark_size = total * fraction if total and fraction else math.inf
        self.next_mark = self.mark_size

    def due(self, done: int) -> bool:
        if self.total is not None and done >= self.total:
            return False  # the end has its own line
        now = self.clock()
        wait = min(max(LINE_SECONDS, (now - self.start) / 10), MAX_LINE_SECONDS)
        if done < self.next_mark and now - self.last < wait:
            return False
        self.mark(now)
        while self.next_mark <= done:
            self.next_mark += self.mark_size
        return True

    def mark(self, now: float | None = None) -> None:
        """A line was written: the wait starts again."""
        self.last = self.clock() if now is None else now


def _number(value) -> float | None:
    value = float(value)
    return float(f"{value:.6g}") if math.isfinite(value) else None  # JSON has no NaN


def record(
    event: str,
    task: str,
    *,
    step: int,
    total: int | None,
    unit: str,
    elapsed_s: float,
    eta_s: float | None = None,
    split: str | None = None,
    epoch: int | None = None,
    epochs: int | None = None,
    metrics: Mapping[str, float] | None = None,
) -> dict:
    """One progress record, with every key of :data:`RECORD_KEYS`."""
    return {
        "event": event,
        "task": task,
        "split": split,
        "epoch": epoch,
        "epochs": epochs,
        "step": step,
        "total": total,
        "unit": unit,
        "metrics": {name: _number(value) for name, value in (metrics or {}).items()},
        "elapsed_s": round(elapsed_s, 3),
        "eta_s": None if eta_s is None or not math.isfinite(eta_s) else round(eta_s, 1),
    }


def emit(mode: str, entry: dict, text: str) -> None:
    """Write ``entry`` as JSON (mode json) or ``text`` (mode lines) as one line on stderr,
    flushed at once so that a log file shows it while the run goes on."""
    if mode == "json":
        line = json.dumps(entry, separators=(", ", ": "))
    elif mode == "lines":
        line = text
    else:
        return
    stream = sys.stderr  # looked up at each line: a test or a notebook may have replaced it
    stream.write(line + "\n")
    stream.flush()


def duration(seconds: float | None) -> str:
    """``42.0 s``, ``3 min 05 s``, ``2 h 07 min``; ``?`` when not known."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Meter:
    """The progress of a count (images exported or measured) in any mode: a tqdm bar, or lines
    paced by :class:`Pacer` and a summary at the end; ``update(n)`` as tqdm's. An exception
    closes it without a summary (the error line says what happened)."""

    def __init__(
        self,
        total: int,
        task: str,
        split: str,
        mode: str,
        *,
        unit: str = "img",
        desc: str | None = None,
        leave: bool = True,
        clock: Clock = time.monotonic,
    ):
        self.total, self.task, self.split, self.mode, self.unit = total, task, split, mode, unit
        self.done, self.clock = 0, clock
        self.pacer = Pacer(total, clock)
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc or f"{task} {split}", unit=unit, leave=leave, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode in ("lines", "json") and self.pacer.due(self.done):
            self._write("progress")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        else:
            self._write("done")

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is None:
            self.close()
        elif self.bar is not None:
            self.bar.close()

    def _write(self, event: str) -> None:
        elapsed = self.clock() - self.pacer.start
        rate = self.done / elapsed if elapsed > 0 else None
        left = max(self.total - self.done, 0)
        eta = left / rate if rate else None
        entry = record(
            event,
            self.task,
            split=self.split,
            step=self.done,
            total=self.total,
            unit=self.unit,
            elapsed_s=elapsed,
            eta_s=0.0 if event == "done" else eta,
            metrics={} if rate is None else {f"{UNITS.get(self.unit, self.unit)}_per_s": rate},
        )
        units = UNITS.get(self.unit, self.unit)
        speed = "" if rate is None else f" ({rate:,.0f} {units}/s)"
        if event == "done":
            text = f"{self.task} {self.split}: {self.done:,} {units} in {duration(elapsed)}{speed}"
        else:
            percent = 100 * self.done / self.total if self.total else 0.0
            text = (
                f"{self.task} {self.split}: {self.done:,}/{self.total:,} {units} ({percent:.0f}%){speed}, "
                f"{duration(elapsed)} so far, ETA {duration(eta)}"
            )
        emit(self.mode, entry, text)
