"""COCO "instances" sources read with pycocotools: filters, category maps, box cleaning.

A :class:`CocoSource` is an indexable list of images of one split. Boxes are cleaned once
at build time (invalid ones dropped, out-of-image ones clipped, both counted) and kept in
flat NumPy arrays, so a source is cheap to pickle into loader workers.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core import limits
from yoloqat.core.contracts.dataset import ImageAnnotations, Sample
from yoloqat.core.errors import DataError
from yoloqat.core.events import warn
from yoloqat.data.coco_checks import InstancesReport, check_instances
from yoloqat.data.imageio import read_upright, say_orientation
from yoloqat.data.paths import inside

__all__ = [
    "CocoSource",
    "Sample",
    "check_path",
    "clean_boxes",
    "load_coco",
    "read_instances",
    "report_bad_boxes",
]


def check_path(path: str | Path, what: str, *, directory: bool) -> Path:
    """Return ``path`` as a Path, or raise DataError naming it when it does not exist."""
    p = Path(path).expanduser()
    ok = p.is_dir() if directory else p.is_file()
    if not ok:
        kind = "folder" if directory else "file"
        state = "is not a " + kind if p.exists() else "not found"
        raise DataError(f"{what} {state}: {p}", hint="check the dataset paths in the config")
    return p


def read_instances(annotation_file: Path) -> tuple[Any, InstancesReport]:
    """Read a COCO instances json (bounded), check it as written (:mod:`.coco_checks`) and
    index it with pycocotools; returns ``(COCO, report)``."""
    from pycocotools.coco import COCO

    raw = limits.read_input_bytes(
        annotation_file, "annotation", error=DataError, what="annotation file"
    )
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"annotation file is not valid JSON: {annotation_file} ({exc})") from None
    report = check_instances(data, Path(annotation_file))
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
    except (KeyError, TypeError, AssertionError) as exc:  # pragma: no cover - checked above
        raise DataError(
            f"annotation file is not a COCO instances file: {annotation_file} ({exc!r})",
            hint="it needs 'images', 'annotations' and 'categories' lists",
        ) from None
    return coco, report


def load_coco(annotation_file: Path) -> Any:
    """Parse a COCO instances json with pycocotools, after :func:`read_instances`' checks."""
    return read_instances(annotation_file)[0]


def sorted_category_ids(coco: Any) -> list[int]:
    """Category ids in ascending order: index i of this list is class i (docs/seed.md §4.1)."""
    return sorted(int(c) for c in coco.getCatIds())


def _has_usable_box(anns: list[dict]) -> bool:
    # docs/seed.md §4.1: an image is kept when some annotation (crowd included) has w > 1 and h > 1
    for a in anns:
        w, h = a["bbox"][2:4]
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 1 and h > 1:
            return True
    return False


class CocoSource:
    """Images of one COCO split with cleaned boxes; ``len(src)`` and ``src.load(i)``."""

    def __init__(
        self,
        image_dir: str | Path,
        annotation_file: str | Path,
        *,
        category_ids: list[int] | None = None,
        training: bool = False,
    ) -> None:
        self.image_dir = check_path(image_dir, "image folder", directory=True)
        self.annotation_file = check_path(annotation_file, "annotation file", directory=False)
        self.training = training
        #: where the annotations come from (named in integrity errors)
        self.origin = str(self.annotation_file)
        coco, report = read_instances(self.annotation_file)
        self._coco = coco
        own_ids = sorted_category_ids(coco)
        self.category_ids = list(own_ids if category_ids is None else category_ids)
        self._check_categories(own_ids)
        self._report(report)
        self._build(coco, report)

    # -- construction -------------------------------------------------------------------
    def _check_categories(self, own_ids: list[int]) -> None:
        missing = set(own_ids) - set(self.category_ids)
        if missing:
            raise DataError(
                f"{self.annotation_file} has category ids {sorted(missing)} that the training "
                "categories do not have",
                hint="train and val annotation files must share one category list",
            )

    def _report(self, report: InstancesReport) -> None:
        """Warn about what the file holds that is ignored (an error under --strict-data)."""
        annotations = self._coco.dataset.get("annotations", [])
        for line in report.warnings(self.annotation_file, annotations):
            if limits.strict_data():
                raise DataError(line, hint="--strict-data makes this an error")
            warn(line)

    def _build(self, coco: Any, report: InstancesReport) -> None:
        index = {cid: i for i, cid in enumerate(self.category_ids)}
        ids = sorted(int(i) for i in coco.imgs)
        file_names, sizes, offsets, rows = [], [], [0], []
        self.bad_boxes = {"dropped": 0, "clipped": 0}
        self.filtered_out = 0
        bad_dropped, bad_clipped = [], []
        kept_ids = []
        for img_id in ids:
            anns = coco.imgToAnns.get(img_id, [])
            if self.training and not _has_usable_box(anns):
                self.filtered_out += 1
                continue
            info = coco.imgs[img_id]
            i = report.image_index[img_id]
            inside(
                self.image_dir,
                info["file_name"],
                where=f"{self.annotation_file}: image id {img_id} (images[{i}]) 'file_name'",
            )
            w, h = float(info.get("width", 0) or 0), float(info.get("height", 0) or 0)
            plain = [a for a in anns if not a.get("iscrowd", 0)]
            box = np.array([a["bbox"][:4] for a in plain], np.float64).reshape(-1, 4)
            cls = np.array([index[a["category_id"]] for a in plain], np.float64)
            box, cls, n_drop, n_clip = clean_boxes(box, cls, w, h)
            bad_dropped.append(n_drop)
            bad_clipped.append(n_clip)
            rows.append(np.concatenate([box, cls[:, None]], axis=1).astype(np.float32))
            offsets.append(offsets[-1] + len(box))
            kept_ids.append(img_id)
            file_names.append(str(info["file_name"]))
            sizes.append((w, h))
        if not ids:
            raise DataError(f"{self.annotation_file} lists no images (its 'images' list is empty)")
        if not kept_ids:
            raise DataError(
                f"{self.annotation_file}: none of its {len(ids)} images has a box wider and "
                "taller than 1 px: nothing to train on",
                hint="check the 'bbox' values ([x, y, width, height] in pixels)",
            )
        self.image_ids = np.asarray(kept_ids, np.int64)
        self.file_names = file_names
        self.sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
        self._offsets = np.asarray(offsets, np.int64)
        self._boxes = np.concatenate(rows) if rows else np.zeros((0, 5), np.float32)
        self._bad = np.stack([bad_dropped, bad_clipped], 1).astype(np.int64).reshape(-1, 2)
        self.bad_boxes = {
            "dropped": int(self._bad[:, 0].sum()),
            "clipped": int(self._bad[:, 1].sum()),
        }
        report_bad_boxes(str(self.annotation_file), **self.bad_boxes)

    # -- access -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.image_ids)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_coco"] = None  # workers need only the flat arrays
        return state

    @property
    def coco(self) -> Any:
        """The pycocotools ``COCO`` object of the annotation file (re-read after pickling)."""
        if self._coco is None:
            self._coco = load_coco(self.annotation_file)
        return self._coco

    @property
    def num_classes(self) -> int:
        """Number of classes (length of :attr:`category_ids`)."""
        return len(self.category_ids)

    def image_path(self, i: int) -> Path:
        """File path of image ``i``."""
        return self.image_dir / self.file_names[i]

    def boxes(self, i: int) -> np.ndarray:
        """Cleaned boxes [K,5] (x1,y1,x2,y2,class) of image ``i`` in the annotation's pixels."""
        return self._boxes[self._offsets[i] : self._offsets[i + 1]].copy()

    def load(self, i: int) -> Sample:
        """Image ``i`` with its cleaned boxes (clipped again if the file's size differs from
        the annotation's); raises ImageReadError when the file cannot be read."""
        image, turned = read_upright(self.image_path(i), self.sizes[i])
        say_orientation(str(self.annotation_file), self.image_path(i), turned)
        h, w = image.shape[:2]
        boxes = self.boxes(i)
        jw, jh = self.sizes[i]
        if (w, h) != (jw, jh) and len(boxes):
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        bad = (int(self._bad[i, 0]), int(self._bad[i, 1]))
        return Sample(image, boxes, int(self.image_ids[i]), (w, h), bad)

    def annotations(self) -> list[ImageAnnotations]:
        """The annotation file's ground truth of every image of this source, as written
        (boxes unclipped, crowd regions and segmentation areas included, file order), so
        that evaluation scores exactly as pycocotools on the file itself."""
        coco = self.coco
        index = {cid: i for i, cid in enumerate(self.category_ids)}
        out = []
        for img_id, name, (w, h) in zip(self.image_ids.tolist(), self.file_names, self.sizes):
            anns = coco.imgToAnns.get(img_id, [])
            box = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
            area = [a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns]
            out.append(
                ImageAnnotations(
                    image_id=img_id,
                    file_name=name,
                    width=float(w),
                    height=float(h),
                    boxes=box,
                    classes=np.array([index[a["category_id"]] for a in anns], np.int64),
                    crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], bool),
                    area=np.array(area, np.float64),
                )
            )
        return out


def report_bad_boxes(origin: str, *, dropped: int, clipped: int) -> None:
    """One warning with the counts of dropped and clipped boxes; dropped boxes are an
    error under ``--strict-data``."""
    if not dropped and not clipped:
        return
    message = (
        f"{origin}: {dropped} boxes with non-positive or NaN size or outside the image "
        f"dropped, {clipped} clipped to the image"
    )
    if dropped and limits.strict_data():
        raise DataError(message, hint="--strict-data makes dropped boxes an error")
    warn(message, dropped=dropped, clipped=clipped)


def clean_boxes(
    xywh: np.ndarray, cls: np.ndarray, width: float, height: float
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """COCO xywh -> x1y1x2y2 clipped to the image; returns (boxes, classes, dropped, clipped).

    Boxes with a NaN/inf value or non-positive size are dropped; boxes reaching outside the
    image are clipped, and dropped when nothing of them is left inside.
    """
    if len(xywh) == 0:
        return np.zeros((0, 4)), np.zeros((0,)), 0, 0
    finite = np.isfinite(xywh).all(axis=1)
    good = finite & (np.nan_to_num(xywh[:, 2]) > 0) & (np.nan_to_num(xywh[:, 3]) > 0)
    box = xywh[good].copy()
    cls = cls[good]
    box[:, 2:] += box[:, :2]
    lim = np.array([width, height, width, height]) if width > 0 and height > 0 else None
    clipped = 0
    if lim is not None:
        cb = np.clip(box, 0, lim)
        changed = (np.abs(cb - box) > 1e-6).any(axis=1)
        inside = (cb[:, 2] > cb[:, 0]) & (cb[:, 3] > cb[:, 1])
        clipped = int((changed & inside).sum())
        box, cls = cb[inside], cls[inside]
    dropped = len(xywh) - len(box)
    return box, cls, dropped, clipped
