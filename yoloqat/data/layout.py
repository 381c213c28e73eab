"""Telling a bundled dataset plugin from a folder's layout (``eval --data_dir D``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: (plugin name, paths of which one must exist under the root), tried in this order.
LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("coco2014", ("annotations/instances_val2014.json", "annotations/instances_train2014.json")),
    ("coco", ("annotations/instances_val.json", "annotations/instances_train.json")),
    ("voc", ("Annotations", "JPEGImages")),
    ("yolo", ("labels", "images")),
)


def detect_dataset(data_dir: str | Path) -> dict[str, Any] | None:
    """The dataset block (``{name, data_dir}``) for the layout of ``data_dir``, or None.

    ``annotations/instances_{val,train}2014.json``: ``coco2014``;
    ``annotations/instances_{val,train}.json`` (what ``yoloqat synth`` writes): ``coco``;
    ``Annotations/`` + ``JPEGImages/``: ``voc``; ``images/`` + ``labels/``, or a ``.yaml``
    file: ``yolo``.
    """
    root = Path(data_dir).expanduser()
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):
        return {"name": "yolo", "data_dir": str(data_dir)}
    if not root.is_dir():
        return None
    for name, paths in LAYOUTS:
        found = [(root / p).exists() for p in paths]
        if all(found) if name in ("voc", "yolo") else any(found):
            return {"name": name, "data_dir": str(data_dir)}
    return None
