"""Image files stored as they are: the checks behind ``--encoding auto`` and ``--skip-bad``.

A photo tree (cats vs dogs, flowers) holds JPEGs of a few hundred KB each; decoding one and
encoding it again as PNG costs tens of milliseconds and makes the export five times bigger.
Where a file is already a JPEG or PNG that every decoder reads the same way (8-bit grey or RGB),
its bytes go into the record unchanged; anything else (CMYK JPEGs, 16-bit or palette PNGs,
other formats) is decoded and stored as PNG.

Before anything is written every file is checked (in the worker processes): a JPEG is decoded
in Pillow's draft mode, at 1/8 scale, which still reads its whole entropy-coded data, so a
truncated or damaged file is found at a small part of a full decode's cost; a PNG's chunks and
CRCs are verified; other formats are decoded. A file that fails is reported by name.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourceError

# Pillow formats and modes whose bytes are stored unchanged: 8-bit grey or RGB, which
# tf.image.decode_image, Pillow and libjpeg-turbo decode to the same channels.
PASSTHROUGH = {"JPEG": ("L", "RGB"), "PNG": ("L", "RGB")}


@dataclass(frozen=True)
class FileCheck:
    path: str
    kind: str | None  # "jpeg" or "png" when the bytes can be stored as they are
    height: int = 0
    width: int = 0
    error: str | None = None  # why the file cannot be read


def check_file(path: str | Path) -> FileCheck:
    """Whether ``path`` decodes, and whether its bytes can be stored unchanged."""
    from PIL import Image

    from ..sources.image_file import read_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                fmt, mode, (width, height) = image.format, image.mode, image.size
                if fmt == "JPEG":
                    image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
                    image.load()
                elif fmt == "PNG":
                    image.verify()
            if fmt == "PNG":
                _check_png(Path(path))
        if fmt not in PASSTHROUGH:
            read_image(Path(path))  # the decode an export does anyway, with its checks
        kind = fmt.lower() if mode in PASSTHROUGH.get(fmt, ()) else None
        return FileCheck(str(path), kind, height, width)
    except SourceError as exc:
        return FileCheck(str(path), None, error=str(exc))
    except Exception as exc:  # Pillow raises many kinds for a damaged file
        reason = (str(exc).strip().splitlines() or [""])[0]
        return FileCheck(str(path), None, error=f"{path}: cannot decode image ({type(exc).__name__}: {reason})")


def _check_png(path: Path) -> None:
    """What a record reader would refuse of these bytes, stored as they are: the header the
    record checks read (:func:`.record_checks.encoded_size`), the chunk layout libpng requires,
    and the compressed pixels, decoded in full (``verify`` reads the chunks only)."""
    from PIL import Image

    from .codecs.png import structure_problem
    from .record_checks import encoded_size, size_refusal

    data = path.read_bytes()
    size = encoded_size(data)
    problem = "its header gives no size" if size is None else size_refusal(*size, len(data)) or structure_problem(data)
    if problem is not None:  # before the pixels are decoded
        raise SourceError(f"{path}: not a PNG every decoder reads ({problem})")
    with Image.open(path) as image:
        image.load()


def check_files(paths: list[str]) -> list[FileCheck]:
    """Worker task: check a run of files."""
    return [check_file(path) for path in paths]


def stored_bytes(path: str | Path) -> tuple[bytes, int, int] | None:
    """A JPEG or PNG file's own bytes with its height and width, when they can be stored as
    they are; None otherwise (the caller decodes and re-encodes it)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in PASSTHROUGH.get(image.format, ()):
            return None
        width, height = image.size
    return Path(path).read_bytes(), height, width


def bad_report(bad: list[FileCheck], total: int) -> str:
    """One line: how many files fail, and the first few by name."""
    shown = "; ".join(check.error or check.path for check in bad[:3])
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    return f"{len(bad)} of {total:,} image files cannot be read ({shown}{more})"
