"""Which exported models cifarkit wrote, so that ``predict`` and ``evaluate`` run no other unasked.

A SavedModel is a program: loading it and calling its signature runs whatever operations its
graph holds (``tf.io.write_file`` among them); a ``.tflite`` file drives an interpreter that
does not check what it reads. A ``.keras`` file is different: Keras rebuilds it from layer
configs in safe mode, and cifarkit only ever loads it so.

So ``cifarkit export-model`` records what it wrote: each file's SHA-256 and its name relative
to the model, in ``<version>/assets.extra/cifarkit-export.json`` (where a SavedModel keeps
files that are not part of the graph) or ``<name>.tflite.cifarkit.json`` beside the file,
signed with an HMAC under a key kept in the user's own configuration folder
(``$CIFARKIT_CONFIG_DIR``, else ``$XDG_CONFIG_HOME/cifarkit``, else ``~/.config/cifarkit``).
A model runs without ``--trust-model`` only if its record is there, verifies under this key,
and names exactly the files present, byte for byte. A folder from elsewhere cannot carry a
record that verifies here: a record copied or forged with the model fails the MAC, and a
genuine record beside changed or added files fails the digests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from ..errors import UnsafeInputError

CONFIG_ENV = "CIFARKIT_CONFIG_DIR"
KEY_FILE = "export-key"
KEY_BYTES = 32
RECORD_NAME = "cifarkit-export.json"  # in a SavedModel's assets.extra/
EXTRA_DIR = "assets.extra"
TFLITE_RECORD_SUFFIX = ".cifarkit.json"  # beside a .tflite file: model.tflite.cifarkit.json
TRUST_HINT = "pass --trust-model to run it if you trust where it came from"


def config_dir() -> Path:
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "cifarkit"


def _read_key(path: Path) -> bytes:
    """The key, if it is this user's private file (a key others can read signs nothing)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        info = os.fstat(fd)
        if hasattr(os, "getuid") and (info.st_uid != os.getuid() or info.st_mode & 0o077):
            raise PermissionError(f"{path} is not private to this user (chmod 600 it)")
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path} does not hold a {KEY_BYTES}-byte key")
    return key


def signing_key(create: bool) -> bytes:
    """This user's key; made once, readable by its owner only. Raises OSError or ValueError."""
    path = config_dir() / KEY_FILE
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{KEY_FILE}-{os.getpid()}-{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # never replaces a key another export made at the same moment
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return _read_key(path)


def record_path(model: Path) -> Path:
    model = Path(model)
    return model / EXTRA_DIR / RECORD_NAME if model.is_dir() else model.with_name(model.name + TFLITE_RECORD_SUFFIX)


def model_files(model: Path) -> dict[str, str]:
    """Each file of the model (a SavedModel folder, or the one ``.tflite`` file) by its name
    relative to the model, with its SHA-256; the record itself left out."""
    from ..metadata.model_record import MAX_FILES

    model = Path(model)
    if not model.is_dir():
        return {model.name: _sha256(model)}
    found: dict[str, str] = {}
    for folder, subfolders, names in os.walk(model):
        for name in names + [d for d in subfolders if os.path.islink(os.path.join(folder, d))]:
            path = Path(folder) / name
            relative = path.relative_to(model).as_posix()
            if relative == f"{EXTRA_DIR}/{RECORD_NAME}":
                continue
            if path.is_symlink() or not path.is_file():
                raise UnsafeInputError(f"{path}: a link or special file; export-model writes neither")
            found[relative] = _sha256(path)
            if len(found) > MAX_FILES:
                raise UnsafeInputError(f"{model}: more than {MAX_FILES:,} files; export-model writes a handful")
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def record_export(model: Path, kind: str) -> str | None:
    """Sign and write the record of a model export-model has just written; None when done, else
    why not (the model stays usable with ``--trust-model``)."""
    from ..metadata.model_record import signed_text
    from ..writers.atomic import write_text

    try:
        key = signing_key(create=True)
    except (OSError, ValueError) as exc:
        return f"no signing key ({exc.strerror if isinstance(exc, OSError) and exc.strerror else exc})"
    files = model_files(model)
    mac = hmac.new(key, signed_text(kind, files), hashlib.sha256).hexdigest()
    path = record_path(model)
    path.parent.mkdir(exist_ok=True)
    write_text(path, json.dumps({"format": 1, "kind": kind, "files": files, "mac": mac}, indent=1) + "\n")
    return None


def untrusted_reason(model: Path, kind: str) -> str | None:
    """Why ``model`` is not one this user's export-model wrote, or None when it is."""
    from ..metadata.model_record import read_model_record

    path = record_path(model)
    if not path.is_file():
        return "there is no record of export-model writing it"
    try:
        record = read_model_record(path)
    except UnsafeInputError as exc:
        return f"its record is damaged: {str(exc).removeprefix(f'{path}: ')}"
    try:
        key = signing_key(create=False)
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        return f"this machine has no key to check its record ({why})"
    expected = hmac.new(key, record.signed_text(), hashlib.sha256).hexdigest()
    if record.kind != kind or not hmac.compare_digest(expected, record.mac):
        return "its record was not signed on this machine by this user"
    try:
        present = model_files(model)
    except UnsafeInputError as exc:
        return str(exc)
    changed = sorted(set(present) ^ set(record.files)) or sorted(n for n in present if present[n] != record.files[n])
    if changed:
        return f"{changed[0]} is not what export-model wrote"
    return None


def check_trusted(model: Path, kind: str) -> None:
    """Refuse, in one line, a model this user's export-model did not write (see the module)."""
    why = untrusted_reason(model, kind)
    if why is not None:
        what = (
            "a SavedModel runs whatever operations its graph holds"
            if kind == "savedmodel"
            else "a TFLite file drives an interpreter that does not check what it reads"
        )
        raise UnsafeInputError(
            f"{model}: refused to run it: {what}, and this one is not known to be cifarkit's ({why}); {TRUST_HINT}"
        )
