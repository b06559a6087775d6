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
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from ..constants import ARCHIVE_MD5, OFFICIAL_BASE_URL
from ..errors import ChecksumError, DownloadError, OutputError, UsageError
from ..writers.atomic import output_error
from .http_range import Retryable, fetch, partial_size

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

_MAX_DELAY = 60.0  # cap on one backoff pause, whatever `backoff` and the attempt number
_MD5_RE = re.compile(r"^[0-9a-f]{32}$")

# Indirection so tests can observe the backoff pauses without patching time.sleep for everyone.
_sleep = time.sleep


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
    done, last_reason = _attempts(source, part, attempts, timeout, backoff, quiet, say)
    if not done:
        kept = partial_size(part)
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


def _attempts(
    source: str, part: Path, attempts: int, timeout: float, backoff: float, quiet: bool, say: Callable[[str], None]
) -> tuple[bool, str]:
    """Fetch until one attempt completes or ``attempts`` have failed, pausing ``backoff``, twice
    that, ... between them. Returns whether it completed, and the last failure's reason."""
    last_reason = ""
    bar = tqdm(
        total=None,
        desc=part.name.removesuffix(PART_SUFFIX),
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=True if quiet else None,  # None lets tqdm hide the bar when stderr is not a terminal
        leave=True,
    )
    try:
        for attempt in range(1, attempts + 1):
            try:
                fetch(source, part, timeout, bar, say)
                return True, ""
            except Retryable as exc:
                last_reason = exc.reason
                if attempt == attempts:
                    break
                delay = min(backoff * 2 ** (attempt - 1), _MAX_DELAY)
                say(
                    f"{part.name.removesuffix(PART_SUFFIX)}: attempt {attempt} of {attempts} failed ({exc.reason}); "
                    f"retrying in {delay:g} s"
                )
                if delay > 0:
                    _sleep(delay)
    finally:
        bar.close()
    return False, last_reason


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


def _expected_md5(file_name: str, md5: str | None) -> str:
    if md5 is None:
        return ARCHIVE_MD5[file_name]
    value = md5.strip().lower()
    if not _MD5_RE.match(value):
        raise UsageError(f"invalid md5 '{md5}': expected 32 hexadecimal digits")
    return value


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        raise OutputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise output_error(path, exc) from exc
