"""pycocotools ground truth built from a source's :class:`ImageAnnotations`.

Evaluation never needs a dataset's own annotation file: any source's ``annotations()``
becomes a ``pycocotools.coco.COCO`` object here, with the category id of each class
index from the dataset. For a COCO source (whose annotations are the file's, unchanged)
the result scores exactly as the file itself.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from yoloqat.core.contracts.dataset import ImageAnnotations
from yoloqat.core.errors import DataError


def _column(value: Any, n: int, dtype: Any, what: str, image_id: int) -> np.ndarray:
    arr = np.asarray(value, dtype)
    if arr.shape != (n,):
        raise DataError(
            f"annotations of image {image_id}: {what} has shape {arr.shape}, not ({n},)"
        )
    return arr


def coco_dataset(
    annotations: Iterable[ImageAnnotations],
    category_ids: Sequence[int],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The COCO instances dict (images, annotations, categories) of ``annotations``.

    Annotation ids run 1, 2, ... in the given order; ``area`` defaults to ``w * h``.
    """
    ids = [int(c) for c in category_ids]
    names = list(class_names) if class_names is not None else [str(c) for c in ids]
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    seen: set[int] = set()
    for rec in annotations:
        image_id = int(rec.image_id)
        if image_id in seen:
            raise DataError(f"image id {image_id} appears twice in the source's annotations")
        seen.add(image_id)
        images.append(
            {
                "id": image_id,
                "file_name": str(rec.file_name),
                "width": float(rec.width),
                "height": float(rec.height),
            }
        )
        boxes = np.asarray(rec.boxes, np.float64).reshape(-1, 4)
        n = len(boxes)
        classes = _column(rec.classes, n, np.int64, "classes", image_id)
        if n and (classes.min() < 0 or classes.max() >= len(ids)):
            raise DataError(
                f"annotations of image {image_id}: class index {int(classes.max())} is not "
                f"in 0..{len(ids) - 1}"
            )
        crowd = (
            np.zeros(n, bool)
            if rec.crowd is None
            else _column(rec.crowd, n, bool, "crowd", image_id)
        )
        area = (
            boxes[:, 2] * boxes[:, 3]
            if rec.area is None
            else _column(rec.area, n, np.float64, "area", image_id)
        )
        for box, cls, is_crowd, a in zip(
            boxes.tolist(), classes.tolist(), crowd.tolist(), area.tolist()
        ):
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": image_id,
                    "category_id": ids[cls],
                    "bbox": box,
                    "area": a,
                    "iscrowd": int(is_crowd),
                }
            )
    categories = [{"id": c, "name": str(n)} for c, n in zip(ids, names)]
    return {"images": images, "annotations": anns, "categories": categories}


def coco_ground_truth(
    annotations: Iterable[ImageAnnotations],
    category_ids: Sequence[int],
    class_names: Sequence[str] | None = None,
) -> Any:
    """A ``pycocotools.coco.COCO`` ground truth of ``annotations`` (see :func:`coco_dataset`)."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = coco_dataset(annotations, category_ids, class_names)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
