"""COCO-style evaluation of decoded outputs (docs/seed.md §5): candidates, NMS, pycocotools.

Family-agnostic: every head's decode gives ``(boxes, scores)`` (boxes ``[B, M, 4]``
normalised ``cx, cy, w, h``, scores ``[B, M, C]`` in [0, 1]). Pure NumPy (plus pycocotools,
imported when evaluating). Typical use::

    engine = DetectionEngine(coco.getCatIds())
    for (boxes, scores), image_ids, sizes in batches:
        engine.add_batch((boxes, scores), image_ids, sizes)  # sizes: original (w, h)
    result = engine.evaluate(coco)                   # result.stats["AP"], result.summary
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import ConfigError, DataError
from yoloqat.core.nms import nms

__all__ = ["STAT_NAMES", "BoxTransform", "DetectionEngine", "EvalResult", "nms"]

#: Names of pycocotools' 12 summary numbers, in its order.
STAT_NAMES = (
    "AP",
    "AP50",
    "AP75",
    "AP_small",
    "AP_medium",
    "AP_large",
    "AR1",
    "AR10",
    "AR100",
    "AR_small",
    "AR_medium",
    "AR_large",
)

#: Score threshold of the report's confusion matrix when there is no best-F1 threshold (no
#: ground truth), as Ultralytics' fixed one: the evaluation's own (0.001 by default, for AP)
#: would fill the matrix with background detections.
CONFUSION_CONF = 0.25

#: Maps one image's normalised (cx, cy, w, h) [n, 4] to centre-format original pixels [n, 4].
BoxTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    """pycocotools' 12 numbers by name, its printed summary, and what was evaluated.

    ``per_class``: one dict per class with ground truth among the images evaluated, in
    class order: ``class`` (index), ``name``, ``category_id``, ``images`` and ``instances``
    (its non-crowd boxes), ``AP`` and ``AP50`` (pycocotools' own per-category numbers:
    their mean over these classes is ``stats["AP"]`` / ``stats["AP50"]``) and, with
    details, ``P``, ``R`` and ``F1`` at the best-F1 score threshold (``best_f1``).
    ``curves`` (the IoU-0.5 precision-recall curve of each class, and P/R/F1 against the
    score threshold) and ``confusion`` (the confusion matrix) come with details too.
    ``speed``: milliseconds per image of each stage (preprocess, inference, postprocess).
    """

    stats: dict[str, float]
    summary: str
    num_detections: int
    num_images: int
    extra: dict[str, Any] = field(default_factory=dict)
    per_class: list[dict[str, Any]] = field(default_factory=list)
    best_f1: dict[str, float] | None = None
    curves: dict[str, Any] | None = None
    confusion: dict[str, Any] | None = None
    speed: dict[str, float] = field(default_factory=dict)

    @property
    def ap(self) -> float:
        """COCO AP@[.50:.95] (the headline number)."""
        return self.stats["AP"]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-able)."""
        out: dict[str, Any] = {
            "stats": dict(self.stats),
            "summary": self.summary,
            "num_detections": self.num_detections,
            "num_images": self.num_images,
            **self.extra,
            "per_class": [dict(row) for row in self.per_class],
        }
        for key in ("best_f1", "speed", "confusion"):
            value = getattr(self, key)
            if value:
                out[key if key != "confusion" else "confusion_matrix"] = _plain(value)
        if self.curves:
            out["curves"] = _plain(_curves_summary(self.curves))
        return out

    def to_json(self) -> str:
        """One JSON object (stats, summary, counts, per-class numbers, ...)."""
        return json.dumps(self.to_dict())


def _curves_summary(curves: dict[str, Any]) -> dict[str, Any]:
    """The curves as saved: each class's IoU-0.5 precision at the 101 recall points, and the
    mean P, R and F1 over the classes at the score thresholds 0, 0.01, ..., 1."""
    step = max(1, (len(curves["confidence"]) - 1) // 100)
    mean = {k: np.asarray(curves[k]).mean(axis=0)[::step] for k in ("P", "R", "F1")}
    if not curves["names"]:
        mean = {k: [] for k in mean}
    return {
        "iou": curves["iou"],
        "recall": curves["recall"],
        "precision": curves["precision"],
        "confidence": np.asarray(curves["confidence"])[::step],
        "mean_by_confidence": mean,
    }


def _plain(value: Any) -> Any:
    """``value`` with NumPy arrays and scalars as lists and Python numbers (floats to 6
    significant digits: curves are for plotting)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            return [_plain(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    return value


def candidates(
    scores: np.ndarray, threshold: float, multi_label: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, class indices and scores (float64) of one image's candidates: its ``scores``
    ``[M, C]`` at or above ``threshold``, the best class of each row (every such class with
    ``multi_label``)."""
    scores = np.asarray(scores).astype(np.float64)
    if multi_label:
        rows, classes = np.nonzero(scores >= threshold)
        return rows, classes, scores[rows, classes]
    classes = np.argmax(scores, axis=1)
    best = scores[np.arange(len(scores)), classes]
    rows = np.nonzero(best >= threshold)[0]
    return rows, classes[rows], best[rows]


class DetectionEngine:
    """Turns decoded network outputs into COCO detections and evaluates them (docs/seed.md §5).

    Parameters:
        category_ids: COCO category id of each contiguous class index (``coco.getCatIds()``).
        score_threshold: keep candidates scoring at least this (seed: 0.001; for YOLO the
            score is ``objectness * class probability``).
        nms_threshold: per-class NMS drops boxes with IoU > this to a kept box (seed: 0.5).
        multi_label: emit every class passing the threshold instead of the argmax class only.
    """

    def __init__(
        self,
        category_ids: Sequence[int],
        *,
        score_threshold: float = 0.001,
        nms_threshold: float = 0.5,
        multi_label: bool = False,
    ) -> None:
        if len(category_ids) == 0:
            raise ConfigError("DetectionEngine needs at least one category id")
        if not 0.0 <= score_threshold <= 1.0:
            raise ConfigError(f"score_threshold must be in [0, 1], got {score_threshold!r}")
        if not 0.0 < nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold must be in (0, 1], got {nms_threshold!r}")
        self.category_ids = np.asarray([int(c) for c in category_ids], dtype=np.int64)
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.multi_label = bool(multi_label)
        self.reset()

    def reset(self) -> None:
        """Forget every detection and image seen so far."""
        self._image_ids: list[np.ndarray] = []
        self._category: list[np.ndarray] = []
        self._boxes: list[np.ndarray] = []
        self._scores: list[np.ndarray] = []
        self._seen: set[int] = set()

    def _candidates(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, class indices and scores of one image's candidates (``scores`` [M, C])."""
        return candidates(scores, self.score_threshold, self.multi_label)

    def add_batch(
        self,
        outputs: Sequence[np.ndarray],
        image_ids: Sequence[int],
        orig_sizes: Sequence[Sequence[float]] | np.ndarray,
        *,
        box_transforms: Sequence[BoxTransform] | None = None,
    ) -> None:
        """Add one batch of decoded outputs ``(boxes [B, M, 4], scores [B, M, C])`` (boxes
        normalised ``cx, cy, w, h``; any further arrays are ignored).

        ``orig_sizes`` holds each image's original (w, h). Boxes are scaled by it (the seed's
        plain stretch); ``box_transforms`` (one per image) replaces that mapping, e.g. to undo a
        letterbox: it gets normalised (cx, cy, w, h) [n, 4] and returns original-pixel ones.
        """
        sizes = np.asarray(orig_sizes, dtype=np.float64).reshape(-1, 2)
        batch = len(image_ids)
        boxes, scores = check_outputs(outputs, batch, len(self.category_ids))
        if len(sizes) != batch or (box_transforms is not None and len(box_transforms) != batch):
            raise DataError(f"add_batch got {batch} image ids but {len(sizes)} sizes/transforms")
        for b in range(batch):
            image_id = int(image_ids[b])
            self._seen.add(image_id)
            rows, classes, kept = self._candidates(scores[b])
            norm = boxes[b, rows].astype(np.float64)
            width, height = sizes[b]
            if box_transforms is not None:
                cxcywh = np.asarray(box_transforms[b](norm), dtype=np.float64).reshape(-1, 4)
            else:
                cxcywh = norm * np.array([width, height, width, height])
            # The seed's clamp: left/top >= 0, w <= image w, h <= image h (no right clip).
            xywh = np.empty_like(cxcywh)
            xywh[:, 0] = np.maximum(cxcywh[:, 0] - cxcywh[:, 2] / 2.0, 0.0)
            xywh[:, 1] = np.maximum(cxcywh[:, 1] - cxcywh[:, 3] / 2.0, 0.0)
            xywh[:, 2] = np.minimum(cxcywh[:, 2], width)
            xywh[:, 3] = np.minimum(cxcywh[:, 3], height)
            keep = nms(xywh, kept, classes, self.nms_threshold)
            self._image_ids.append(np.full(len(keep), image_id, dtype=np.int64))
            self._category.append(self.category_ids[classes[keep]])
            self._boxes.append(xywh[keep])
            self._scores.append(kept[keep])

    def extend(
        self, detections: Iterable[dict[str, Any]], *, image_ids: Iterable[int] = ()
    ) -> None:
        """Add detections already in COCO result form (e.g. another rank's JSON).

        ``image_ids`` names images that were processed, including those without detections,
        so that the default evaluation covers them.
        """
        self._seen.update(int(i) for i in image_ids)
        dets = list(detections)
        try:
            ids = np.asarray([int(d["image_id"]) for d in dets], dtype=np.int64)
            cats = np.asarray([int(d["category_id"]) for d in dets], dtype=np.int64)
            boxes = np.asarray([d["bbox"] for d in dets], dtype=np.float64).reshape(-1, 4)
            scores = np.asarray([float(d["score"]) for d in dets], dtype=np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                "detections need image_id, category_id, bbox [x, y, w, h] and score: "
                f"{exc.__class__.__name__}: {exc}"
            ) from None
        self._seen.update(ids.tolist())
        self._image_ids.append(ids)
        self._category.append(cats)
        self._boxes.append(boxes)
        self._scores.append(scores)

    @property
    def image_ids(self) -> list[int]:
        """Sorted ids of every image seen (with or without detections)."""
        return sorted(self._seen)

    def results(self) -> list[dict[str, Any]]:
        """Every kept detection as a COCO result dict (image_id, category_id, bbox, score)."""
        if not self._scores:
            return []
        ids = np.concatenate(self._image_ids).tolist()
        cats = np.concatenate(self._category).tolist()
        boxes = np.concatenate(self._boxes).tolist()
        scores = np.concatenate(self._scores).tolist()
        return [
            {"image_id": i, "category_id": c, "bbox": b, "score": s}
            for i, c, b, s in zip(ids, cats, boxes, scores)
        ]

    def write_json(self, path: str | Path) -> Path:
        """Write :meth:`results` as a COCO results JSON file; returns its path."""
        from yoloqat.core.atomic import write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_text(path, json.dumps(self.results()))

    def evaluate(
        self,
        coco_gt: Any,
        *,
        image_ids: Iterable[int] | None = None,
        class_names: Sequence[str] | None = None,
        details: bool = False,
        confusion_conf: float | None = None,
    ) -> EvalResult:
        """COCO bbox evaluation against ``coco_gt`` (a ``pycocotools.coco.COCO``).

        Evaluates ``image_ids`` if given, else every image seen by this engine, else every
        image of ``coco_gt``. With no detections at all every AP/AR is 0. The result's
        ``per_class`` names class ``i`` ``class_names[i]`` (default: its category id).
        ``details`` adds P/R/F1 at the best-F1 threshold, the curves and the confusion
        matrix for reports (training-time validation goes without). The matrix is taken at
        IoU 0.5 and score ``confusion_conf``, by default the best-F1 threshold (the P and R
        of the per-class table; :data:`CONFUSION_CONF` without ground truth), never below
        the engine's own threshold.
        """
        from pycocotools.cocoeval import COCOeval

        dets = self.results()
        gt_images = set(coco_gt.getImgIds())
        unknown = sorted({d["image_id"] for d in dets} - gt_images)
        if unknown:
            raise DataError(
                f"{len(unknown)} detected image ids are not in the annotation file "
                f"(first: {unknown[0]}): wrong annotation file for these images?"
            )
        ids = sorted(image_ids) if image_ids is not None else (self.image_ids or None)
        log = io.StringIO()
        with contextlib.redirect_stdout(log):
            coco_dt = coco_gt.loadRes(dets) if dets else _empty_results(coco_gt)
            evaluator = COCOeval(coco_gt, coco_dt, "bbox")
            if ids is not None:
                evaluator.params.imgIds = ids
            evaluator.evaluate()
            evaluator.accumulate()
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            evaluator.summarize()
        stats = {name: float(v) for name, v in zip(STAT_NAMES, evaluator.stats)}
        result = EvalResult(
            stats=stats,
            summary=text.getvalue().rstrip("\n"),
            num_detections=len(dets),
            num_images=len(evaluator.params.imgIds),
        )
        names = [str(n) for n in class_names] if class_names is not None else None
        if names is not None and len(names) != len(self.category_ids):
            raise DataError(f"{len(names)} class names for {len(self.category_ids)} category ids")
        from yoloqat.core.eval_metrics import class_table

        table = class_table(
            evaluator,
            self.category_ids.tolist(),
            names,
            details=details,
            min_conf=self.score_threshold,
        )
        result.per_class, result.best_f1, result.curves = table
        if details:
            from yoloqat.core.eval_metrics import confusion_matrix

            if confusion_conf is None:
                best = result.best_f1
                confusion_conf = (
                    best["conf"] if best is not None and result.per_class else CONFUSION_CONF
                )
            conf = max(float(confusion_conf), self.score_threshold)
            labels = names or [str(c) for c in self.category_ids]
            result.confusion = {
                "conf": conf,
                "iou": 0.5,
                "labels": [*labels, "background"],
                "rows": "predicted",
                "columns": "true",
                "counts": confusion_matrix(
                    dets,
                    coco_gt,
                    list(evaluator.params.imgIds),
                    self.category_ids.tolist(),
                    conf=conf,
                    iou=0.5,
                ),
            }
        return result


def check_outputs(
    outputs: Sequence[np.ndarray], batch: int, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(boxes [B, M, 4], scores [B, M, C])`` of a model's decoded outputs, or a DataError
    saying what is wrong with them (a model of another format, another class count)."""
    arrays = [np.asarray(o) for o in outputs]
    shapes = [list(a.shape) for a in arrays]
    if len(arrays) < 2:
        raise DataError(
            f"the model gave {len(arrays)} output(s) {shapes}; expected boxes [B, M, 4] and "
            "scores [B, M, C]",
            hint="an ONNX file must be exported by this yoloqat version (yoloqat export)",
        )
    boxes, scores = arrays[0], arrays[1]
    if (
        boxes.ndim != 3
        or scores.ndim != 3
        or boxes.shape[-1] != 4
        or boxes.shape[:2] != scores.shape[:2]
        or boxes.shape[0] != batch
    ):
        raise DataError(
            f"the model's outputs have shapes {shapes[0]} and {shapes[1]}; expected boxes "
            f"[{batch}, M, 4] and scores [{batch}, M, C] for a batch of {batch}",
            hint="an ONNX file must be exported by this yoloqat version (yoloqat export)",
        )
    if scores.shape[-1] != num_classes:
        raise DataError(
            f"the model scores {scores.shape[-1]} classes but the dataset has {num_classes} "
            "categories",
            hint="evaluate it on the data it was trained for (or retrain with "
            f"model.num_classes={num_classes})",
        )
    return boxes, scores


def _empty_results(coco_gt: Any) -> Any:
    """A results COCO with no annotations (``loadRes`` refuses an empty list)."""
    from pycocotools.coco import COCO

    res = COCO()
    res.dataset = {
        "images": list(coco_gt.dataset.get("images", [])),
        "categories": list(coco_gt.dataset.get("categories", [])),
        "annotations": [],
    }
    res.createIndex()
    return res
