"""Bounds on what yoloqat reads: file sizes, image pixels, paths named inside data files.

Every input file is read through :func:`check_input_file` or :func:`read_input_bytes`:
it must be a regular file (not a device such as ``/dev/zero``, a FIFO or a folder) no
larger than the limit of its kind, else the caller's error class is raised with one line
naming the file, what it is, its size and the limit. Images also have a pixel limit,
checked from the file header before anything is decoded (a small PNG can decode to
gigabytes).

The limits and the data policy come from the environment, so they reach every process
a command starts (loader workers, msrun workers); the global command-line options set
these variables:

==============================  =================================  ======================
variable                        option                             default
==============================  =================================  ======================
``YOLOQAT_MAX_FILE_SIZE``       ``--max-file-size SIZE``           per kind, see LIMITS
``YOLOQAT_MAX_IMAGE_PIXELS``    ``--max-image-pixels N``           178,956,970 (Pillow's)
``YOLOQAT_ALLOW_OUTSIDE_PATHS`` ``--allow-outside-paths``          off
``YOLOQAT_STRICT_DATA``         ``--strict-data``                  off
==============================  =================================  ======================

``SIZE`` is a byte count with an optional binary suffix (``512M``, ``8G``); it replaces
the limit of every kind.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from yoloqat.core.errors import ConfigError, YoloqatError

MiB = 1 << 20
GiB = 1 << 30

#: Default byte limit of each kind of input file. Annotation files are large in real
#: data sets (COCO 2017's instances_train2017.json is 448 MB); a full YOLOv3 training
#: checkpoint with optimizer moments and EMA is about 0.75 GB.
LIMITS: dict[str, int] = {
    "image": 256 * MiB,
    "annotation": 2 * GiB,
    "config": 16 * MiB,
    "checkpoint": 16 * GiB,
    "onnx": 4 * GiB,
    "weights": 4 * GiB,
}
#: Pillow's decompression-bomb threshold (2 x ``PIL.Image.MAX_IMAGE_PIXELS``): above it
#: Pillow refuses to open an image; a 416 px network never needs such an input.
MAX_IMAGE_PIXELS = 178_956_970

SIZE_ENV = "YOLOQAT_MAX_FILE_SIZE"
PIXELS_ENV = "YOLOQAT_MAX_IMAGE_PIXELS"
OUTSIDE_ENV = "YOLOQAT_ALLOW_OUTSIDE_PATHS"
STRICT_ENV = "YOLOQAT_STRICT_DATA"

SIZE_HINT = f"raise the limit with --max-file-size SIZE (or {SIZE_ENV}=SIZE), e.g. 8G"
PIXELS_HINT = f"raise the limit with --max-image-pixels N (or {PIXELS_ENV}=N)"
OUTSIDE_HINT = f"allow it with --allow-outside-paths (or {OUTSIDE_ENV}=1) if you trust the file"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``"512M"`` -> 536870912 (binary suffixes K, M, G, T; a plain number is bytes)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _SIZE.match(str(text))
        if match is None:
            raise ConfigError(
                f"file size {text!r} is not valid; expected a number of bytes with an optional "
                "K, M, G or T suffix (e.g. 512M, 8G)"
            )
        power = " kmgt".index(match.group(2).lower() or " ")
        value = int(float(match.group(1)) * (1024**power))
    if value < 1:
        raise ConfigError(f"file size {text!r} must be positive")
    return value


def human_size(n: int) -> str:
    """``536870912`` -> ``'512 MiB'`` (for messages)."""
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def max_bytes(kind: str) -> int:
    """The byte limit of input files of ``kind`` (one of :data:`LIMITS`)."""
    override = os.environ.get(SIZE_ENV)
    if override:
        return parse_size(override)
    return LIMITS[kind]


def max_image_pixels() -> int:
    """The largest image (width x height) that is decoded."""
    value = os.environ.get(PIXELS_ENV)
    if not value:
        return MAX_IMAGE_PIXELS
    try:
        pixels = int(value.replace("_", "").replace(",", ""))
    except ValueError:
        raise ConfigError(f"{PIXELS_ENV}={value!r} is not a whole number of pixels") from None
    if pixels < 1:
        raise ConfigError(f"{PIXELS_ENV}={value!r} must be positive")
    return pixels


def allow_outside_paths() -> bool:
    """Whether image paths in annotation files may point outside the dataset's folder."""
    return _flag(OUTSIDE_ENV)


def strict_data() -> bool:
    """Whether data problems that are warnings by default (orphan annotations, dropped
    boxes) are errors."""
    return _flag(STRICT_ENV)


def configure(
    *,
    max_file_size: str | None = None,
    max_image_pixels: int | None = None,
    allow_outside: bool = False,
    strict: bool = False,
) -> None:
    """Set the policy for this process and the processes it starts (the global options)."""
    if max_file_size is not None:
        os.environ[SIZE_ENV] = str(parse_size(max_file_size))
    if max_image_pixels is not None:
        if max_image_pixels < 1:
            raise ConfigError(f"--max-image-pixels {max_image_pixels} must be positive")
        os.environ[PIXELS_ENV] = str(int(max_image_pixels))
    if allow_outside:
        os.environ[OUTSIDE_ENV] = "1"
    if strict:
        os.environ[STRICT_ENV] = "1"


def file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_stat(
    path: Path, st: os.stat_result, kind: str, what: str, error: type[YoloqatError]
) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is {file_type(st.st_mode)}, not a regular file")
    limit = max_bytes(kind)
    if st.st_size > limit:
        raise error(
            f"{what} {path} is {human_size(st.st_size)}, over the {human_size(limit)} limit "
            f"for {kind} files",
            hint=SIZE_HINT,
        )


def check_input_file(
    path: str | Path, kind: str, *, error: type[YoloqatError] = ConfigError, what: str | None = None
) -> os.stat_result:
    """Stat ``path`` (following links) and raise ``error`` unless it is a regular file of
    at most :func:`max_bytes` (``kind``) bytes. ``what`` names it in the message."""
    path = Path(path)
    label = what or f"{kind} file"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{label} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {label} {path}: {exc.strerror or exc}") from None
    _check_stat(path, st, kind, label, error)
    return st


def read_input_bytes(
    path: str | Path, kind: str, *, error: type[YoloqatError] = ConfigError, what: str | None = None
) -> bytes:
    """The bytes of ``path``, checked as :func:`check_input_file` does on the open file
    (so a file swapped or grown after the check is still bounded)."""
    path = Path(path)
    label = what or f"{kind} file"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{label} not found: {path}") from None
    except OSError as exc:
        raise error(f"cannot read {label} {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as fh:
        _check_stat(path, os.fstat(fh.fileno()), kind, label, error)
        limit = max_bytes(kind)
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise error(f"cannot read {label} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(
            f"{label} {path} grew over the {human_size(limit)} limit for "
            f"{kind} files while being read",
            hint=SIZE_HINT,
        )
    return data


def outside(path: str | Path, root: str | Path) -> bool:
    """Whether ``path`` lies outside the folder ``root``, judged on the names (``..`` and
    absolute paths), not on symbolic links inside ``root``, which the dataset's owner
    placed there."""
    full = os.path.normpath(os.path.join(os.path.abspath(root), os.fspath(path)))
    base = os.path.normpath(os.path.abspath(root))
    return os.path.commonpath([full, base]) != base
