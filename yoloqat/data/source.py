"""Shared machinery for dataset plugins whose annotations are per-image box lists.

:class:`BoxSource` implements the :class:`~yoloqat.core.contracts.dataset.DataSource`
contract over images listed by path with boxes parsed by a plugin (YOLO txt, VOC XML);
:class:`ClassListDataset` implements :class:`~yoloqat.core.contracts.dataset.Dataset`
around two lazily built sources. Boxes are cleaned when the source is built, with the same
rules as the COCO sources (:func:`yoloqat.data.coco.clean_boxes`): invalid ones dropped,
out-of-image ones clipped, both counted per image and summed in one warning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.contracts.dataset import ImageAnnotations, Sample
from yoloqat.core.errors import DataError
from yoloqat.data.coco import clean_boxes, report_bad_boxes
from yoloqat.data.imageio import image_size, read_upright, say_orientation

#: Image file suffixes the folder-based plugins pick up (lower case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_ids_for(stems: Sequence[str]) -> list[int]:
    """Integer file stems when every stem is one and they are unique (COCO's
    ``000000000009.jpg`` -> 9), else 1, 2, ... in the given order."""
    if stems and all(s.isdigit() for s in stems) and len({int(s) for s in stems}) == len(stems):
        return [int(s) for s in stems]
    return list(range(1, len(stems) + 1))


class BoxRows:
    """Collects cleaned boxes image by image (input of :class:`BoxSource`)."""

    def __init__(self) -> None:
        self.boxes: list[np.ndarray] = []
        self.classes: list[np.ndarray] = []
        self.ignore: list[np.ndarray] = []
        self.bad: list[tuple[int, int]] = []

    def add(
        self,
        xywh: np.ndarray,
        classes: np.ndarray,
        width: float,
        height: float,
        ignore: np.ndarray | None = None,
    ) -> None:
        """Clean one image's boxes (``x, y, w, h``; normalised when width = height = 1)."""
        xywh = np.asarray(xywh, np.float64).reshape(-1, 4)
        order = np.arange(len(xywh), dtype=np.float64)
        box, kept, dropped, clipped = clean_boxes(xywh, order, width, height)
        kept = kept.astype(np.int64)
        flags = np.zeros(len(xywh), bool) if ignore is None else np.asarray(ignore, bool)
        self.boxes.append(np.asarray(box, np.float64).reshape(-1, 4))
        self.classes.append(np.asarray(classes, np.int64)[kept])
        self.ignore.append(flags[kept])
        self.bad.append((dropped, clipped))


class BoxSource:
    """Images of one split with cleaned boxes: ``len(src)``, ``load(i)``, ``annotations()``.

    Boxes are ``x1, y1, x2, y2`` in pixels of the annotation's image size (``sizes``), or
    normalised to ``[0, 1]`` (``sizes`` None: the size is the decoded image's, and
    :meth:`annotations` reads it from the file header). Boxes flagged ``ignore`` (VOC
    ``difficult``) are no training targets and are crowd regions in the ground truth.
    """

    def __init__(
        self,
        *,
        paths: Sequence[Path],
        image_ids: Sequence[int],
        rows: BoxRows,
        sizes: Sequence[tuple[float, float]] | None,
        origin: str,
        root: Path,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.root = Path(root)
        #: where the annotations come from (named in integrity errors)
        self.origin = origin
        self.image_ids = np.asarray(image_ids, np.int64)
        self.normalized = sizes is None
        self.sizes = None if sizes is None else np.asarray(sizes, np.float64).reshape(-1, 2)
        counts = [len(b) for b in rows.boxes]
        self._offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._boxes = np.concatenate(rows.boxes) if counts else np.zeros((0, 4))
        self._classes = np.concatenate(rows.classes) if counts else np.zeros(0, np.int64)
        self._ignore = np.concatenate(rows.ignore) if counts else np.zeros(0, bool)
        self._bad = np.asarray(rows.bad, np.int64).reshape(-1, 2)
        self._header_sizes: list[tuple[float, float]] | None = None
        self.bad_boxes = {
            "dropped": int(self._bad[:, 0].sum()),
            "clipped": int(self._bad[:, 1].sum()),
        }
        report_bad_boxes(origin, **self.bad_boxes)

    def __len__(self) -> int:
        return len(self.paths)

    def image_path(self, index: int) -> Path:
        """File path of image ``index``."""
        return self.paths[index]

    def _rows(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a, b = self._offsets[i], self._offsets[i + 1]
        return self._boxes[a:b].copy(), self._classes[a:b], self._ignore[a:b]

    def load(self, index: int) -> Sample:
        """Image ``index`` with its training boxes; raises ImageReadError when unreadable."""
        size = None if self.sizes is None else tuple(self.sizes[index])
        image, turned = read_upright(self.paths[index], size)
        say_orientation(str(self.root), self.paths[index], turned)
        h, w = image.shape[:2]
        box, cls, ignore = self._rows(index)
        box, cls = box[~ignore], cls[~ignore]
        if self.normalized:
            box *= np.array([w, h, w, h], np.float64)
        elif self.sizes is not None and tuple(self.sizes[index]) != (w, h) and len(box):
            box = np.clip(box, 0, [w, h, w, h])
            ok = (box[:, 2] > box[:, 0]) & (box[:, 3] > box[:, 1])
            box, cls = box[ok], cls[ok]
        rows = np.concatenate([box, cls[:, None].astype(np.float64)], axis=1).astype(np.float32)
        bad = (int(self._bad[index, 0]), int(self._bad[index, 1]))
        return Sample(image, rows, int(self.image_ids[index]), (w, h), bad)

    def _image_sizes(self) -> list[tuple[float, float]]:
        if self.sizes is not None:
            return [(float(w), float(h)) for w, h in self.sizes]
        if self._header_sizes is None:
            # an unreadable image (skipped by the loaders anyway) has the size 0 x 0
            self._header_sizes = [image_size(path) or (0.0, 0.0) for path in self.paths]
        return self._header_sizes

    def annotations(self) -> list[ImageAnnotations]:
        """Every image's cleaned boxes in pixels, ``ignore`` boxes as crowd regions."""
        out = []
        for i, (w, h) in enumerate(self._image_sizes()):
            box, cls, ignore = self._rows(i)
            if self.normalized:
                box *= np.array([w, h, w, h], np.float64)
            xywh = np.concatenate([box[:, :2], box[:, 2:] - box[:, :2]], axis=1)
            out.append(
                ImageAnnotations(
                    image_id=int(self.image_ids[i]),
                    file_name=_relative(self.paths[i], self.root),
                    width=w,
                    height=h,
                    boxes=xywh,
                    classes=cls.copy(),
                    crowd=ignore.copy(),
                )
            )
        return out


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


class ClassListDataset:
    """A dataset of a fixed class list and lazily built train/val sources.

    Attributes:
        name: the plugin name; class_names, num_classes, category_ids: the class list
        (``category_ids[i]`` is written as the COCO-json ``category_id`` of class ``i``).
    """

    def __init__(
        self,
        *,
        name: str,
        class_names: Sequence[str],
        category_ids: Sequence[int] | None,
        train: Callable[[], Any] | None,
        val: Callable[[], Any] | None,
        describe: dict[str, str],
    ) -> None:
        self.name = name
        self.class_names = [str(n) for n in class_names]
        self.num_classes = len(self.class_names)
        ids = list(range(self.num_classes)) if category_ids is None else list(category_ids)
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise DataError(f"{name}: category_ids must be integers, got {ids[:5]!r}")
        if len(ids) != self.num_classes or len(set(ids)) != len(ids):
            raise DataError(
                f"{name}: category_ids must be {self.num_classes} unique ints (one per class), "
                f"got {len(ids)}"
            )
        self.category_ids = [int(i) for i in ids]
        self._builders = {"train": train, "val": val}
        self._sources: dict[str, Any] = {}
        self._describe = describe

    def _source(self, split: str) -> Any:
        if split not in self._sources:
            build = self._builders[split]
            if build is None:
                raise DataError(f"dataset '{self.name}' has no {split} split configured")
            self._sources[split] = build()
        return self._sources[split]

    def train_source(self) -> BoxSource:
        """The training split (built on first call)."""
        return self._source("train")

    def val_source(self) -> BoxSource:
        """The validation split (built on first call)."""
        return self._source("val")

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v}" for k, v in self._describe.items())
        return f"{type(self).__name__}({self.name!r}, {parts})"
