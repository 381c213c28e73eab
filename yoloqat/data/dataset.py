"""The object a dataset plugin returns: class list plus train/val sources."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import DataError
from yoloqat.data.coco import CocoSource, check_path, load_coco, sorted_category_ids


class DetectionDataset:
    """A COCO-format detection dataset with a training and/or a validation split (the
    :class:`~yoloqat.core.contracts.dataset.Dataset` contract).

    Paths of each configured split are checked when the dataset is built (a DataError names
    the missing one); annotation files are parsed lazily, on the first call that needs them.

    Attributes:
        name: the plugin name (``coco2014``, ``coco``).
        num_classes, class_names, category_ids: the class list; ``category_ids[i]`` is the
            original COCO category id of contiguous class index ``i`` (sorted-id order).
    """

    def __init__(
        self,
        *,
        name: str,
        train: tuple[str | Path, str | Path] | None,
        val: tuple[str | Path, str | Path] | None,
        strict: bool = True,
    ) -> None:
        self.name = name
        self._sources: dict[str, CocoSource] = {}
        self._categories: list[dict] | None = None
        self._errors: dict[str, DataError] = {}
        self._train = self._check(train, "training", "train", strict)
        self._val = self._check(val, "validation", "val", strict)
        if self._train is None and self._val is None:
            if self._errors:
                raise next(iter(self._errors.values()))
            raise DataError(f"dataset '{name}' has neither a training nor a validation split")

    def _check(
        self, split: tuple[str | Path, str | Path] | None, what: str, key: str, strict: bool
    ) -> tuple[Path, Path] | None:
        """Check a split's paths. Non-strict: a split absent as a whole is only remembered
        (its error is raised when it is asked for); a half-present split is always an error."""
        if split is None:
            return None
        images, ann = (Path(p).expanduser() for p in split)
        if not strict and not images.exists() and not ann.exists():
            self._errors[key] = DataError(
                f"{what} image folder not found: {images}",
                hint=f"the {what} split also needs {ann}",
            )
            return None
        return (
            check_path(images, f"{what} image folder", directory=True),
            check_path(ann, f"{what} annotation file", directory=False),
        )

    # -- classes -----------------------------------------------------------------------
    def _category_list(self) -> list[dict]:
        if self._categories is None:
            key = "train" if self._train is not None else "val"
            if key in self._sources:
                coco = self._sources[key].coco
            else:
                split = self._train or self._val
                assert split is not None  # __init__ requires one of the two
                coco = load_coco(split[1])
            ids = sorted_category_ids(coco)
            self._categories = [coco.cats[i] for i in ids]
        return self._categories

    @property
    def category_ids(self) -> list[int]:
        """Original category id of each contiguous class index (sorted ids)."""
        return [int(c["id"]) for c in self._category_list()]

    @property
    def class_names(self) -> list[str]:
        """Class names in class-index order."""
        return [str(c.get("name", c["id"])) for c in self._category_list()]

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self._category_list())

    def to_category_ids(self, class_index: Any) -> np.ndarray:
        """Map contiguous class indices (array-like) back to original category ids."""
        return np.asarray(self.category_ids, np.int64)[np.asarray(class_index, np.int64)]

    def to_class_index(self, category_id: Any) -> np.ndarray:
        """Map original category ids (array-like) to contiguous class indices."""
        ids = np.asarray(self.category_ids, np.int64)
        cat = np.asarray(category_id, np.int64)
        pos = np.searchsorted(ids, cat)
        bad = (pos >= len(ids)) | (ids[np.minimum(pos, len(ids) - 1)] != cat)
        if np.any(bad):
            raise DataError(f"unknown category id(s): {np.unique(cat[bad]).tolist()}")
        return pos

    # -- splits ------------------------------------------------------------------------
    def train_source(self) -> CocoSource:
        """Training images: §4.1 filter (no usable box -> dropped), crowd boxes removed."""
        if self._train is None:
            raise self._errors.get("train") or DataError(
                f"dataset '{self.name}' has no training split configured"
            )
        if "train" not in self._sources:
            self._sources["train"] = CocoSource(*self._train, training=True)
        return self._sources["train"]

    def val_source(self) -> CocoSource:
        """Validation images, unfiltered (``annotations()``: the file's ground truth)."""
        if self._val is None:
            raise self._errors.get("val") or DataError(
                f"dataset '{self.name}' has no validation split configured"
            )
        if "val" not in self._sources:
            self._sources["val"] = CocoSource(
                *self._val, category_ids=self.category_ids, training=False
            )
        return self._sources["val"]

    def __repr__(self) -> str:
        parts = [f"{k}={v[0]}" for k, v in (("train", self._train), ("val", self._val)) if v]
        return f"DetectionDataset({self.name!r}, {', '.join(parts)})"
