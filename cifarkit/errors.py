"""The one exception family a user sees.

Every failure a user can cause is raised as a subclass of :class:`CifarkitError`; its message is the
single line the CLI prints. Anything else escaping to the CLI is a bug in cifarkit.
"""

from __future__ import annotations

import contextlib
import contextvars

_CLI_WORDING = contextvars.ContextVar("cifarkit_cli_wording", default=False)


def option(flag: str, keyword: str) -> str:
    """How a message names a choice the user can make: ``--no-verify`` on the command line,
    ``verify=False`` from Python (where a flag would be a TypeError to follow)."""
    return flag if _CLI_WORDING.get() else keyword


def no_verify() -> str:
    """The way to read data whose checksum is not the official one."""
    return option("--no-verify", "verify=False")


@contextlib.contextmanager
def cli_wording():
    """Messages raised inside name command-line flags (the CLI runs its commands in it)."""
    token = _CLI_WORDING.set(True)
    try:
        yield
    finally:
        _CLI_WORDING.reset(token)


class CifarkitError(Exception):
    """Base class: ``str(error)`` is a complete, readable, one-line message."""

    exit_code = 1


class UsageError(CifarkitError):
    """A bad option or combination of options (exit code 2, as for any command-line usage error)."""

    exit_code = 2


class SourceError(CifarkitError):
    """Missing, unrecognised, corrupt or truncated input data."""


class UnsafeInputError(SourceError):
    """Input that tries to do more than hold data: a pickle global or an archive member we refuse."""


class ChecksumError(SourceError):
    """A file with an official name whose checksum is not the official one."""


class OutputError(CifarkitError):
    """The output location cannot be written (permissions, full disk, conflicting contents)."""


class DownloadError(CifarkitError):
    """A download failed after its retries, or what arrived is not what was asked for."""
