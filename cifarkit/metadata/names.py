"""Names read from data become path components here, and nowhere else.

A split, class, shard or file name comes from a file someone else wrote (``dataset_info.json``,
``manifest.csv``, ``labels.txt``, a folder's own listing). Joined under an output folder as it
is, ``../../victim`` or ``/etc`` writes, or with ``--overwrite`` deletes, outside it. So every
writer and reader turns such a name into a path component through :func:`path_component`, which
refuses rather than rewrites what cannot be one, and :func:`folder_names` which also refuses two
names that would land in one folder.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from ..errors import UnsafeInputError

MAX_NAME_BYTES = 255  # the longest file name ext4, APFS and NTFS take (UTF-8 bytes on Linux)


def _why_unsafe(name: object) -> str | None:
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    if name in (".", ".."):
        return "is a relative folder reference"
    if "/" in name or "\\" in name:
        return "holds a path separator"
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return "is a drive path"
    if any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in name):
        return "holds a control character"
    if not name.strip():
        return "is blank"
    if name.startswith("."):
        return "starts with a dot (a hidden file, or cifarkit's own staging names)"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def unsafe_reason(name: object) -> str | None:
    """Why ``name`` cannot be one path component ("holds a path separator"), or None if it can:
    for a parser that reports the reason in its own words."""
    return _why_unsafe(name)


def path_component(name: object, what: str, where: object) -> str:
    """``name`` unchanged if it is safe as one path component; an :class:`UnsafeInputError`
    naming ``what`` it is (``"split"``, ``"class"``) and ``where`` it came from otherwise."""
    why = _why_unsafe(name)
    if why is not None:
        raise UnsafeInputError(f"{where}: the {what} name {name!r} {why}; it cannot be a folder or file name, refused")
    return name  # type: ignore[return-value]


def folder_names(names: Iterable[object], what: str, where: object) -> tuple[str, ...]:
    """Each name checked by :func:`path_component`, and no two that one file system would hold
    as one folder (names equal after case folding and Unicode normalisation, as on macOS and
    Windows) or after white space at either end is trimmed (as Windows and many tools do): the
    error names both."""
    seen: dict[str, str] = {}
    checked = []
    for name in names:
        safe = path_component(name, what, where)
        key = unicodedata.normalize("NFC", safe).strip().casefold()
        if key in seen:
            raise UnsafeInputError(
                f"{where}: the {what} names {seen[key]!r} and {safe!r} would be one folder on disk; refused"
            )
        seen[key] = safe
        checked.append(safe)
    return tuple(checked)
