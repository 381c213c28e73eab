"""A small synthetic COCO-format detection dataset (``yoloqat synth``).

Coloured shapes (one shape and one colour family per class) of varying size, aspect and
overlap on smooth, noisy, low-saturation backgrounds with clutter lines. A small YOLO
learns it in minutes on CPU. Every image is drawn from a generator keyed by (seed, split,
image index), so the output is fully determined by the seed.

Layout written (what ``coco(data_dir=OUT)`` reads by default)::

    OUT/train/000001.jpg ...            OUT/val/000001.jpg ...
    OUT/annotations/instances_train.json OUT/annotations/instances_val.json
    OUT/names.txt                        (class names, one per line, class-index order)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from yoloqat.core.atomic import write_bytes, write_text
from yoloqat.core.errors import ConfigError
from yoloqat.core.events import track

#: (name, base RGB colour) per class; the first ``num_classes`` are used.
CLASSES: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("circle", (220, 40, 40)),
    ("square", (40, 80, 230)),
    ("triangle", (40, 190, 60)),
    ("star", (240, 210, 30)),
    ("ring", (200, 50, 210)),
    ("diamond", (30, 200, 210)),
    ("cross", (245, 130, 20)),
    ("hexagon", (250, 250, 250)),
)
SPLITS = {"train": 0, "val": 1}


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.integers(70, 170)
    coarse = rng.normal(base, 28, (4, 4, 3))
    coarse = coarse * 0.35 + coarse.mean(axis=2, keepdims=True) * 0.65  # low saturation
    img = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    img += rng.normal(0, 7, (size, size, 3)).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 7))):  # clutter: thin muted lines
        p = rng.integers(0, size, 4)
        shade = int(rng.integers(40, 210))
        cv2.line(
            img,
            (int(p[0]), int(p[1])),
            (int(p[2]), int(p[3])),
            (shade,) * 3,
            int(rng.integers(1, 3)),
            cv2.LINE_AA,
        )
    return img


def _unit_polygon(name: str) -> np.ndarray:
    if name == "triangle":
        return np.array([[0.5, 0.0], [1.0, 1.0], [0.0, 1.0]])
    if name == "diamond":
        return np.array([[0.5, 0.0], [1.0, 0.5], [0.5, 1.0], [0.0, 0.5]])
    if name == "hexagon":
        a = np.arange(6) * np.pi / 3
        return np.stack([np.cos(a), np.sin(a)], 1)
    if name == "star":
        a = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if name == "cross":
        t = 0.32
        lo, hi = 0.5 - t / 2, 0.5 + t / 2
        return np.array(
            [
                [lo, 0],
                [hi, 0],
                [hi, lo],
                [1, lo],
                [1, hi],
                [hi, hi],
                [hi, 1],
                [lo, 1],
                [lo, hi],
                [0, hi],
                [0, lo],
                [lo, lo],
            ]
        )
    raise ValueError(f"unknown synthetic shape {name!r}")


def _draw(img: np.ndarray, name: str, box: tuple[int, int, int, int], colour: tuple) -> None:
    x, y, w, h = box
    if name == "circle":
        cv2.ellipse(
            img, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1, cv2.LINE_AA
        )
    elif name == "ring":
        t = max(2, min(w, h) // 4)
        cv2.ellipse(
            img,
            (x + w // 2, y + h // 2),
            ((w - t) // 2, (h - t) // 2),
            0,
            0,
            360,
            colour,
            t,
            cv2.LINE_AA,
        )
    elif name == "square":
        cv2.rectangle(img, (x, y), (x + w - 1, y + h - 1), colour, -1)
    else:
        unit = _unit_polygon(name)
        unit = (unit - unit.min(0)) / (unit.max(0) - unit.min(0))  # fill the box exactly
        pts = np.round(unit * [w - 1, h - 1] + [x, y]).astype(np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)


def _coverage(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area: how much one of the two may hide."""
    x1 = np.maximum(a[0], b[:, 0])
    y1 = np.maximum(a[1], b[:, 1])
    x2 = np.minimum(a[0] + a[2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[1] + a[3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / np.minimum(a[2] * a[3], b[:, 2] * b[:, 3])


def make_image(
    rng: np.random.Generator, *, size: int, num_classes: int, max_objects: int = 4
) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
    """One RGB image and its objects [(class index, (x, y, w, h))], drawn in list order."""
    img = _background(rng, size)
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        cls = int(rng.integers(num_classes))
        for _trial in range(20):
            side = rng.uniform(0.16, 0.45) * size
            aspect = np.exp(rng.uniform(-0.4, 0.4))
            w = int(np.clip(round(side * np.sqrt(aspect)), 8, size))
            h = int(np.clip(round(side / np.sqrt(aspect)), 8, size))
            x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = np.array([x, y, w, h], np.float64)
            prev = np.array([b for _, b in objects], np.float64).reshape(-1, 4)
            if len(prev) == 0 or _coverage(box, prev).max() <= 0.3:
                break
        else:
            continue
        base = np.array(CLASSES[cls][1], np.float64)
        colour = tuple(int(c) for c in np.clip(base + rng.integers(-25, 26, 3), 0, 255))
        _draw(img, CLASSES[cls][0], (x, y, w, h), colour)
        objects.append((cls, (x, y, w, h)))
    return img, objects


def _write_split(
    out: Path, split: str, count: int, *, size: int, seed: int, num_classes: int
) -> dict[str, Any]:
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in track(range(count), f"synth {split}", total=count):
        rng = np.random.default_rng([seed & 0xFFFFFFFF, SPLITS[split], i])
        img, objects = make_image(rng, size=size, num_classes=num_classes)
        name = f"{i + 1:06d}.jpg"
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]
        )
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 image
            raise RuntimeError(f"could not encode {folder / name}")
        write_bytes(folder / name, buf.tobytes())
        images.append({"id": i + 1, "file_name": name, "width": size, "height": size})
        for cls, (x, y, w, h) in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": cls + 1,
                    "bbox": [float(x), float(y), float(w), float(h)],
                    "area": float(w * h),
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
    categories = [
        {"id": c + 1, "name": CLASSES[c][0], "supercategory": "shape"} for c in range(num_classes)
    ]
    data = {
        "info": {"description": f"yoloqat synthetic shapes, {split}", "version": "1", "seed": seed},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    ann_file = out / "annotations" / f"instances_{split}.json"
    ann_file.parent.mkdir(parents=True, exist_ok=True)
    write_text(ann_file, json.dumps(data))
    return {
        "images": str(folder),
        "annotations": str(ann_file),
        "num_images": count,
        "num_boxes": len(annotations),
    }


def make_synthetic_coco(
    out_dir: str | Path,
    *,
    train: int = 400,
    val: int = 100,
    size: int = 128,
    seed: int = 0,
    num_classes: int = 5,
) -> dict[str, Any]:
    """Write the synthetic dataset to ``out_dir``; returns its paths and counts per split."""
    if not 1 <= num_classes <= len(CLASSES):
        raise ConfigError(f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}")
    if size < 32:
        raise ConfigError(f"size must be at least 32 px, got {size}")
    if train < 0 or val < 0 or train + val == 0:
        raise ConfigError(f"need a positive number of images, got train={train} val={val}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"root": str(out), "classes": [c[0] for c in CLASSES[:num_classes]]}
    for split, count in (("train", train), ("val", val)):
        if count:
            result[split] = _write_split(
                out, split, count, size=size, seed=seed, num_classes=num_classes
            )
    write_text(out / "names.txt", "\n".join(result["classes"]) + "\n")
    return result
