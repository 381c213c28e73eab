"""Test helpers: a COCO-format split rewritten as YOLO txt or Pascal VOC XML files."""

from __future__ import annotations

import json
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.scoring import DetectionEngine


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _load(annotations: Path) -> tuple[dict, list[int]]:
    data = json.loads(Path(annotations).read_text())
    return data, sorted(c["id"] for c in data["categories"])


def coco_to_yolo(annotations: Path, images: Path, root: Path, split: str) -> list[str]:
    """Write ``root/images/<split>/`` and ``root/labels/<split>/*.txt`` (non-crowd boxes,
    6 decimals as Ultralytics writes them); returns the class names in index order."""
    data, ids = _load(annotations)
    index = {c: i for i, c in enumerate(ids)}
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    for img in data["images"]:
        name = Path(img["file_name"])
        _link(Path(images) / name, root / "images" / split / name)
        w, h = img["width"], img["height"]
        lines = []
        for a in by_image.get(img["id"], []):
            if a.get("iscrowd"):
                continue
            x, y, bw, bh = a["bbox"]
            cx, cy = (x + bw / 2) / w, (y + bh / 2) / h
            lines.append(f"{index[a['category_id']]} {cx:.6f} {cy:.6f} {bw / w:.6f} {bh / h:.6f}")
        if lines:
            label = root / "labels" / split / name.with_suffix(".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text("\n".join(lines) + "\n")
    names = {c["id"]: c["name"] for c in data["categories"]}
    return [names[c] for c in ids]


def voc_xml(
    filename: str, size: tuple[int, int] | None, objects: list[tuple[str, list, int]]
) -> str:
    """One VOC annotation: ``objects`` are (name, [xmin, ymin, xmax, ymax], difficult)."""
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = filename
    if size is not None:
        s = ET.SubElement(root, "size")
        ET.SubElement(s, "width").text = str(size[0])
        ET.SubElement(s, "height").text = str(size[1])
        ET.SubElement(s, "depth").text = "3"
    for name, box, difficult in objects:
        o = ET.SubElement(root, "object")
        ET.SubElement(o, "name").text = name
        ET.SubElement(o, "truncated").text = "0"
        ET.SubElement(o, "difficult").text = str(difficult)
        b = ET.SubElement(o, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), box):
            ET.SubElement(b, key).text = f"{value:g}"
    return ET.tostring(root, encoding="unicode")


def coco_to_voc(
    annotations: Path,
    images: Path,
    root: Path,
    split: str,
    difficult: frozenset = frozenset(),
    prefix: str = "",
) -> list[str]:
    """Write ``root/{JPEGImages,Annotations,ImageSets/Main/<split>.txt}``; boxes as VOC's
    1-based inclusive pixels (``xmin = x + 1``, ``xmax = x + w``); annotation ids in
    ``difficult`` get ``<difficult>1``; ``prefix`` goes before every file name (VOC keeps
    all splits in one folder). Returns the class names in index order."""
    data, ids = _load(annotations)
    names = {c["id"]: c["name"] for c in data["categories"]}
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    stems = []
    for img in data["images"]:
        src = Path(img["file_name"])
        name = Path(prefix + src.name)
        _link(Path(images) / src, root / "JPEGImages" / name)
        objects = []
        for a in by_image.get(img["id"], []):
            if a.get("iscrowd"):
                continue
            x, y, w, h = a["bbox"]
            flag = int(a["id"] in difficult)
            objects.append((names[a["category_id"]], [x + 1, y + 1, x + w, y + h], flag))
        size = (img["width"], img["height"])
        (root / "Annotations" / f"{name.stem}.xml").write_text(voc_xml(name.name, size, objects))
        stems.append(name.stem)
    lst = root / "ImageSets" / "Main" / f"{split}.txt"
    lst.write_text("".join(f"{s}\n" for s in stems))
    return [names[c] for c in ids]


def synthetic_detections(annotations: list, ids: list[int], seed: int = 0) -> list[dict]:
    """Jittered copies of 80% of the non-crowd boxes (10% with a wrong class) plus three
    random false positives per image, random scores."""
    rng = np.random.default_rng(seed)
    dets = []
    for rec in annotations:
        for (x, y, w, h), cls, crowd in zip(rec.boxes, rec.classes, rec.crowd):
            if crowd or rng.random() < 0.2:
                continue
            j = rng.normal(0, 0.08, 4)
            c = cls if rng.random() > 0.1 else rng.integers(len(ids))
            box = [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]
            score = rng.random()
            dets.append(
                {"image_id": rec.image_id, "category_id": ids[c], "bbox": box, "score": score}
            )
        for _ in range(3):
            w, h = rng.uniform(5, 200, 2)
            box = [rng.uniform(0, rec.width - w), rng.uniform(0, rec.height - h), w, h]
            cat = ids[rng.integers(len(ids))]
            score = 0.5 * rng.random()
            dets.append({"image_id": rec.image_id, "category_id": cat, "bbox": box, "score": score})
    return dets


def score_stats(dets: list[dict], gt: Any) -> dict[str, float]:
    engine = DetectionEngine(sorted(gt.getCatIds()))
    engine.extend(dets, image_ids=gt.getImgIds())
    return engine.evaluate(gt).stats
