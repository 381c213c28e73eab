"""Integrity of a COCO instances file, checked on the raw JSON before pycocotools indexes it.

pycocotools keys images, annotations and categories by ``id`` in dicts: two images with
one id silently become one (the second's file with the first's boxes), an ``image_id``
of ``"1"`` silently matches no image, two categories with one id merge two classes. So
the lists are checked as written, and each problem is a :class:`DataError` naming the
file, the record (list and index, with its id) and the field, with the expected value.

Problems a user may want to go on with are counted and returned as warnings (made
errors by ``--strict-data``): annotations whose ``image_id`` names no image (ignored by
training and evaluation alike) and annotation ids used twice (yoloqat numbers the
annotations itself; other COCO tools would merge them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from yoloqat.core.errors import DataError


@dataclass
class InstancesReport:
    """What :func:`check_instances` found that is not an error."""

    #: index in ``images`` of each image id
    image_index: dict[int, int] = field(default_factory=dict)
    #: ``annotations`` indices whose ``image_id`` names no image
    orphans: list[int] = field(default_factory=list)
    #: ``annotations`` indices whose ``id`` an earlier annotation already has
    duplicate_annotation_ids: list[int] = field(default_factory=list)

    def warnings(self, path: Path, annotations: list[dict]) -> list[str]:
        """One line per kind of problem, with the count and the first record."""
        out = []
        if self.orphans:
            k = self.orphans[0]
            out.append(
                f"{path}: {len(self.orphans)} annotation(s) name an image_id that no image has "
                f"(first: annotations[{k}], id {annotations[k].get('id')!r}, image_id "
                f"{annotations[k].get('image_id')!r}); they are ignored"
            )
        if self.duplicate_annotation_ids:
            k = self.duplicate_annotation_ids[0]
            out.append(
                f"{path}: {len(self.duplicate_annotation_ids)} annotation(s) reuse the id of an "
                f"earlier one (first: annotations[{k}], id {annotations[k].get('id')!r}); yoloqat "
                "keeps both, other COCO tools would merge them"
            )
        return out


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (``true``/``false`` are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> TypeGuard[float]:
    """A JSON number (not a string, null or boolean); NaN and inf count as numbers."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type(value: Any) -> str:
    return {str: "a string", bool: "a boolean", type(None): "null", list: "a list"}.get(
        type(value), type(value).__name__
    )


def _got(value: Any) -> str:
    return f"{value!r} ({_type(value)})"


def _list(data: dict, key: str, path: Path, *, required: bool) -> list:
    value = data.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        state = "no" if key not in data else f"a {_type(data[key])} as its"
        raise DataError(
            f"{path} has {state} '{key}' list",
            hint="a COCO instances file holds 'images', 'annotations' and 'categories' lists",
        )
    return value


def _record(items: list, i: int, name: str, path: Path) -> dict:
    rec = items[i]
    if not isinstance(rec, dict):
        raise DataError(f"{path}: {name}[{i}] is {_got(rec)}, expected an object")
    return rec


def _check_categories(data: dict, path: Path) -> set[int]:
    cats = _list(data, "categories", path, required=True)
    seen: dict[int, int] = {}
    for c in range(len(cats)):
        rec = _record(cats, c, "categories", path)
        cid = rec.get("id")
        if not is_int(cid):
            raise DataError(f"{path}: categories[{c}]: 'id' is {_got(cid)}, expected an integer")
        if cid in seen:
            raise DataError(
                f"{path}: categories[{seen[cid]}] and categories[{c}] have the same id {cid}",
                hint="each category needs its own id",
            )
        seen[cid] = c
    return set(seen)


def _check_images(data: dict, path: Path, report: InstancesReport) -> None:
    images = _list(data, "images", path, required=True)
    names: dict[str, int] = {}
    for i in range(len(images)):
        rec = _record(images, i, "images", path)
        iid = rec.get("id")
        if not is_int(iid):
            raise DataError(
                f"{path}: images[{i}]: 'id' is {_got(iid)}, expected an integer",
                hint="annotations refer to images by this integer id",
            )
        if iid in report.image_index:
            j = report.image_index[iid]
            raise DataError(
                f"{path}: images[{j}] ({images[j].get('file_name')!r}) and images[{i}] "
                f"({rec.get('file_name')!r}) have the same id {iid}",
                hint="each image needs its own id; their boxes could not be told apart",
            )
        report.image_index[iid] = i
        name = rec.get("file_name")
        if not isinstance(name, str) or not name:
            raise DataError(f"{path}: image id {iid} (images[{i}]) has no 'file_name'")
        if name in names:
            raise DataError(
                f"{path}: images[{names[name]}] and images[{i}] (id {iid}) name the same "
                f"file_name {name!r}",
                hint="each image file must be listed once",
            )
        names[name] = i
        for key in ("width", "height"):
            value = rec.get(key)
            if value is None and key not in rec:
                continue
            if not is_number(value) or not math.isfinite(value) or value < 0:
                raise DataError(
                    f"{path}: image id {iid} (images[{i}]): '{key}' is {_got(value)}, expected "
                    "a number of pixels"
                )


def _check_annotation(
    rec: dict, k: int, path: Path, categories: set[int], report: InstancesReport
) -> None:
    aid = rec.get("id")
    where = f"{path}: annotation id {aid} (annotations[{k}])"
    if not is_int(aid):
        raise DataError(f"{path}: annotations[{k}]: 'id' is {_got(aid)}, expected an integer")
    image_id = rec.get("image_id")
    if not is_int(image_id):
        raise DataError(
            f"{where}: 'image_id' is {_got(image_id)}, expected the integer id of an image",
        )
    if image_id not in report.image_index:
        report.orphans.append(k)
    bbox = rec.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(is_number(v) for v in bbox):
        raise DataError(
            f"{where} has no valid 'bbox' (expected [x, y, w, h] of numbers, got {bbox!r})"
        )
    category = rec.get("category_id")
    if not is_int(category) or category not in categories:
        shown = sorted(categories)[:10]
        raise DataError(
            f"{where} has category_id {category!r}, which is not in the file's categories",
            hint=f"known category ids: {shown}{' ...' if len(categories) > 10 else ''}",
        )
    crowd = rec.get("iscrowd", 0)
    if crowd not in (0, 1) or not isinstance(crowd, (int, bool)):
        raise DataError(f"{where}: 'iscrowd' is {_got(crowd)}, expected 0 or 1")
    if "area" in rec and not is_number(rec["area"]):
        raise DataError(f"{where}: 'area' is {_got(rec['area'])}, expected a number")


def check_instances(data: Any, path: Path) -> InstancesReport:
    """Check a parsed instances file; raise a DataError at the first real problem."""
    if not isinstance(data, dict):
        raise DataError(
            f"{path} is not a COCO instances file: the top level is {_type(data)}, not an object"
        )
    report = InstancesReport()
    categories = _check_categories(data, path)
    _check_images(data, path, report)
    annotations = _list(data, "annotations", path, required=False)
    if not annotations:
        state = "empty" if "annotations" in data else "missing"
        raise DataError(
            f"{path} has no annotations (its 'annotations' list is {state}): nothing to train "
            "on or to score against",
            hint="check that this is the instances file of the split (not an image-info file)",
        )
    ids: set[int] = set()
    for k in range(len(annotations)):
        rec = _record(annotations, k, "annotations", path)
        _check_annotation(rec, k, path, categories, report)
        if rec["id"] in ids:
            report.duplicate_annotation_ids.append(k)
        ids.add(rec["id"])
    return report
