"""The one exception family a user sees.

Every failure a user can cause is raised as a subclass of :class:`CifarkitError`; its message is the
single line the CLI prints. Anything else escaping to the CLI is a bug in cifarkit.
"""

from __future__ import annotations


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
