"""The integrity checks every data source gets when it is opened, whatever its plugin.

:class:`~yoloqat.core.contracts.dataset.CheckedDataset` runs :func:`check_source_records`
on each source the first time it is asked for (and ``yoloqat.testing.check_dataset`` on a
plugin author's), so a third-party dataset cannot train or score the wrong thing either:
image ids must be unique integers, file names unique, sizes and boxes numbers, class
indices in range, and the split must hold at least one image and one box. Each problem is
a :class:`~yoloqat.core.errors.DataError` naming the source (its ``origin``, e.g. the
annotation file, when it has one), the image (index, path) and the field, with the
expected value.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from yoloqat.core.errors import DataError


@dataclass(frozen=True)
class SourceSummary:
    """What a checked source holds."""

    images: int
    boxes: int
    #: boxes with a NaN/inf value or a non-positive size (dropped in training)
    invalid_boxes: int


def _is_int(value: Any) -> TypeGuard[numbers.Integral]:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_size(value: Any) -> bool:
    return (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(float(value))
        and float(value) >= 0
    )


def _got(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _numeric(value: Any, shape_tail: tuple[int, ...], what: str, where: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size and arr.dtype.kind not in "fiu":
        raise DataError(f"{where}: {what} are {arr.dtype} values, expected numbers")
    arr = (
        arr.astype(np.float64).reshape(-1, *shape_tail) if arr.size else arr.reshape(0, *shape_tail)
    )
    return arr


def describe(source: Any, split: str, dataset: str) -> str:
    """How messages name a source: its ``origin`` (e.g. the annotation file) if it has one."""
    origin = getattr(source, "origin", None) or getattr(source, "annotation_file", None)
    name = f"the {split} split of dataset '{dataset}'"
    return f"{name} ({origin})" if origin else name


def check_source_records(
    source: Any, *, num_classes: int, where: str, records: Sequence[Any] | None = None
) -> SourceSummary:
    """Check ``source.annotations()`` (or ``records``) against the source; raise a
    DataError at the first problem, naming ``where``, the image and the field."""
    count = len(source)
    if count == 0:
        raise DataError(f"{where} has no images", hint="check the dataset's paths and lists")
    records = list(source.annotations()) if records is None else list(records)
    if len(records) != count:
        raise DataError(f"{where}: annotations() gives {len(records)} entries for {count} images")
    ids: dict[Any, int] = {}
    names: dict[str, int] = {}
    boxes = invalid = 0
    for i, rec in enumerate(records):
        image = f"{where}: image {i} ({getattr(rec, 'file_name', '?')})"
        image_id = getattr(rec, "image_id", None)
        if not _is_int(image_id):
            raise DataError(f"{image}: image_id is {_got(image_id)}, expected an integer")
        if int(image_id) in ids:
            raise DataError(
                f"{where}: images {ids[int(image_id)]} and {i} have the same image_id {image_id}",
                hint="each image needs its own id; their boxes could not be told apart",
            )
        ids[int(image_id)] = i
        name = getattr(rec, "file_name", None)
        if not isinstance(name, str) or not name:
            raise DataError(f"{image}: file_name is {_got(name)}, expected a path")
        if name in names:
            raise DataError(f"{where}: images {names[name]} and {i} are the same file {name!r}")
        names[name] = i
        for key in ("width", "height"):
            if not _is_size(getattr(rec, key, None)):
                value = getattr(rec, key, None)
                raise DataError(f"{image}: {key} is {_got(value)}, expected a number of pixels")
        box = _numeric(rec.boxes, (4,), "boxes", image)
        k = len(box)
        classes = np.asarray(rec.classes)
        if classes.shape != (k,) or (k and classes.dtype.kind not in "iu"):
            raise DataError(
                f"{image}: classes are {classes.dtype} of shape {classes.shape}, expected {k} "
                "integer class indices"
            )
        outside = classes[(classes < 0) | (classes >= num_classes)] if k else classes
        if len(outside):
            raise DataError(
                f"{image}: class index {int(outside[0])} is not in 0..{num_classes - 1}"
            )
        for field_name in ("crowd", "area"):
            value = getattr(rec, field_name, None)
            if value is not None and np.asarray(value).shape != (k,):
                raise DataError(
                    f"{image}: {field_name} has shape {np.asarray(value).shape}, expected ({k},)"
                )
        area = getattr(rec, "area", None)
        if area is not None:
            _numeric(area, (), "areas", image)
        boxes += k
        if k:
            bad = ~np.isfinite(box).all(axis=1) | ~(np.nan_to_num(box[:, 2:]) > 0).all(axis=1)
            invalid += int(bad.sum())
    if boxes == 0:
        raise DataError(
            f"{where} has no boxes in any of its {count} images: nothing to train on or to "
            "score against",
            hint="check the annotation or label files of this split",
        )
    return SourceSummary(images=count, boxes=boxes, invalid_boxes=invalid)
