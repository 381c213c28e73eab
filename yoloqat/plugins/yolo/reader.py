"""Reading the YOLO txt layout into the shared :class:`~yoloqat.data.source.BoxSource`."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import ConfigError, DataError
from yoloqat.data.coco import check_path
from yoloqat.data.names import names_from_yaml_value, read_names
from yoloqat.data.paths import inside, read_text
from yoloqat.data.source import (
    IMAGE_SUFFIXES,
    BoxRows,
    BoxSource,
    ClassListDataset,
    image_ids_for,
)

DEFAULT_SPLITS = {"train": "images/train", "val": "images/val"}
_NAME_FILES = ("*.names", "classes.txt", "names.txt", "*.yaml", "*.yml")


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(text).with_suffix(".txt")


def _list_images(spec: Path, split: str, root: Path) -> list[Path]:
    if spec.is_file() and spec.suffix.lower() == ".txt":
        # the paths a list names stay inside the dataset root (the list's folder when the
        # list lies elsewhere), and each image is listed once
        base = root if not _outside(spec, root) else spec.parent
        paths: list[Path] = []
        seen: dict[str, int] = {}
        for n, line in enumerate(read_text(spec, f"yolo {split} image list").splitlines(), 1):
            name = line.strip()
            if not name:
                continue
            path = Path(name) if Path(name).is_absolute() else spec.parent / name
            inside(base, os.path.abspath(path), where=f"{spec}:{n}", folder="dataset folder")
            key = os.path.normpath(path)
            if key in seen:
                raise DataError(
                    f"{spec}:{n}: {name} is listed twice (first on line {seen[key]})",
                    hint="each image must be listed once",
                )
            seen[key] = n
            paths.append(path)
    else:
        folder = check_path(spec, f"yolo {split} image folder", directory=True)
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"yolo: no images in the {split} split: {spec}")
    return paths


def _outside(path: Path, root: Path) -> bool:
    from yoloqat.core.limits import outside

    return outside(os.path.abspath(path), root)


def _number(token: str, label: Path, line: int, what: str) -> float:
    try:
        return float(token)
    except ValueError:
        raise DataError(f"{label}:{line}: {what} is not a number: {token!r}") from None


def parse_labels(label: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(normalised x, y, w, h [K, 4], class [K]) of one label file; missing: no objects."""
    if not label.is_file():
        return np.zeros((0, 4)), np.zeros(0, np.int64)
    boxes, classes = [], []
    text = read_text(label, "label file")
    for n, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        if len(tokens) != 5 and (len(tokens) < 7 or len(tokens) % 2 == 0):
            raise DataError(
                f"{label}:{n}: expected 'class x_center y_center width height' "
                f"(or a polygon 'class x1 y1 x2 y2 x3 y3 ...'), got {len(tokens)} fields",
            )
        value = _number(tokens[0], label, n, "class")
        if not value.is_integer() or not 0 <= value < num_classes:
            raise DataError(
                f"{label}:{n}: class {tokens[0]} is not an index in 0..{num_classes - 1}",
                hint=f"the class names list has {num_classes} names",
            )
        coords = [_number(t, label, n, "coordinate") for t in tokens[1:]]
        if len(coords) == 4:
            cx, cy, w, h = coords
            box = [cx - w / 2, cy - h / 2, w, h]
        else:
            xs, ys = coords[0::2], coords[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            if any(math.isnan(v) for v in coords):
                box = [math.nan] * 4
        boxes.append(box)
        classes.append(int(value))
    return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(classes, np.int64)


def build_source(spec: Path, split: str, num_classes: int, root: Path) -> BoxSource:
    """The :class:`BoxSource` of one split (labels parsed and cleaned now)."""
    paths = _list_images(spec, split, root)
    rows = BoxRows()
    for path in paths:
        xywh, cls = parse_labels(label_path(path), num_classes)
        rows.add(xywh, cls, 1.0, 1.0)
    ids = image_ids_for([p.stem for p in paths])
    return BoxSource(
        paths=paths,
        image_ids=ids,
        rows=rows,
        sizes=None,
        origin=f"yolo {split} {spec}",
        root=spec if spec.is_dir() else root,
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    from yoloqat.core.config import yaml_load

    text = read_text(path, "yolo data yaml")
    try:
        data = yaml_load(text)
    except Exception as exc:
        raise DataError(f"yolo: {path} is not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"yolo: {path} is not a data yaml (a mapping with train/val/names)")
    return data


def _default_names(root: Path) -> list[str]:
    found = []
    for pattern in _NAME_FILES:
        for p in sorted(root.glob(pattern)):
            if p.suffix.lower() in (".yaml", ".yml") and "names" not in _read_yaml(p):
                continue
            found.append(p)
    if len(found) != 1:
        what = f"several candidates ({', '.join(p.name for p in found)})" if found else "none"
        raise DataError(
            f"yolo: no class names given and {what} found in {root}",
            hint="set dataset.names to a list, a .names file or a data yaml",
        )
    return read_names(found[0], None, "yolo")


def build(
    *,
    data_dir: str | None,
    train: str | None,
    val: str | None,
    names: Any,
    category_ids: list | None,
) -> ClassListDataset:
    """The ``yolo`` factory's work (see its docstring)."""
    splits: dict[str, Any] = {"train": train, "val": val}
    if data_dir is None:
        if train is None and val is None:
            raise ConfigError("yolo: give data_dir, or the train and/or val image paths")
        root = Path.cwd()
    else:
        root = Path(str(data_dir)).expanduser()
        if root.suffix.lower() in (".yaml", ".yml"):
            data = _read_yaml(check_path(root, "yolo data yaml", directory=False))
            base = root.parent
            root = Path(str(data.get("path") or ".")).expanduser()
            root = root if root.is_absolute() else base / root
            for key in splits:
                if splits[key] is None and data.get(key) is not None:
                    splits[key] = data[key]
            if names is None and "names" in data:
                names = names_from_yaml_value(data["names"], f"yolo data yaml {data_dir}")
        check_path(root, "yolo data_dir", directory=True)
    if names is None:
        class_names = _default_names(root)
    elif isinstance(names, dict):
        class_names = names_from_yaml_value(names, "yolo names")
    else:
        class_names = read_names(names, root, "yolo")
    builders: dict[str, Any] = {}
    for split, value in splits.items():
        default = value is None
        spec = Path(str(DEFAULT_SPLITS[split] if default else value)).expanduser()
        spec = spec if spec.is_absolute() else root / spec
        if default and not spec.exists():
            builders[split] = None
            continue
        if not default and not spec.exists():
            raise DataError(f"yolo: {split} images not found: {spec}")
        builders[split] = lambda spec=spec, split=split: build_source(
            spec, split, len(class_names), root
        )
    if builders["train"] is None and builders["val"] is None:
        found = sorted(p.name for p in (root / "images").glob("*") if p.is_dir())
        example = f"images/{found[0]}" if found else "FOLDER"
        raise DataError(
            f"yolo: neither {root / DEFAULT_SPLITS['train']} nor {root / DEFAULT_SPLITS['val']} "
            "exists" + (f" (images/ has {', '.join(found)})" if found else ""),
            hint=f"set dataset.train / dataset.val to the image folders (e.g. --set "
            f"dataset.val={example})",
        )
    return ClassListDataset(
        name="yolo",
        class_names=class_names,
        category_ids=category_ids,
        train=builders["train"],
        val=builders["val"],
        describe={"data_dir": str(root)},
    )
