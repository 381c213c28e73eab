"""YOLO targets (docs/seed.md §3.1): each GT in the prescribed scale, cell and anchor."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from yoloqat.plugins.yolov3 import ANCHOR_MASKS, ANCHORS
from yoloqat.plugins.yolov3.targets import build_targets, build_targets_batch

C = 6


def _expected_slot(box, size):
    """Brute-force §3.1 for one box: (scale, j, i, k, [cx, cy, w, h])."""
    x1, y1, x2, y2 = box[:4]
    w, h = x2 - x1, y2 - y1
    cx, cy = ((x1 + x2) // 2) / size[0], ((y1 + y2) // 2) / size[1]
    ious = []
    for aw, ah in ANCHORS:
        inter = min(w, aw) * min(h, ah)
        ious.append(inter / (w * h + aw * ah - inter))
    best = int(np.argmax(ious))
    for scale, mask in enumerate(ANCHOR_MASKS):
        if best in mask:
            stride = 32 >> scale
            gw, gh = size[0] // stride, size[1] // stride
            # exact arithmetic: a centre on a cell edge belongs to the cell starting there
            i = math.floor(Fraction(int((x1 + x2) // 2), size[0]) * gw)
            j = math.floor(Fraction(int((y1 + y2) // 2), size[1]) * gh)
            return scale, j, i, mask.index(best), [cx, cy, w / size[0], h / size[1]]
    raise AssertionError("anchor in no mask")


def _random_boxes(rng, size, k):
    x1 = rng.uniform(0, size[0] - 4, k)
    y1 = rng.uniform(0, size[1] - 4, k)
    x2 = np.minimum(x1 + rng.uniform(2, size[0], k), size[0])
    y2 = np.minimum(y1 + rng.uniform(2, size[1], k), size[1])
    return np.stack([x1, y1, x2, y2, rng.integers(0, C, k)], 1).astype(np.float32)


@pytest.mark.parametrize("size", [(416, 416), (320, 320), (608, 608), (512, 384)])
def test_each_gt_lands_in_its_cell_and_anchor(size):
    rng = np.random.default_rng(size[0])
    for _ in range(20):
        boxes = _random_boxes(rng, size, int(rng.integers(1, 30)))
        out = build_targets(boxes, size, ANCHORS, ANCHOR_MASKS, num_classes=C)
        y_true, gts = out[:3], out[3:]
        for scale, stride in enumerate((32, 16, 8)):
            assert y_true[scale].shape == (size[1] // stride, size[0] // stride, 3, 5 + C)
        slots = {}
        for n, box in enumerate(boxes):
            scale, j, i, k, vals = _expected_slot(box.astype(np.float64), size)
            slots[(scale, j, i, k)] = (n, vals, int(box[4]))
        for (scale, j, i, k), (_, vals, cls) in slots.items():  # the last writer wins
            cell = y_true[scale][j, i, k]
            np.testing.assert_allclose(cell[:4], vals, rtol=1e-6, atol=1e-7)
            assert cell[4] == 1 and cell[5 + cls] == 1
        n_obj = sum(int(y[..., 4].sum()) for y in y_true)
        assert n_obj == len(slots)  # nothing written anywhere else
        # the per-scale GT lists hold every box of that scale, in order
        for scale in range(3):
            mine = [
                _expected_slot(b.astype(np.float64), size)[4]
                for b in boxes
                if _expected_slot(b.astype(np.float64), size)[0] == scale
            ]
            assert gts[scale].shape == (50, 4)
            np.testing.assert_allclose(gts[scale][: len(mine)], np.reshape(mine, (-1, 4)), 1e-6)
            assert (gts[scale][len(mine) :] == 0).all()


def test_centre_is_floored_to_whole_pixels():
    box = np.array([[100.0, 100.0, 131.0, 140.0, 0]])  # centre x 115.5 -> 115
    y = build_targets(box, (416, 416), ANCHORS, num_classes=C)
    cells = [t[t[..., 4] == 1] for t in y[:3]]
    (cell,) = [c for c in cells if len(c)]
    assert cell[0, 0] == pytest.approx(115 / 416) and cell[0, 1] == pytest.approx(120 / 416)


def test_overwrite_quirk_keeps_earlier_class_bit():
    # two boxes of the same shape and cell: second overwrites the box, class bits accumulate
    boxes = np.array([[200, 200, 230, 260, 1], [201, 201, 231, 261, 4]], np.float32)
    y = build_targets(boxes, (416, 416), ANCHORS, num_classes=C)
    hits = [(s, np.argwhere(t[..., 4] == 1)) for s, t in enumerate(y[:3])]
    ((scale, idx),) = [(s, h) for s, h in hits if len(h)]
    assert len(idx) == 1
    cell = y[scale][tuple(idx[0])]
    np.testing.assert_allclose(cell[:4], [216 / 416, 231 / 416, 30 / 416, 60 / 416], 1e-6)
    assert cell[5 + 1] == 1 and cell[5 + 4] == 1
    assert (y[3 + scale][:2] > 0).all()  # both remain in the GT list


def test_label_smoothing():
    boxes = np.array([[200, 200, 230, 260, 1], [201, 201, 231, 261, 4]], np.float32)
    y = build_targets(boxes, (416, 416), ANCHORS, num_classes=C, label_smooth=True)
    cell = np.concatenate([t[t[..., 4] == 1] for t in y[:3]])[0]
    expect = np.full(C, 0.1 / (C - 1), np.float32)
    expect[4] = 0.9  # the later box's class; the whole row is overwritten
    np.testing.assert_allclose(cell[5:], expect, rtol=1e-6)


def test_padding_rows_are_ignored_and_batch_equals_single():
    rng = np.random.default_rng(5)
    batch = np.zeros((3, 50, 5), np.float32)
    counts = [7, 0, 50]
    for b, k in enumerate(counts):
        batch[b, :k] = _random_boxes(rng, (320, 320), k)
    together = build_targets_batch(batch, (320, 320), ANCHORS, ANCHOR_MASKS, C)
    for b, k in enumerate(counts):
        alone = build_targets(batch[b, :k], (320, 320), ANCHORS, ANCHOR_MASKS, C)
        for t_all, t_one in zip(together, alone):
            np.testing.assert_array_equal(t_all[b], t_one)
    assert sum(t[1, ..., 4].sum() for t in together[:3]) == 0


def test_centre_on_a_cell_edge_belongs_to_the_cell_starting_there():
    # centre y = (66 + 414) // 2 = 240 = 15 * 16: exactly on the top edge of cell 15 (stride 16)
    box = np.array([[12, 66, 27, 414, 2]], np.float32)  # 15 x 348 px: anchor 5 (stride 16)
    y = build_targets(box, (416, 416), ANCHORS, num_classes=C)
    assert np.argwhere(y[1][..., 4] == 1).tolist() == [[15, 1, 2]]
