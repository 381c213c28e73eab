"""Reading Pascal VOC XML into the shared :class:`~yoloqat.data.source.BoxSource`."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import DataError
from yoloqat.data.coco import check_path
from yoloqat.data.imageio import image_size
from yoloqat.data.names import read_names
from yoloqat.data.paths import inside, read_text
from yoloqat.data.source import BoxRows, BoxSource, ClassListDataset, image_ids_for

_FIELDS = ("xmin", "ymin", "xmax", "ymax")


def _number(node: ET.Element | None, path: Path, where: str, field: str) -> float:
    text = node.findtext(field) if node is not None else None
    if text is None or not text.strip():
        raise DataError(f"{path}: {where} has no <{field}>")
    try:
        return float(text)
    except ValueError:
        raise DataError(f"{path}: {where} <{field}> is not a number: {text.strip()!r}") from None


def _size(root: ET.Element, path: Path, image: Path) -> tuple[float, float]:
    """The ``<size>`` of the XML; a missing or zero one is read from the image header."""
    size = root.find("size")
    w = h = 0.0
    if size is not None and size.findtext("width") and size.findtext("height"):
        w = _number(size, path, "<size>", "width")
        h = _number(size, path, "<size>", "height")
    if w > 0 and h > 0:
        return w, h
    # unreadable: skipped by the loaders; boxes are left unclipped
    return image_size(image) or (0.0, 0.0)


def parse_xml(
    path: Path, index: dict[str, int], image_dir: Path, image_id: str
) -> tuple[Path, tuple[float, float], np.ndarray, np.ndarray, np.ndarray]:
    """(image path, (w, h), pixel x, y, w, h [K, 4], classes [K], difficult [K])."""
    if not path.exists():
        raise DataError(
            f"VOC annotation not found: {path}", hint="every listed id needs Annotations/<id>.xml"
        )
    try:
        root = ET.fromstring(read_text(path, "VOC annotation"))
    except ET.ParseError as exc:
        raise DataError(f"{path}: not well-formed XML ({exc})") from None
    if root.tag != "annotation":
        raise DataError(f"{path}: the root element is <{root.tag}>, not <annotation>")
    filename = (root.findtext("filename") or "").strip() or f"{image_id}.jpg"
    image = inside(image_dir, filename, where=f"{path}: <filename>", folder="JPEGImages folder")
    width, height = _size(root, path, image)
    boxes, classes, difficult = [], [], []
    for k, obj in enumerate(root.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        where = f"object {k} ({name or 'no name'})"
        if name not in index:
            shown = ", ".join(list(index)[:6]) + (" ..." if len(index) > 6 else "")
            raise DataError(
                f"{path}: {where}: class {name!r} is not in the class list ({shown})",
                hint="set dataset.classes to this dataset's class names",
            )
        box = obj.find("bndbox")
        if box is None:
            raise DataError(f"{path}: {where} has no <bndbox>")
        x1, y1, x2, y2 = (_number(box, path, where, f) for f in _FIELDS)
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise DataError(f"{path}: {where} <difficult> must be 0 or 1, got {flag!r}")
        # 1-based inclusive pixel indices -> continuous 0-based edges
        boxes.append([x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1])
        classes.append(index[name])
        difficult.append(flag == "1")
    xywh = np.asarray(boxes, np.float64).reshape(-1, 4)
    return image, (width, height), xywh, np.asarray(classes, np.int64), np.asarray(difficult, bool)


def read_split(root: Path, split: str) -> list[str]:
    """Image ids of ``ImageSets/Main/<split>.txt`` (first token of each line)."""
    path = check_path(
        root / "ImageSets" / "Main" / f"{split}.txt", "VOC image list", directory=False
    )
    ids = [
        line.split()[0] for line in read_text(path, "VOC image list").splitlines() if line.split()
    ]
    if not ids:
        raise DataError(f"VOC image list is empty: {path}")
    if len(set(ids)) != len(ids):
        raise DataError(f"VOC image list names an image twice: {path}")
    return ids


def build_source(root: Path, split: str, index: dict[str, int], use_difficult: bool) -> BoxSource:
    """The :class:`BoxSource` of one split (every XML parsed and cleaned now)."""
    ids = read_split(root, split)
    image_dir = root / "JPEGImages"
    rows, paths, sizes = BoxRows(), [], []
    for image_id in ids:
        image, (w, h), xywh, cls, difficult = parse_xml(
            root / "Annotations" / f"{image_id}.xml", index, image_dir, image_id
        )
        ignore = None if use_difficult else difficult
        rows.add(xywh, cls, w, h, ignore=ignore)
        paths.append(image)
        sizes.append((w, h))
    return BoxSource(
        paths=paths,
        image_ids=image_ids_for(ids),
        rows=rows,
        sizes=sizes,
        origin=f"VOC {split} ({root})",
        root=image_dir,
    )


def build(
    *,
    data_dir: str,
    splits: dict[str, str | None],
    classes: Any,
    use_difficult: bool,
    category_ids: list | None,
) -> ClassListDataset:
    """The ``voc`` factory's work (see its docstring)."""
    if not isinstance(data_dir, (str, Path)) or not str(data_dir):
        raise DataError(f"voc: data_dir must be a folder path, got {data_dir!r}")
    root = check_path(data_dir, "VOC data_dir", directory=True)
    for sub in ("Annotations", "JPEGImages"):
        check_path(root / sub, f"VOC {sub} folder", directory=True)
    names = read_names(classes, root, "voc")
    if len(set(names)) != len(names):
        raise DataError(f"voc: the class list names a class twice: {names}")
    index = {n: i for i, n in enumerate(names)}
    builders: dict[str, Any] = {}
    for split, name in splits.items():
        if name is None:
            builders[split] = None
            continue
        check_path(
            root / "ImageSets" / "Main" / f"{name}.txt", f"VOC {split} list", directory=False
        )
        builders[split] = lambda name=name: build_source(root, name, index, bool(use_difficult))
    if all(b is None for b in builders.values()):
        raise DataError("voc: train_split and val_split are both None")
    return ClassListDataset(
        name="voc",
        class_names=names,
        category_ids=category_ids,
        train=builders["train"],
        val=builders["val"],
        describe={"data_dir": str(root), **{k: str(v) for k, v in splits.items()}},
    )
