"""Image paths named inside annotation files stay inside the dataset's folder.

An annotation file is data, possibly from elsewhere: a ``file_name`` of
``../../home/me/.ssh/id_rsa.jpg`` or ``/dev/zero`` must not make yoloqat open that file.
Names are judged lexically (``..`` and absolute paths); symbolic links placed inside the
folder are the folder owner's choice and are followed, and whatever they lead to is still
read only if it is a regular file within the size limits (:mod:`yoloqat.data.imageio`).
``--allow-outside-paths`` (``YOLOQAT_ALLOW_OUTSIDE_PATHS=1``) lifts the rule.
"""

from __future__ import annotations

from pathlib import Path

from yoloqat.core import limits
from yoloqat.core.errors import DataError


def inside(root: str | Path, name: str | Path, *, where: str, folder: str = "image folder") -> Path:
    """``root / name``; a DataError naming ``where`` (file, record and field) when the
    name leads outside ``root`` and outside paths are not allowed."""
    root = Path(root)
    if limits.outside(name, root) and not limits.allow_outside_paths():
        raise DataError(
            f"{where}: {str(name)!r} points outside the {folder} {root}",
            hint=limits.OUTSIDE_HINT,
        )
    return root / name


def read_text(path: str | Path, what: str) -> str:
    """The UTF-8 text of an annotation-side file (label, list, names, XML, data yaml):
    a regular file within the "annotation" size limit, else a DataError naming it."""
    data = limits.read_input_bytes(path, "annotation", error=DataError, what=what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text ({exc})") from None
