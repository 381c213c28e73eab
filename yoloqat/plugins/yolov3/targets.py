"""YOLO training targets (docs/seed.md §3.1), vectorised over boxes and over a batch.

Prediction-independent, so the data loader builds them on the host (the loss's
``build_targets``). Each box goes to exactly one of the anchors (best shape IoU over all of
them) and so to the one output whose mask holds that anchor. Its centre is floored to a
whole pixel first, as the seed does, and its cell is ``floor(cx · G)``. A later box on the
same cell and anchor overwrites the earlier box; in one-hot mode the earlier class bit stays
set (the seed's quirk).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .anchors import ANCHOR_MASKS


def anchor_iou(wh: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU [K, A] of boxes (w, h) [K, 2] and anchors [A, 2], all centred at the origin."""
    inter = np.minimum(wh[:, None, 0], anchors[None, :, 0]) * np.minimum(
        wh[:, None, 1], anchors[None, :, 1]
    )
    union = (wh[:, 0] * wh[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None, :] - inter
    return inter / np.maximum(union, 1e-12)


def _last_occurrence(keys: np.ndarray) -> np.ndarray:
    """Indices of the last occurrence of each distinct key (NumPy leaves the winner of a
    repeated fancy-index assignment unspecified, so duplicates are resolved here)."""
    _, first_rev = np.unique(keys[::-1], return_index=True)
    return len(keys) - 1 - first_rev


def build_targets_batch(
    boxes: np.ndarray,
    input_size: tuple[int, int],
    anchors: np.ndarray | Sequence[Sequence[float]],
    anchor_masks: Sequence[Sequence[int]] = ANCHOR_MASKS,
    num_classes: int = 80,
    max_boxes: int = 50,
    label_smooth: bool = False,
    label_smooth_factor: float = 0.1,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Targets for a batch of boxes [B, K, 5] (x1, y1, x2, y2, cls; zero rows = padding).

    Args:
        boxes: network-input pixels; rows with x2 - x1 <= 0 are padding.
        input_size: network input (W, H), multiples of the largest stride.
        anchors: [K, 2] anchor (w, h) in network-input pixels.
        anchor_masks: anchor indices per output, in the head's output order.
        strides: stride of each output (default: 32, 16, 8, ... halving per output).

    Returns:
        ``(y_true_0, ..., y_true_{L-1}, gt_0, ..., gt_{L-1})``: y_true_l float32
        [B, H/s, W/s, A_l, 5 + C] with [cx, cy, w, h, 1, classes] (normalised to the input),
        and gt_l float32 [B, max_boxes, 4] with the normalised (cx, cy, w, h) of the boxes
        assigned to that output, zero padded.
    """
    width, height = int(input_size[0]), int(input_size[1])
    boxes = np.asarray(boxes, np.float64)
    batch = boxes.shape[0]
    boxes = boxes[:, :max_boxes]
    anchors_arr = np.asarray(anchors, np.float64).reshape(-1, 2)
    n_layers = len(anchor_masks)
    if strides is None:
        strides = [32 >> lvl for lvl in range(n_layers)]
    grids = [(height // s, width // s) for s in strides]
    y_true = [
        np.zeros((batch, gh, gw, len(anchor_masks[lvl]), 5 + num_classes), np.float32)
        for lvl, (gh, gw) in enumerate(grids)
    ]
    gts = [np.zeros((batch, max_boxes, 4), np.float32) for _ in range(n_layers)]

    wh = boxes[..., 2:4] - boxes[..., 0:2]
    b_idx, k_idx = np.nonzero(wh[..., 0] > 0)  # row-major: per image, boxes in order
    if len(b_idx) == 0:
        return (*y_true, *gts)
    sel = boxes[b_idx, k_idx]
    wh = wh[b_idx, k_idx]
    centre = np.floor((sel[:, 0:2] + sel[:, 2:4]) / 2)  # the seed's (x1 + x2) // 2
    norm = np.concatenate([centre / (width, height), wh / (width, height)], axis=1)
    cls = sel[:, 4].astype(np.int64)
    best = np.argmax(anchor_iou(wh, anchors_arr), axis=1)

    if label_smooth:
        off = label_smooth_factor / max(num_classes - 1, 1)
        smooth = np.full((len(cls), num_classes), off, np.float32)
        smooth[np.arange(len(cls)), cls] = 1.0 - label_smooth_factor

    for lvl, mask in enumerate(anchor_masks):
        lookup = np.full(len(anchors_arr), -1, np.int64)
        lookup[list(mask)] = np.arange(len(mask))
        a = lookup[best]
        on = a >= 0
        if not on.any():
            continue
        gh, gw = grids[lvl]
        b, a, c = b_idx[on], a[on], cls[on]
        i = np.clip((centre[on, 0] * gw) // width, 0, gw - 1).astype(np.int64)
        j = np.clip((centre[on, 1] * gh) // height, 0, gh - 1).astype(np.int64)
        vals = norm[on].astype(np.float32)
        y = y_true[lvl]
        last = _last_occurrence(((b * gh + j) * gw + i) * len(mask) + a)
        y[b[last], j[last], i[last], a[last], 0:4] = vals[last]
        y[b[last], j[last], i[last], a[last], 4] = 1.0
        if label_smooth:
            y[b[last], j[last], i[last], a[last], 5:] = smooth[on][last]
        else:
            y[b, j, i, a, 5 + c] = 1.0  # every class bit written stays set
        # rank of each box among this image's boxes of this scale -> slot in the GT list
        first_of_image = np.searchsorted(b, b, side="left")
        slot = np.arange(len(b)) - first_of_image
        gts[lvl][b, slot] = vals
    return (*y_true, *gts)


def build_targets(
    boxes: np.ndarray,
    input_size: tuple[int, int],
    anchors: np.ndarray | Sequence[Sequence[float]],
    anchor_masks: Sequence[Sequence[int]] = ANCHOR_MASKS,
    num_classes: int = 80,
    max_boxes: int = 50,
    label_smooth: bool = False,
    label_smooth_factor: float = 0.1,
    strides: Sequence[int] | None = None,
) -> tuple[np.ndarray, ...]:
    """Targets of one image: boxes [K, 5] -> (y_true_0, ..., gt_0, ...).

    Same as :func:`build_targets_batch` without the batch axis.
    """
    out = build_targets_batch(
        np.asarray(boxes, np.float64).reshape(1, -1, 5),
        input_size,
        anchors,
        anchor_masks,
        num_classes,
        max_boxes,
        label_smooth,
        label_smooth_factor,
        strides,
    )
    return tuple(t[0] for t in out)


def padded_to_boxes(
    gt_boxes: np.ndarray, gt_labels: np.ndarray, gt_valid: np.ndarray
) -> np.ndarray:
    """The loader's padded ground truth as [B, M, 5] (x1, y1, x2, y2, cls), zero rows for
    padding (the layout :func:`build_targets_batch` reads)."""
    boxes = np.concatenate(
        [np.asarray(gt_boxes, np.float32), np.asarray(gt_labels, np.float32)[..., None]], -1
    )
    return boxes * (np.asarray(gt_valid) > 0)[..., None]
