"""Downloading the official CIFAR archives: resumable, retried, verified, atomic.

An archive is fetched with :mod:`urllib` into ``<dest_dir>/<file>.part`` and renamed to
``<dest_dir>/<file>`` only once its md5 matches, so a file under the final name is always a
complete, verified archive. The partial name is fixed (not per process) on purpose: a run that
is interrupted, killed or out of retries leaves the bytes it already has in ``<file>.part``,
and the next run asks the server only for the rest (an HTTP ``Range: bytes=N-`` request).
Servers that ignore ``Range`` answer 200 with the whole file, which simply starts over.

Two runs downloading the same archive into the same folder at the same time would share that
partial file; the checksum catches the damage, but there is no locking to prevent it.

Network trouble is reported as :class:`~cifarkit.errors.DownloadError`, a wrong checksum as
:class:`~cifarkit.errors.ChecksumError`, and a destination that cannot be written as
:class:`~cifarkit.errors.OutputError`; all are one-line messages, never a traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO, Callable
from urllib.parse import urlsplit

from tqdm import tqdm

from .. import __version__
from ..constants import ARCHIVE_MD5, OFFICIAL_BASE_URL
from ..errors import ChecksumError, DownloadError, OutputError, UsageError
from ..writers.atomic import output_error

__all__ = ["ARCHIVES", "PART_SUFFIX", "archive_file_name", "download", "part_path", "resolve_url"]

# Short names accepted on the command line -> the official file names.
ARCHIVES: dict[str, str] = {
    "cifar10": "cifar-10-python.tar.gz",
    "cifar10-binary": "cifar-10-binary.tar.gz",
    "cifar100": "cifar-100-python.tar.gz",
    "cifar100-binary": "cifar-100-binary.tar.gz",
}

# Appended to the file name while it downloads. Unlike the hidden per-process temporaries of
# writers.atomic, this name is fixed so that a later run finds it and resumes.
PART_SUFFIX = ".part"

_CHUNK = 1 << 16
_MAX_DELAY = 60.0  # cap on one backoff pause, whatever `backoff` and the attempt number
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_UNSATISFIED_RANGE_RE = re.compile(r"^\s*bytes\s+\*/(\d+)\s*$", re.IGNORECASE)

# Indirection so tests can observe the backoff pauses without patching time.sleep for everyone.
_sleep = time.sleep


class _Retryable(Exception):
    """A failure worth another attempt: the connection, a timeout, a 5xx, a short body."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def archive_file_name(name: str) -> str:
    """The official file name for a short name (``cifar10``) or for the file name itself."""
    if name in ARCHIVES:
        return ARCHIVES[name]
    if name in ARCHIVES.values():
        return name
    choices = ", ".join(ARCHIVES)
    raise UsageError(f"unknown archive '{name}'; choose one of: {choices} (or their file names)")


def resolve_url(file_name: str, url: str | None = None) -> str:
    """Where ``file_name`` is fetched from.

    ``url`` is either the full URL of the file, or a base URL ending in ``/`` (a mirror of the
    official folder) to which the file name is appended. Without it, the official site is used.
    """
    if url is None:
        return OFFICIAL_BASE_URL + file_name
    url = url.strip()
    parts = urlsplit(url)
    # Resuming needs HTTP ranges, so only http(s); this also keeps file:// and ftp:// out.
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise UsageError(f"invalid download URL '{url}': expected an http:// or https:// address")
    return url + file_name if url.endswith("/") else url


def part_path(final: Path) -> Path:
    """The fixed name an archive is downloaded under until it is verified."""
    return final.with_name(final.name + PART_SUFFIX)


def download(
    name: str,
    dest_dir: Path,
    *,
    url: str | None = None,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 30.0,
    verify: bool = True,
    quiet: bool = False,
    backoff: float = 1.0,
) -> Path:
    """Download one CIFAR archive into ``dest_dir`` and return the path of the verified file.

    ``name`` is a key of :data:`ARCHIVES` or an official file name. ``md5`` overrides the
    official checksum (for a mirror that repacked the archive); ``verify=False`` skips the
    check. After a failed attempt the download is retried up to ``retries`` more times,
    pausing ``backoff`` seconds, then twice that, and so on; each retry resumes from the bytes
    already received. ``timeout`` bounds the connection and every read, in seconds.

    If ``dest_dir/<file>`` already exists and matches the checksum, it is returned without any
    network access.
    """
    file_name = archive_file_name(name)
    if retries < 0:
        raise UsageError(f"retries must be 0 or more, not {retries}")
    if not timeout > 0:
        raise UsageError(f"timeout must be a positive number of seconds, not {timeout}")
    if backoff < 0:
        raise UsageError(f"backoff must be 0 or more seconds, not {backoff}")
    source = resolve_url(file_name, url)
    expected = _expected_md5(file_name, md5)

    def say(message: str) -> None:
        if not quiet:
            # tqdm.write keeps a progress bar that is on screen intact.
            tqdm.write(message, file=sys.stderr)

    dest_dir = Path(dest_dir)
    created = _make_folders(dest_dir)
    try:
        return _download_into(dest_dir / file_name, source, expected, retries, timeout, verify, backoff, quiet, say)
    except BaseException:
        # A download that failed before a single byte arrived leaves no trace: the folders it
        # made are removed again when they are still empty (a kept .part file keeps them).
        _remove_empty(created)
        raise


def _download_into(
    final: Path,
    source: str,
    expected: str,
    retries: int,
    timeout: float,
    verify: bool,
    backoff: float,
    quiet: bool,
    say: Callable[[str], None],
) -> Path:
    """The body of :func:`download` once ``final``'s folder exists."""
    file_name = final.name
    if final.is_file():
        if not verify:
            say(f"{final}: already present (not verified)")
            return final
        actual = _file_md5(final)
        if actual == expected:
            say(f"{final}: already present, verified")
            return final
        # The old file stays in place until a verified replacement is renamed over it.
        say(f"{final}: md5 is {actual}, expected {expected}; downloading it again")

    part = part_path(final)
    attempts = retries + 1
    last_reason = ""
    done = False
    bar = tqdm(
        total=None,
        desc=file_name,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        # None lets tqdm hide the bar when stderr is not a terminal (logs, pipes, CI).
        disable=True if quiet else None,
        leave=True,
    )
    try:
        for attempt in range(1, attempts + 1):
            try:
                _fetch(source, part, timeout, bar, say)
                done = True
                break
            except _Retryable as exc:
                last_reason = exc.reason
                if attempt == attempts:
                    break
                delay = min(backoff * 2 ** (attempt - 1), _MAX_DELAY)
                say(f"{file_name}: attempt {attempt} of {attempts} failed ({exc.reason}); retrying in {delay:g} s")
                if delay > 0:
                    _sleep(delay)
    finally:
        bar.close()

    if not done:
        kept = _size(part)
        hint = f"; {kept} bytes kept in {part}, run again to resume" if kept else ""
        plural = "s" if attempts != 1 else ""
        raise DownloadError(f"cannot download {source}: {last_reason} (gave up after {attempts} attempt{plural}{hint})")

    if verify:
        actual = _file_md5(part)
        if actual != expected:
            _discard(part)
            raise ChecksumError(
                f"{file_name} downloaded from {source} has md5 {actual}, expected {expected}; the download was deleted"
            )

    try:
        os.replace(part, final)
    except OSError as exc:
        raise output_error(final, exc) from exc
    say(f"{final}: downloaded" + (", verified" if verify else " (not verified)"))
    return final


def _make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and any missing parents; return the ones this call created, deepest first."""
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(folder, exc) from exc
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:  # deepest first, so a parent is empty once its child is gone
        try:
            folder.rmdir()
        except OSError:
            return  # not empty (or not ours to remove): keep it and everything above it


def _fetch(source: str, part: Path, timeout: float, bar: tqdm, say: Callable[[str], None]) -> None:
    """One attempt: bring ``part`` to the complete file, resuming from what it already holds."""
    offset = _size(part)
    headers = {
        "User-Agent": f"cifarkit/{__version__}",
        # Byte ranges and Content-Length must refer to the file itself, not a re-encoding of it.
        "Accept-Encoding": "identity",
    }
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(source, headers=headers)

    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        code, reason = exc.code, exc.reason
        content_range = exc.headers.get("Content-Range") if exc.headers else None
        if exc.fp is not None:
            exc.fp.close()  # the error body is not needed; free the connection
        if code == 416 and offset:
            match = _UNSATISFIED_RANGE_RE.match(content_range or "")
            if match and int(match.group(1)) == offset:
                return  # an earlier run received every byte but stopped before verifying
            # The partial is longer than the file, or belongs to another one: start afresh.
            _truncate(part)
            raise _Retryable(f"server refused to resume at byte {offset}")
        if code >= 500:
            raise _Retryable(f"HTTP {code} {reason}")
        # A 4xx (or a redirect loop) will not change by asking again.
        raise DownloadError(f"cannot download {source}: HTTP {code} {reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLCertVerificationError):
            # A certificate problem is not transient; retrying only delays the message.
            raise DownloadError(f"cannot download {source}: {exc.reason.verify_message or exc.reason}") from None
        raise _Retryable(_describe(exc)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Retryable(_describe(exc)) from None

    with response:
        status = response.status
        length = _content_length(response)
        if status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range") or "")
            if not match or int(match.group(1)) != offset:
                _truncate(part)
                raise _Retryable("server sent a partial response that does not continue the download")
            total = None if match.group(3) == "*" else int(match.group(3))
            mode = "ab"
        elif status == 200:
            if offset:
                say(f"{part.name}: server does not resume downloads; starting over")
            offset = 0
            total = length
            mode = "wb"
        else:
            raise DownloadError(f"cannot download {source}: unexpected HTTP status {status} {response.reason}")

        _restart_bar(bar, total, offset)
        received = 0
        try:
            with open(part, mode) as out:
                received = _copy(response, out, bar)
        except OSError as exc:
            raise output_error(part, exc) from exc

    if length is not None and received < length:
        raise _Retryable(f"connection closed after {offset + received} of {offset + length} bytes")


def _copy(response: http.client.HTTPResponse, out: BinaryIO, bar: tqdm) -> int:
    """Stream the body into ``out``; network errors are retryable, write errors are not."""
    received = 0
    while True:
        try:
            chunk = response.read(_CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            # Keep what arrived: the next attempt resumes after it.
            out.flush()
            raise _Retryable(_describe(exc)) from None
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


def _expected_md5(file_name: str, md5: str | None) -> str:
    if md5 is None:
        return ARCHIVE_MD5[file_name]
    value = md5.strip().lower()
    if not _MD5_RE.match(value):
        raise UsageError(f"invalid md5 '{md5}': expected 32 hexadecimal digits")
    return value


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


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _size(path: Path) -> int:
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


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise output_error(path, exc) from exc
