"""The dataset contract: what a ``yoloqat_datasets()`` factory returns, and its sources.

A dataset factory returns an object satisfying :class:`Dataset`: its class list and a
training and a validation :class:`DataSource`. A source is an indexable list of images;
``load(i)`` gives one :class:`Sample` (the image, its boxes with class indices, its id and
size), and ``annotations()`` gives the ground truth of every image as
:class:`ImageAnnotations`, from which evaluation builds the pycocotools ground truth itself.

Bad input, the same rules for every bundled plugin (and expected of third-party ones):

- a wrong annotation (unparseable line or field, unknown class) is a
  :class:`~yoloqat.core.errors.DataError` naming the file and the line or field, raised
  when the source is built;
- an image that cannot be read makes ``load(i)`` raise :class:`UnreadableImageError`: the
  loaders skip that image, count it (``skipped_images``) and emit a warning naming the file;
- boxes that are invalid (NaN, non-positive size, wholly outside the image) are dropped,
  boxes reaching outside the image are clipped; the source counts both per image and
  reports them in :attr:`Sample.bad_boxes` (the loaders sum them into
  ``bad_boxes_dropped`` / ``bad_boxes_clipped``);
- image paths named by annotation files stay inside the dataset's folder
  (:func:`yoloqat.data.paths.inside`), and images are read within the size and pixel
  limits (:mod:`yoloqat.core.limits`).

Whatever the plugin, :class:`CheckedDataset` runs the core integrity checks
(:func:`yoloqat.core.integrity.check_source_records`) on each source when it is first
opened: unique integer image ids, unique file names, numeric sizes and boxes, class
indices in range, at least one image and one box. A source may have an ``origin``
attribute (e.g. its annotation file), which those errors name.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, NoReturn, Protocol, runtime_checkable

import numpy as np

from yoloqat.core.errors import PluginError

__all__ = [
    "DATASET_MEMBERS",
    "SOURCE_MEMBERS",
    "CheckedDataset",
    "DataSource",
    "Dataset",
    "ImageAnnotations",
    "Sample",
    "UnreadableImageError",
    "check_classes",
    "check_dataset",
    "check_source",
]


class UnreadableImageError(Exception):
    """Raised by :meth:`DataSource.load` when an image file is missing, empty, truncated or
    not decodable. The message names the file and the reason; the loaders skip the image,
    count it and warn. Any other exception from ``load`` is a bug and stops the run."""


class Sample(NamedTuple):
    """One loaded image of a :class:`DataSource`.

    Attributes:
        image: RGB ``uint8`` array ``[H, W, 3]`` in the file's stored pixel layout.
        boxes: ``float32 [K, 5]``: ``x1, y1, x2, y2`` in pixels of ``image`` (``0 <= x1 <
            x2 <= W``), then the contiguous class index ``0 .. num_classes - 1``. The
            training targets: crowd / ignored regions are not among them.
        image_id: the id of this image in :meth:`DataSource.annotations` and in the
            COCO-json detections.
        orig_size: ``(width, height)`` of ``image``; detections are scaled back to it.
        bad_boxes: ``(dropped, clipped)``: how many annotated boxes of this image were
            dropped as invalid or clipped to the image by the source.
    """

    image: np.ndarray
    boxes: np.ndarray
    image_id: int
    orig_size: tuple[int, int]
    bad_boxes: tuple[int, int] = (0, 0)

    @property
    def classes(self) -> np.ndarray:
        """Class index of each box (``int64 [K]``)."""
        return self.boxes[:, 4].astype(np.int64)


@dataclass(frozen=True)
class ImageAnnotations:
    """Ground truth of one image, as evaluation should score it.

    Attributes:
        image_id: unique id of the image in its source (the ``image_id`` of its samples).
        file_name: the image file, relative to the source's image folder (informative).
        width, height: the image size in pixels that ``boxes`` refer to.
        boxes: ``float64 [K, 4]``: COCO ``x, y, w, h`` in pixels (top-left corner and size).
        classes: ``int64 [K]`` contiguous class indices (mapped to category ids through
            :attr:`Dataset.category_ids` when the ground truth is built).
        crowd: ``bool [K]`` or None (no such regions): ignore regions (COCO ``iscrowd``,
            VOC ``difficult``): a detection overlapping one counts neither as a hit nor as a
            false positive.
        area: ``float64 [K]`` or None: the area used for the small/medium/large split;
            None means the box area ``w * h`` (COCO files give the segmentation area).
    """

    image_id: int
    file_name: str
    width: float
    height: float
    boxes: np.ndarray
    classes: np.ndarray
    crowd: np.ndarray | None = None
    area: np.ndarray | None = None


@runtime_checkable
class DataSource(Protocol):
    """The images of one split. Must be picklable (loader workers receive a copy)."""

    def __len__(self) -> int:
        """Number of images; valid indices are ``0 .. len - 1``."""
        ...

    def load(self, index: int) -> Sample:
        """Image ``index`` with its boxes; raises :class:`UnreadableImageError` when the
        image cannot be read (skipped and counted by the loaders)."""
        ...

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` (named in warnings; read by ``demo`` for pictures)."""
        ...

    def annotations(self) -> Sequence[ImageAnnotations]:
        """Ground truth of every image of the source, one entry per image in index order
        (image ids unique); evaluation builds the pycocotools ground truth from it."""
        ...


@runtime_checkable
class Dataset(Protocol):
    """What a dataset factory returns: the class list and the train/val sources.

    Attributes are read lazily; a dataset may defer parsing until they are asked for.
    """

    @property
    def class_names(self) -> Sequence[str]:
        """Class names in class-index order (written into checkpoints, used by predict)."""
        ...

    @property
    def num_classes(self) -> int:
        """Number of classes (must equal ``model.num_classes`` for training)."""
        ...

    @property
    def category_ids(self) -> Sequence[int]:
        """Unique id written as ``category_id`` in COCO-json detections for each class
        index (e.g. COCO's original ids 1..90; ``0..n-1`` for datasets without ids)."""
        ...

    def train_source(self) -> DataSource:
        """The training split; a DataError naming what is missing when it has none."""
        ...

    def val_source(self) -> DataSource:
        """The validation split (evaluation); a DataError when it has none."""
        ...


#: Members checked by :func:`check_dataset` / :func:`check_source` (name -> what it is).
DATASET_MEMBERS = {
    "class_names": "attribute",
    "num_classes": "attribute",
    "category_ids": "attribute",
    "train_source": "method",
    "val_source": "method",
}
SOURCE_MEMBERS = {
    "__len__": "method",
    "load": "method",
    "image_path": "method",
    "annotations": "method",
}


def _missing(obj: Any, members: dict[str, str]) -> list[str]:
    bad = []
    for name, what in members.items():
        try:
            static = inspect.getattr_static(obj, name)  # no property is run
        except AttributeError:
            bad.append(f"missing {what} '{name}'")
            continue
        if what == "method" and not callable(getattr(obj, name, static)):
            bad.append(f"'{name}' is not a method")
    return bad


def _fail(problems: list[str], *, kind: str, plugin: str, name: str, cls: type) -> NoReturn:
    raise PluginError(
        f"{kind} '{name}' from plugin '{plugin}' breaks the {kind} contract: "
        f"{'; '.join(problems)} ({cls.__module__}.{cls.__qualname__})",
        hint=f"see the {kind} Protocol in yoloqat.core.contracts.dataset (docs/plugins.md)",
    )


def check_dataset(obj: Any, *, plugin: str, name: str) -> None:
    """Raise :class:`PluginError` naming the plugin and each missing :class:`Dataset`
    member of ``obj`` (checked without running properties, so nothing is parsed)."""
    problems = _missing(obj, DATASET_MEMBERS)
    if problems:
        _fail(problems, kind="dataset", plugin=plugin, name=name, cls=type(obj))


def check_classes(obj: Any, *, plugin: str, name: str) -> None:
    """Check the class list's values: as many names and unique integer ids as classes."""
    try:
        n, names, ids = obj.num_classes, list(obj.class_names), list(obj.category_ids)
    except (TypeError, ValueError) as exc:
        _fail([f"bad class list ({exc})"], kind="dataset", plugin=plugin, name=name, cls=type(obj))
    problems = []
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        problems.append(f"num_classes must be a positive int, got {n!r}")
    elif len(names) != n or len(ids) != n:
        problems.append(f"{len(names)} class_names and {len(ids)} category_ids for {n} classes")
    if not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in ids):
        problems.append(f"category_ids must be ints, got {ids[:5]!r}")
    elif len(set(int(i) for i in ids)) != len(ids):
        problems.append("category_ids are not unique")
    if problems:
        _fail(problems, kind="dataset", plugin=plugin, name=name, cls=type(obj))


def check_source(obj: Any, *, plugin: str, name: str, split: str) -> None:
    """Raise :class:`PluginError` naming the plugin, the split and each missing
    :class:`DataSource` member of ``obj`` (or a ``len`` that is not a count)."""
    problems = _missing(obj, SOURCE_MEMBERS)
    if not problems:
        size: object
        try:
            size = len(obj)
        except Exception as exc:
            size = exc
        if not isinstance(size, int) or size < 0:
            problems.append(f"len() must return a count, got {size!r}")
    if problems:
        _fail(problems, kind=f"{split} source", plugin=plugin, name=name, cls=type(obj))


class CheckedDataset:
    """A built dataset that checks its class list and its sources on first use.

    The pipeline wraps every built dataset in one, so a plugin that breaks the contract
    fails with a :class:`PluginError` naming it (exit 4) where its object is first used,
    not with an AttributeError deep inside a loader. Each source is also checked once,
    when first opened, by :func:`yoloqat.core.integrity.check_source_records` (unique
    integer image ids and file names, numeric sizes and boxes, class indices in range, at
    least one image and one box): a :class:`~yoloqat.core.errors.DataError` (exit 3)
    names the source, the image and the field. Every other attribute is the wrapped
    dataset's.
    """

    def __init__(self, dataset: Any, *, plugin: str, name: str) -> None:
        check_dataset(dataset, plugin=plugin, name=name)
        self.__dict__.update(_dataset=dataset, _plugin=plugin, _name=name, _ok=set())
        #: the :class:`~yoloqat.core.integrity.SourceSummary` of each split checked so far
        self.summaries: dict[str, Any] = {}

    @property
    def wrapped(self) -> Any:
        """The dataset object the plugin returned."""
        return self._dataset

    def _classes(self) -> None:
        if "classes" not in self._ok:
            check_classes(self._dataset, plugin=self._plugin, name=self._name)
            self._ok.add("classes")

    @property
    def class_names(self) -> list[str]:
        self._classes()
        return [str(n) for n in self._dataset.class_names]

    @property
    def num_classes(self) -> int:
        self._classes()
        return int(self._dataset.num_classes)

    @property
    def category_ids(self) -> list[int]:
        self._classes()
        return [int(i) for i in self._dataset.category_ids]

    def _source(self, split: str) -> Any:
        source = getattr(self._dataset, f"{split}_source")()
        if split not in self._ok:
            check_source(source, plugin=self._plugin, name=self._name, split=split)
            from yoloqat.core.integrity import check_source_records, describe

            self.summaries[split] = check_source_records(
                source, num_classes=self.num_classes, where=describe(source, split, self._name)
            )
            self._ok.add(split)
        return source

    def train_source(self) -> Any:
        return self._source("train")

    def val_source(self) -> Any:
        return self._source("val")

    def __getattr__(self, attr: str) -> Any:
        dataset = self.__dict__.get("_dataset")
        if dataset is None:
            raise AttributeError(attr)
        return getattr(dataset, attr)

    def __repr__(self) -> str:
        return repr(self._dataset)
