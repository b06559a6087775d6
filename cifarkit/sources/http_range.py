"""One attempt at an HTTP download into a partial file, resuming from the bytes it already holds.

:func:`fetch` asks for ``Range: bytes=N-`` when the partial file is not empty, checks that a 206
answer continues exactly where the file ends, starts over on a 200, and tells failures worth
another attempt (:class:`Retryable`: the connection, a timeout, a 5xx, a short body) from those
that asking again will not change (:class:`~cifarkit.errors.DownloadError`).
"""

from __future__ import annotations

import http.client
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from .._version import __version__
from ..errors import DownloadError
from ..writers.atomic import output_error

_CHUNK = 1 << 16
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)


class Retryable(Exception):
    """A failure worth another attempt: the connection, a timeout, a 5xx, a short body."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def fetch(source: str, part: Path, timeout: float, bar: tqdm, say: Callable[[str], None]) -> None:
    """One attempt: bring ``part`` to the complete file, resuming from what it already holds."""
    offset = partial_size(part)
    response = _request(source, part, offset, timeout)
    if response is None:
        return  # an earlier run received every byte but stopped before verifying
    with response:
        length = _content_length(response)
        if response.status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != offset:
                _truncate(part)
                raise Retryable("server sent a partial response that does not continue the download")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        elif response.status == 200:
            if offset:
                say(f"{part.name}: server does not resume downloads; starting over")
            offset, total, mode = 0, length, "wb"
        else:
            raise DownloadError(f"cannot download {source}: unexpected HTTP status {response.status} {response.reason}")
        _restart_bar(bar, total, offset)
        try:
            with open(part, mode) as out:
                received = _copy(response, out, bar)
        except OSError as exc:
            raise output_error(part, exc) from exc
    if length is not None and received < length:
        raise Retryable(f"connection closed after {offset + received} of {offset + length} bytes")


def _request(source: str, part: Path, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """The server's answer to a request for the bytes from ``offset`` on; None when it says there
    are none left (the partial file is already whole)."""
    headers = {
        "User-Agent": f"cifarkit/{__version__}",
        # Byte ranges and Content-Length must refer to the file itself, not a re-encoding of it.
        "Accept-Encoding": "identity",
    }
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(source, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        code, reason = exc.code, exc.reason
        content_range = exc.headers.get("Content-Range") if exc.headers else None
        if exc.fp is not None:
            exc.fp.close()  # the error body is not needed; free the connection
        if code == 416 and offset:
            match = _UNSATISFIED_RANGE_RE.match(content_range or "")
            if match and int(match.group(1)) == offset:
                return None
            # The partial is longer than the file, or belongs to another one: start afresh.
            _truncate(part)
            raise Retryable(f"server refused to resume at byte {offset}") from None
        if code >= 500:
            raise Retryable(f"HTTP {code} {reason}") from None
        # A 4xx (or a redirect loop) will not change by asking again.
        raise DownloadError(f"cannot download {source}: HTTP {code} {reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            # A certificate problem is not transient; retrying only delays the message.
            raise DownloadError(f"cannot download {source}: {exc.reason.verify_message or exc.reason}") from None
        raise Retryable(_describe(exc)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise Retryable(_describe(exc)) from None


def _copy(response: http.client.HTTPResponse, out: BinaryIO, bar: tqdm) -> int:
    """Stream the body into ``out``; network errors are retryable, write errors are not."""
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            # Keep what arrived: the next attempt resumes after it.
            out.flush()
            raise Retryable(_describe(exc)) from None
        if not chunk:
            return received
        out.write(chunk)
        received += len(chunk)
        bar.update(len(chunk))


def _restart_bar(bar: tqdm, total: int | None, offset: int) -> None:
    """Point the bar at this attempt: the bytes already held count as done, not as speed."""
    if bar.disable:
        return
    bar.initial = offset  # tqdm computes the rate from n - initial
    bar.reset(total=total)
    bar.n = bar.last_print_n = offset
    bar.refresh()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None
    return length if length is not None and length >= 0 else None


def _describe(exc: BaseException) -> str:
    """A short reason for a network failure, without the exception's class soup."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        if not isinstance(exc.reason, BaseException):
            return str(exc.reason)
        exc = exc.reason  # e.g. ConnectionRefusedError, socket.gaierror, TimeoutError
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return f"connection closed early ({len(exc.partial)} bytes read, {exc.expected} more expected)"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "server closed the connection without a response"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def partial_size(path: Path) -> int:
    try:
        return path.stat().st_size if path.is_file() else 0
    except OSError:
        return 0


def _truncate(path: Path) -> None:
    try:
        with open(path, "wb"):
            pass
    except OSError as exc:
        raise output_error(path, exc) from exc
