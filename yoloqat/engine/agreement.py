"""How close two models' detections are on the same images (e.g. a checkpoint and its export).

:func:`agreement` pairs the detections of two lists of
:class:`~yoloqat.engine.results.Result` image by image and class by class (greedily, by
IoU), and reports how many pair up, how far the paired boxes and scores are apart, and the
scores of the detections left without a partner: a detection near the score threshold may
be kept by one model and not the other, and one whose IoU with a box of its class is near
the NMS threshold may be suppressed by one and not the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU of xyxy boxes ``a`` [n, 4] vs ``b`` [m, 4] -> [n, m]."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def pair(
    boxes_a: np.ndarray,
    scores_a: np.ndarray,
    classes_a: np.ndarray,
    boxes_b: np.ndarray,
    scores_b: np.ndarray,
    classes_b: np.ndarray,
    min_iou: float = 0.5,
) -> list[tuple[int, int, float]]:
    """Greedy pairs ``(i, j, iou)`` of detections of one image, same class, IoU >= min_iou,
    the highest IoU first."""
    pairs = []
    for c in np.intersect1d(classes_a, classes_b):
        ia, ib = np.nonzero(classes_a == c)[0], np.nonzero(classes_b == c)[0]
        iou = _iou(np.asarray(boxes_a)[ia].reshape(-1, 4), np.asarray(boxes_b)[ib].reshape(-1, 4))
        while iou.size and iou.max() >= min_iou:
            r, k = np.unravel_index(np.argmax(iou), iou.shape)
            pairs.append((int(ia[r]), int(ib[k]), float(iou[r, k])))
            iou[r, :] = -1
            iou[:, k] = -1
    return pairs


def agreement(
    reference: Sequence[Any], other: Sequence[Any], *, min_iou: float = 0.5
) -> dict[str, Any]:
    """Compare two models' results on the same images (lists of ``Result``, in the same
    order). Returns the detection counts, the pairs (same class, IoU >= ``min_iou``), the
    coordinate (pixels of the image: largest, median and 99th percentile over the pairs of
    a pair's largest) and largest score differences, the smallest IoU of a pair, and the
    scores of the unpaired detections of each side."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} results against {len(other)}")
    total_a = total_b = paired = 0
    coords: list[float] = []
    score = 0.0
    lowest_iou = 1.0
    lone_a: list[float] = []
    lone_b: list[float] = []
    for a, b in zip(reference, other):
        found = pair(
            a.boxes, a.scores, a.class_ids, b.boxes, b.scores, b.class_ids, min_iou=min_iou
        )
        total_a, total_b, paired = total_a + len(a), total_b + len(b), paired + len(found)
        for i, j, iou in found:
            coords.append(float(np.abs(np.asarray(a.boxes[i]) - b.boxes[j]).max()))
            score = max(score, abs(float(a.scores[i]) - float(b.scores[j])))
            lowest_iou = min(lowest_iou, iou)
        lone_a += [float(a.scores[i]) for i in set(range(len(a))) - {p[0] for p in found}]
        lone_b += [float(b.scores[j]) for j in set(range(len(b))) - {p[1] for p in found}]
    return {
        "images": len(reference),
        "reference_detections": total_a,
        "other_detections": total_b,
        "paired": paired,
        "max_coord_diff_px": round(max(coords, default=0.0), 4),
        "p50_coord_diff_px": round(float(np.percentile(coords, 50)), 4) if coords else None,
        "p99_coord_diff_px": round(float(np.percentile(coords, 99)), 4) if coords else None,
        "max_score_diff": round(score, 5),
        "min_pair_iou": round(lowest_iou, 4) if paired else None,
        "reference_unpaired_scores": sorted(round(s, 4) for s in lone_a),
        "other_unpaired_scores": sorted(round(s, 4) for s in lone_b),
    }
