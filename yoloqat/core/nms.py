"""Per-class greedy non-maximum suppression in NumPy (the seed's, docs/seed.md §5), vectorised.

IoU uses the seed's "+1" pixel convention for box widths and heights. Large candidate sets
are processed in blocks so memory stays bounded.
"""

from __future__ import annotations

import numpy as np

#: Most IoU entries computed at once by :func:`nms` (bounds its memory to some 100 MB).
_NMS_CHUNK = 1 << 21


def _pairwise_iou_plus1(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of x1y1x2y2 boxes ``a`` [..., n, 4] vs ``b`` [..., m, 4] with "+1 pixel" areas.

    Same float64 operations as the classic loop, so ties at the threshold resolve alike.
    """
    ax1, ay1, ax2, ay2 = (np.ascontiguousarray(a[..., i])[..., :, None] for i in range(4))
    bx1, by1, bx2, by2 = (np.ascontiguousarray(b[..., i])[..., None, :] for i in range(4))
    iw = np.minimum(ax2, bx2)
    iw -= np.maximum(ax1, bx1)
    iw += 1
    np.maximum(iw, 0.0, out=iw)
    ih = np.minimum(ay2, by2)
    ih -= np.maximum(ay1, by1)
    ih += 1
    np.maximum(ih, 0.0, out=ih)
    iw *= ih  # intersection
    union = (ax2 - ax1 + 1) * (ay2 - ay1 + 1) + (bx2 - bx1 + 1) * (by2 - by1 + 1)
    union -= iw
    iw /= union
    return iw


def _greedy(xyxy: np.ndarray, alive: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS of score-sorted groups ``xyxy`` [k, G, 4]; ``alive`` [k, G] -> kept [k, G].

    Iterates ``keep_i = alive_i and not any(keep_j and IoU_ji > t for j < i)`` from
    ``keep = alive``: after t rounds the first t boxes are final, so it stops at the unique
    fixed point, which is the greedy answer; suppression chains are short, so few rounds run.
    """
    g = xyxy.shape[1]
    over = _pairwise_iou_plus1(xyxy, xyxy) > threshold
    over &= np.triu(np.ones((g, g), dtype=bool), k=1)  # only higher-ranked boxes suppress
    keep = alive.copy()
    while True:
        new = alive & ~np.any(over & keep[:, :, None], axis=1)
        if np.array_equal(new, keep):
            return keep
        keep = new


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    iou_threshold: float = 0.5,
    *,
    max_block: int = 1024,
) -> np.ndarray:
    """Greedy per-class NMS of top-left xywh ``boxes``; returns kept indices by class, score.

    Same result as the classic loop (highest score first, drop boxes of the same class with
    IoU > threshold to a kept box, "+1 pixel" areas) without a Python loop over boxes:
    classes are solved together in batches padded to a power of two; a class with more than
    ``max_block`` boxes goes in blocks, each first suppressed by the boxes kept before it.
    """
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((-np.asarray(scores, dtype=np.float64), np.asarray(classes)))
    xyxy = np.asarray(boxes, dtype=np.float64)[order].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    _, starts, counts = np.unique(np.asarray(classes)[order], return_index=True, return_counts=True)
    keep = np.zeros(n, dtype=bool)
    padded = np.maximum(8, 1 << np.ceil(np.log2(counts)).astype(np.int64))
    small = counts <= max_block
    for g in np.unique(padded[small]):
        groups = np.nonzero(small & (padded == g))[0]
        per_batch = max(1, _NMS_CHUNK // int(g * g))
        for first in range(0, len(groups), per_batch):
            sel = groups[first : first + per_batch]
            valid = np.arange(g)[None, :] < counts[sel][:, None]
            idx = np.where(valid, starts[sel][:, None] + np.arange(g)[None, :], 0)
            keep[idx[valid]] = _greedy(xyxy[idx], valid, iou_threshold)[valid]
    for c in np.nonzero(~small)[0]:
        kept = np.zeros(0, dtype=np.int64)
        end = starts[c] + counts[c]
        for start in range(starts[c], end, max_block):
            idx = np.arange(start, min(start + max_block, end))
            alive = np.ones(len(idx), dtype=bool)
            step = max(1, _NMS_CHUNK // len(idx))
            for k0 in range(0, len(kept), step):
                prev = xyxy[kept[k0 : k0 + step]]
                alive &= ~(_pairwise_iou_plus1(prev, xyxy[idx]) > iou_threshold).any(axis=0)
            block_keep = idx[_greedy(xyxy[idx][None], alive[None], iou_threshold)[0]]
            keep[block_keep] = True
            kept = np.concatenate([kept, block_keep])
    return order[np.nonzero(keep)[0]]
