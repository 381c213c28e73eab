"""What an evaluation report shows beyond pycocotools' 12 numbers, from pycocotools' own state.

- :func:`per_class_ap`: AP and AP50 of each category from ``COCOeval.eval["precision"]``
  (area "all", 100 detections per image), the numbers ``summarize`` averages: their mean
  over the categories with ground truth is the summary AP (AP50) itself.
- :func:`pr_vs_confidence`: precision and recall of each category as functions of the
  score threshold at IoU 0.5, from pycocotools' own matching (``evalImgs``), and the
  threshold of the best mean F1 (as Ultralytics reports P and R).
- :func:`confusion_matrix`: class-agnostic matching at IoU 0.5 above a score threshold,
  with a background row and column (rows predicted, columns true, as Ultralytics).

Pure NumPy on pycocotools' structures; nothing here knows a detector family.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ConfidenceCurves",
    "class_table",
    "confusion_matrix",
    "ground_truth_counts",
    "per_class_ap",
    "pr_vs_confidence",
]

#: Score thresholds the P/R/F1 curves are sampled at (0.001 apart; Ultralytics takes 1000
#: points in [0, 1]): every 10th is a multiple of 0.01.
CONFIDENCES = np.linspace(0.0, 1.0, 1001)


def _indices(evaluator: Any) -> tuple[int, int, int]:
    """Indices of IoU 0.5, area "all" and the largest maxDets in ``evaluator``'s arrays."""
    p = evaluator.params
    t50 = int(np.argmin(np.abs(np.asarray(p.iouThrs) - 0.5)))
    area = list(p.areaRngLbl).index("all")
    return t50, area, len(p.maxDets) - 1


def per_class_ap(evaluator: Any) -> dict[int, dict[str, Any]]:
    """``{category id: {"AP", "AP50", "pr_curve"}}`` of an accumulated ``COCOeval``.

    ``AP`` averages the category's precision over the 10 IoU thresholds and 101 recall
    points (area all, 100 detections), ``AP50`` over the recall points at IoU 0.5,
    ``pr_curve`` is that interpolated precision at the 101 recall points (the curve whose
    mean AP50 is). A category without ground truth among the images evaluated has None.
    """
    precision = evaluator.eval["precision"]  # [T, R, K, A, M], -1 where no ground truth
    t50, area, last = _indices(evaluator)
    out: dict[int, dict[str, Any]] = {}
    for k, cat in enumerate(evaluator.params.catIds):
        p = precision[:, :, k, area, last]
        if (p > -1).any():
            out[int(cat)] = {
                "AP": float(np.mean(p[p > -1])),
                "AP50": float(np.mean(p[t50][p[t50] > -1])),
                "pr_curve": p[t50].astype(np.float64),
            }
        else:
            out[int(cat)] = {"AP": None, "AP50": None, "pr_curve": None}
    return out


def ground_truth_counts(evaluator: Any) -> dict[int, tuple[int, int]]:
    """``{category id: (images, instances)}``: the boxes pycocotools scores (crowd regions
    not counted) among the images evaluated, and how many images hold one."""
    images: dict[int, int] = {}
    instances: dict[int, int] = {}
    for (_img, cat), gts in evaluator._gts.items():  # filled by COCOeval.evaluate()
        n = sum(1 for g in gts if not g.get("iscrowd", 0) and not g.get("ignore", 0))
        if n:
            images[cat] = images.get(cat, 0) + 1
            instances[cat] = instances.get(cat, 0) + n
    return {int(c): (images.get(c, 0), instances.get(c, 0)) for c in evaluator.params.catIds}


@dataclass
class ConfidenceCurves:
    """Precision, recall and F1 against the score threshold at IoU 0.5.

    ``precision``/``recall``/``f1``: ``[K, len(confidence)]`` for the categories
    ``category_ids`` (those with ground truth); ``best``: the index of the threshold whose
    mean F1 over those categories is highest (after Ultralytics' 10 % box smoothing).
    """

    category_ids: list[int]
    confidence: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best: int

    @property
    def best_confidence(self) -> float:
        """The score threshold of the best mean F1."""
        return float(self.confidence[self.best])

    def at_best(self) -> dict[int, tuple[float, float, float]]:
        """``{category id: (P, R, F1)}`` at :attr:`best_confidence`."""
        return {
            c: (
                float(self.precision[i, self.best]),
                float(self.recall[i, self.best]),
                float(self.f1[i, self.best]),
            )
            for i, c in enumerate(self.category_ids)
        }

    def mean_at_best(self) -> tuple[float, float, float]:
        """Mean P, R and F1 over the categories at :attr:`best_confidence`."""
        if not self.category_ids:
            return 0.0, 0.0, 0.0
        b = self.best
        return (
            float(self.precision[:, b].mean()),
            float(self.recall[:, b].mean()),
            float(self.f1[:, b].mean()),
        )


def _smooth(y: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Box filter over ``fraction`` of the points (odd width), edges padded (Ultralytics)."""
    width = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(width // 2)
    padded = np.concatenate((pad * y[0], y, pad * y[-1]))
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def pr_vs_confidence(evaluator: Any, min_conf: float = 0.0) -> ConfidenceCurves:
    """Per-category precision and recall at each score threshold of :data:`CONFIDENCES`,
    IoU 0.5, area all, 100 detections per image, from pycocotools' matching of an
    evaluated ``COCOeval``: the detections and hits its AP50 counts (crowd regions
    ignored), without its precision envelope. P and R at threshold ``c`` are those of
    keeping the detections scoring at least ``c`` (P is 1 when none is kept). The best
    threshold is sought from ``min_conf`` up (the evaluation's own score threshold: below
    it nothing changes)."""
    p = evaluator.params
    t50, area, _last = _indices(evaluator)
    max_det = p.maxDets[-1]
    n_img, n_area = len(p.imgIds), len(p.areaRng)
    cats, precisions, recalls = [], [], []
    for k, cat in enumerate(p.catIds):
        start = k * n_area * n_img + area * n_img
        entries = [e for e in evaluator.evalImgs[start : start + n_img] if e is not None]
        gt_ignore = np.concatenate([e["gtIgnore"] for e in entries]) if entries else []
        positives = int(np.count_nonzero(np.asarray(gt_ignore) == 0))
        if positives == 0:
            continue
        scores = np.concatenate([np.asarray(e["dtScores"][:max_det], float) for e in entries])
        matched = np.concatenate([e["dtMatches"][t50, :max_det] for e in entries]).astype(bool)
        ignored = np.concatenate([e["dtIgnore"][t50, :max_det] for e in entries]).astype(bool)
        order = np.argsort(-scores, kind="mergesort")
        scores, matched, ignored = scores[order], matched[order], ignored[order]
        keep = ~ignored
        scores, matched = scores[keep], matched[keep]
        cats.append(int(cat))
        if len(scores) == 0:
            precisions.append(np.zeros_like(CONFIDENCES))
            recalls.append(np.zeros_like(CONFIDENCES))
            continue
        # exact P and R of keeping the detections scoring >= each threshold (a step
        # function; Ultralytics interpolates linearly between detection scores)
        tp = np.cumsum(matched)
        kept = np.searchsorted(-scores, -CONFIDENCES, side="right")
        hits = np.where(kept > 0, tp[np.maximum(kept - 1, 0)], 0)
        recalls.append(hits / positives)
        precisions.append(np.where(kept > 0, hits / np.maximum(kept, 1), 1.0))
    shape = (len(cats), len(CONFIDENCES))
    precision = np.asarray(precisions).reshape(shape)
    recall = np.asarray(recalls).reshape(shape)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-16)
    first = int(np.searchsorted(CONFIDENCES, min_conf - 1e-9))
    best = first + int(_smooth(f1.mean(axis=0))[first:].argmax()) if cats else first
    return ConfidenceCurves(cats, CONFIDENCES.copy(), precision, recall, f1, best)


def class_table(
    evaluator: Any,
    category_ids: Sequence[int],
    names: Sequence[str] | None,
    *,
    details: bool,
    min_conf: float = 0.0,
) -> tuple[list[dict[str, Any]], dict[str, float] | None, dict[str, Any] | None]:
    """``(rows, best_f1, curves)`` of an accumulated ``COCOeval`` for the classes
    ``category_ids`` (class ``i`` named ``names[i]``, default its category id).

    One row per class with ground truth, in class order: ``class``, ``name``,
    ``category_id``, ``images``, ``instances``, ``AP``, ``AP50`` and, with ``details``, ``P``,
    ``R``, ``F1`` at the best-F1 threshold (sought from ``min_conf`` up). ``best_f1``
    (threshold and mean P, R, F1) and ``curves`` (each class's IoU-0.5 PR curve at the 101
    recall points; P, R, F1 against :data:`CONFIDENCES`) only with ``details``.
    """
    ap = per_class_ap(evaluator)
    counts = ground_truth_counts(evaluator)
    curves = pr_vs_confidence(evaluator, min_conf=min_conf) if details else None
    at_best = curves.at_best() if curves is not None else {}
    rows: list[dict[str, Any]] = []
    pr_curves: dict[str, np.ndarray] = {}
    for index, cat in enumerate(int(c) for c in category_ids):
        if ap.get(cat, {}).get("AP") is None:
            continue
        images, instances = counts.get(cat, (0, 0))
        row: dict[str, Any] = {
            "class": index,
            "name": str(names[index]) if names is not None else str(cat),
            "category_id": cat,
            "images": images,
            "instances": instances,
            "AP": ap[cat]["AP"],
            "AP50": ap[cat]["AP50"],
        }
        if curves is not None:
            row["P"], row["R"], row["F1"] = at_best.get(cat, (0.0, 0.0, 0.0))
            pr_curves[row["name"]] = ap[cat]["pr_curve"]
        rows.append(row)
    if curves is None:
        return rows, None, None
    p, r, f1 = curves.mean_at_best()
    best = {"conf": curves.best_confidence, "P": p, "R": r, "F1": f1}
    position = {c: i for i, c in enumerate(curves.category_ids)}
    order = [position[row["category_id"]] for row in rows]
    table_curves = {
        "iou": 0.5,
        "recall": np.asarray(evaluator.params.recThrs, dtype=np.float64),
        "precision": pr_curves,
        "confidence": curves.confidence,
        "names": [row["name"] for row in rows],
        "P": curves.precision[order],
        "R": curves.recall[order],
        "F1": curves.f1[order],
    }
    return rows, best, table_curves


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``a [N, 4]`` with ``b [M, 4]`` -> ``[N, M]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def _xyxy(xywh: Any) -> np.ndarray:
    b = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], axis=1)


def confusion_matrix(
    detections: Sequence[dict[str, Any]],
    coco_gt: Any,
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    *,
    conf: float = 0.25,
    iou: float = 0.5,
) -> np.ndarray:
    """``[C + 1, C + 1]`` counts: row = predicted class, column = true class, index ``C``
    the background (a missed object: background row; a false detection: background column).

    Per image, the detections scoring at least ``conf`` are matched one to one to the
    ground-truth boxes at IoU >= ``iou`` whatever their classes, greedily by IoU. A
    detection left unmatched that lies mostly (>= ``iou`` of its area) inside a crowd
    region is not counted, as pycocotools ignores it. ``category_ids[i]`` is class ``i``.
    """
    index = {int(c): i for i, c in enumerate(category_ids)}
    bg = len(category_ids)
    matrix = np.zeros((bg + 1, bg + 1), dtype=np.int64)
    by_image: dict[int, list[dict[str, Any]]] = {}
    for d in detections:
        if d["score"] >= conf and int(d["category_id"]) in index:
            by_image.setdefault(int(d["image_id"]), []).append(d)
    for image_id in image_ids:
        anns = coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id]))
        anns = [a for a in anns if int(a["category_id"]) in index]
        crowd = _xyxy([a["bbox"] for a in anns if a.get("iscrowd", 0)])
        gts = [a for a in anns if not a.get("iscrowd", 0)]
        gt_box = _xyxy([a["bbox"] for a in gts])
        gt_cls = np.asarray([index[int(a["category_id"])] for a in gts], dtype=np.int64)
        dets = by_image.get(int(image_id), [])
        dt_box = _xyxy([d["bbox"] for d in dets])
        dt_cls = np.asarray([index[int(d["category_id"])] for d in dets], dtype=np.int64)
        gt_used = np.zeros(len(gts), bool)
        dt_used = np.zeros(len(dets), bool)
        if len(gts) and len(dets):
            ious = _iou(gt_box, dt_box)
            pairs = np.argwhere(ious >= iou)
            for g, d in pairs[np.argsort(-ious[pairs[:, 0], pairs[:, 1]], kind="stable")]:
                if not gt_used[g] and not dt_used[d]:
                    gt_used[g] = dt_used[d] = True
                    matrix[dt_cls[d], gt_cls[g]] += 1
        np.add.at(matrix[bg], gt_cls[~gt_used], 1)  # matrix[bg]: a view of the row
        spare = ~dt_used
        if len(crowd) and spare.any():
            lt = np.maximum(dt_box[:, None, :2], crowd[None, :, :2])
            rb = np.minimum(dt_box[:, None, 2:], crowd[None, :, 2:])
            inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
            area = np.maximum(np.prod(dt_box[:, 2:] - dt_box[:, :2], axis=1), 1e-12)
            spare &= ~((inter / area[:, None]) >= iou).any(axis=1)
        np.add.at(matrix[:, bg], dt_cls[spare], 1)  # a view of the column
    return matrix
