"""YOLOv3 loss against values worked out in NumPy (docs/seed.md §3.2)."""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor

from yoloqat.core.errors import ConfigError
from yoloqat.plugins.yolov3 import DEFAULT_ANCHOR_MASKS, DEFAULT_ANCHORS, yolov3_loss

C = 2  # classes
INPUT = 64  # network input: grids 2x2 (stride 32), 4x4 (16), 8x8 (8)
STRIDES = (32, 16, 8)
ANCHORS = np.asarray(DEFAULT_ANCHORS, dtype=np.float64)


def bce(x, z):
    """Sigmoid BCE with logits, the numerically stable form."""
    x = np.asarray(x, dtype=np.float64)
    return np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))


def logit(p):
    return math.log(p / (1 - p))


def empty_batch(n=1, input_size=INPUT):
    outs, ys = [], []
    for s in STRIDES:
        g = input_size // s
        outs.append(np.zeros((n, g, g, 3, 5 + C), np.float32))
        ys.append(np.zeros((n, g, g, 3, 5 + C), np.float32))
    gts = [np.zeros((n, 50, 4), np.float32) for _ in STRIDES]
    return outs, ys, gts


def to_raw(out: np.ndarray) -> np.ndarray:
    """Anchor-major [N, H, W, A, K] -> the head's raw output [N, A * K, H, W]."""
    n, h, w, a, k = out.shape
    return np.ascontiguousarray(out.transpose(0, 3, 4, 1, 2).reshape(n, a * k, h, w))


def from_raw(raw: np.ndarray, anchors: int = 3) -> np.ndarray:
    """The head's raw layout [N, A * K, H, W] -> anchor-major [N, H, W, A, K]."""
    n, c, h, w = raw.shape
    return raw.reshape(n, anchors, c // anchors, h, w).transpose(0, 3, 4, 1, 2)


def to_tensors(outs, ys, gts):
    """The loss's arguments: raw outputs, the padded ground truth (not read by the YOLO loss:
    its targets hold it) and the host builder's extras (y_true per output, then gt lists)."""
    n = outs[0].shape[0]
    padded = (
        np.zeros((n, 50, 4), np.float32),
        np.zeros((n, 50), np.int32),
        np.zeros((n, 50), np.float32),
    )
    return [
        tuple(Tensor(to_raw(o)) for o in outs),
        *(Tensor(a) for a in padded),
        *(Tensor(a) for a in (*ys, *gts)),
    ]


def terms_of(loss, args) -> dict:
    """``loss.terms`` keyed by output: l (stride 32), m (16), s (8)."""
    return dict(zip("lms", loss.terms(*args)))


def place_gt(ys, gts, scale, b, box, anchor_slot, cls, slot=0):
    """Write a GT (normalised cx, cy, w, h) into scale ``scale``; returns its cell (j, i)."""
    g = ys[scale].shape[1]
    i, j = int(box[0] * g), int(box[1] * g)
    ys[scale][b, j, i, anchor_slot, :4] = box
    ys[scale][b, j, i, anchor_slot, 4] = 1.0
    ys[scale][b, j, i, anchor_slot, 5 + cls] = 1.0
    gts[scale][b, slot] = box
    return j, i


def decode_np(out, scale, input_size=INPUT):
    """Reference decode: [N,H,W,3,4] (cx, cy, w, h) normalised."""
    g = out.shape[1]
    anchors = ANCHORS[list(DEFAULT_ANCHOR_MASKS[scale])]
    boxes = np.zeros((*out.shape[:4], 4))
    for j in range(g):
        for i in range(g):
            for a in range(3):
                t = out[:, j, i, a].astype(np.float64)
                boxes[:, j, i, a, 0] = (1 / (1 + np.exp(-t[:, 0])) + i) / g
                boxes[:, j, i, a, 1] = (1 / (1 + np.exp(-t[:, 1])) + j) / g
                boxes[:, j, i, a, 2] = np.exp(t[:, 2]) * anchors[a, 0] / input_size
                boxes[:, j, i, a, 3] = np.exp(t[:, 3]) * anchors[a, 1] / input_size
    return boxes


def iou_np(a, b):
    ix = min(a[0] + a[2] / 2, b[0] + b[2] / 2) - max(a[0] - a[2] / 2, b[0] - b[2] / 2)
    iy = min(a[1] + a[3] / 2, b[1] + b[3] / 2) - max(a[1] - a[3] / 2, b[1] - b[3] / 2)
    inter = max(ix, 0) * max(iy, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def reference_terms(outs, ys, gts, thr=0.7, input_size=INPUT):
    """Loop-based NumPy reference of docs/seed.md §3.2: [(xy, wh, conf, cls)] per scale."""
    result = []
    n = outs[0].shape[0]
    for scale, (out, y, gt) in enumerate(zip(outs, ys, gts)):
        g = out.shape[1]
        anchors = ANCHORS[list(DEFAULT_ANCHOR_MASKS[scale])]
        boxes = decode_np(out, scale, input_size)
        xy = wh = conf = cls = 0.0
        for b in range(n):
            for j in range(g):
                for i in range(g):
                    for a in range(3):
                        t = out[b, j, i, a].astype(np.float64)
                        yt = y[b, j, i, a].astype(np.float64)
                        if yt[4] == 1:
                            w_scale = 2 - yt[2] * yt[3]
                            txy = np.array([yt[0] * g - i, yt[1] * g - j])
                            twh = np.log(yt[2:4] / anchors[a] * input_size)
                            xy += w_scale * bce(t[:2], txy).sum()
                            wh += w_scale * 0.5 * ((twh - t[2:4]) ** 2).sum()
                            conf += bce(t[4], 1.0)
                            cls += bce(t[5:], yt[5:]).sum()
                        else:
                            best = max(
                                [iou_np(boxes[b, j, i, a], gbox) for gbox in gt[b] if gbox[2] > 0]
                                or [0.0]
                            )
                            if best < thr:
                                conf += bce(t[4], 0.0)
        result.append((xy / n, wh / n, conf / n, cls / n))
    return result


def one_gt_case():
    """One GT on the stride-8 scale (anchor (16, 30)), chosen logits at its cell."""
    outs, ys, gts = empty_batch()
    box = (0.30, 0.55, 0.25, 0.45)
    j, i = place_gt(ys, gts, 2, 0, box, anchor_slot=1, cls=1)
    assert (j, i) == (4, 2)
    outs[2][0, j, i, 1] = [0.2, -0.4, 0.1, -0.3, 1.5, -1.0, 2.0]
    return outs, ys, gts, box


def test_each_term_by_hand() -> None:
    outs, ys, gts, box = one_gt_case()
    # A non-object prediction (same cell, anchor slot 0) decoding onto the GT: ignored.
    anchor = ANCHORS[DEFAULT_ANCHOR_MASKS[2][0]]
    outs[2][0, 4, 2, 0, :5] = (
        logit(0.30 * 8 - 2),
        logit(0.55 * 8 - 4),
        math.log(0.25 * 64 / anchor[0]),
        math.log(0.45 * 64 / anchor[1]),
        -2.0,
    )
    terms = terms_of(yolov3_loss(num_classes=C), to_tensors(outs, ys, gts))

    scale = 2 - box[2] * box[3]  # 2 - w*h
    xy = scale * (bce(0.2, 0.30 * 8 - 2) + bce(-0.4, 0.55 * 8 - 4))
    tw, th = math.log(0.25 * 64 / 16), math.log(0.45 * 64 / 30)
    wh = scale * 0.5 * ((tw - 0.1) ** 2 + (th + 0.3) ** 2)
    cls = bce(-1.0, 0.0) + bce(2.0, 1.0)
    xy_s, wh_s, conf_s, cls_s = terms["s"]
    assert xy_s == pytest.approx(xy, rel=1e-5)
    assert wh_s == pytest.approx(wh, rel=1e-5)
    assert cls_s == pytest.approx(cls, rel=1e-5)

    # Objectness: the positive plus log(2) for each zero-logit non-object prediction that is
    # not ignored (the -2 one is). Scales l and m have empty GT lists, so none of theirs is ignored.
    boxes = decode_np(outs[2], 2)
    not_ignored = sum(
        iou_np(boxes[0, jj, ii, a], box) < 0.7
        for jj in range(8)
        for ii in range(8)
        for a in range(3)
        if (jj, ii, a) not in ((4, 2, 1), (4, 2, 0))
    )
    assert not_ignored == 8 * 8 * 3 - 2  # the zero-logit boxes are all far from the GT
    assert conf_s == pytest.approx(bce(1.5, 1.0) + math.log(2) * not_ignored, rel=1e-5)
    for key, cells in (("l", 2 * 2 * 3), ("m", 4 * 4 * 3)):
        assert terms[key][0] == terms[key][1] == terms[key][3] == 0.0
        assert terms[key][2] == pytest.approx(math.log(2) * cells, rel=1e-5)


def test_box_weight_is_two_minus_wh() -> None:
    """The same in-cell offset and logits with a bigger box: xy scales by (2 - w*h)."""
    values = []
    for w, h in ((0.1, 0.1), (0.9, 0.8)):
        outs, ys, gts = empty_batch()
        place_gt(ys, gts, 2, 0, (0.30, 0.55, w, h), anchor_slot=0, cls=0)
        outs[2][0, 4, 2, 0, :2] = (0.7, -0.2)
        values.append(terms_of(yolov3_loss(num_classes=C), to_tensors(outs, ys, gts))["s"][0])
    assert values[0] / values[1] == pytest.approx((2 - 0.01) / (2 - 0.72), rel=1e-5)


def test_ignore_rule_is_per_scale() -> None:
    """A non-object prediction matching a GT of its own scale is ignored; of another, not."""
    outs, ys, gts = empty_batch()
    box = (0.40, 0.60, 0.30, 0.40)
    place_gt(ys, gts, 2, 0, box, anchor_slot=0, cls=0)  # GT on stride 8 at cell (4, 3)
    # Stride-16 prediction at cell (2, 1) decoding exactly onto the GT box, obj logit 3.
    m_anchor = ANCHORS[DEFAULT_ANCHOR_MASKS[1][0]]
    outs[1][0, 2, 1, 0, :5] = (
        logit(0.4 * 4 - 1),
        logit(0.6 * 4 - 2),
        math.log(0.3 * 64 / m_anchor[0]),
        math.log(0.4 * 64 / m_anchor[1]),
        3.0,
    )
    # Stride-8 prediction in the GT's cell (another anchor slot), obj logit 3, decoding onto
    # the GT box with its width scaled by 0.85: IoU 0.85, above 0.7.
    s_anchor = ANCHORS[DEFAULT_ANCHOR_MASKS[2][2]]
    outs[2][0, 4, 3, 2, :5] = (
        logit(0.4 * 8 - 3),
        logit(0.6 * 8 - 4),
        math.log(0.85 * 0.3 * 64 / s_anchor[0]),
        math.log(0.4 * 64 / s_anchor[1]),
        3.0,
    )
    terms = terms_of(yolov3_loss(num_classes=C), to_tensors(outs, ys, gts))
    ref = reference_terms(outs, ys, gts)
    # Stride 16: its GT list is empty, nothing is ignored: every prediction pays BCE(t, 0).
    assert terms["m"][2] == pytest.approx(bce(3.0, 0) + math.log(2) * (4 * 4 * 3 - 1), rel=1e-5)
    assert terms["m"][2] == pytest.approx(ref[1][2], rel=1e-5)
    # Stride 8: the positive (logit 0) pays log 2, the overlapping prediction is ignored and
    # the 190 other zero-logit predictions pay log 2 each.
    assert terms["s"][2] == pytest.approx(math.log(2) * (1 + 190), rel=1e-5)
    assert terms["s"][2] == pytest.approx(ref[2][2], rel=1e-5)
    # With the threshold above its IoU (0.85) it is no longer ignored.
    strict = terms_of(yolov3_loss(num_classes=C, ignore_threshold=0.9), to_tensors(outs, ys, gts))
    assert strict["s"][2] == pytest.approx(terms["s"][2] + bce(3.0, 0), rel=1e-5)
    assert strict["s"][2] == pytest.approx(reference_terms(outs, ys, gts, thr=0.9)[2][2], rel=1e-5)


def test_random_batch_matches_reference() -> None:
    rng = np.random.default_rng(0)
    outs, ys, gts = empty_batch(n=2)
    for o in outs:
        o[...] = rng.normal(0, 1, o.shape)
    place_gt(ys, gts, 0, 0, (0.5, 0.4, 0.8, 0.7), 2, 1)
    place_gt(ys, gts, 1, 0, (0.3, 0.7, 0.5, 0.6), 0, 0)
    place_gt(ys, gts, 1, 1, (0.6, 0.2, 0.4, 0.3), 1, 1)
    place_gt(ys, gts, 2, 1, (0.2, 0.3, 0.2, 0.25), 0, 0)
    place_gt(ys, gts, 2, 1, (0.7, 0.8, 0.15, 0.3), 1, 1, slot=1)
    loss = yolov3_loss(num_classes=C)
    args = to_tensors(outs, ys, gts)
    terms = terms_of(loss, args)
    ref = reference_terms(outs, ys, gts)
    for key, r in zip("lms", ref):
        np.testing.assert_allclose(terms[key], r, rtol=1e-4)
    total = float(loss(*args).asnumpy())
    assert total == pytest.approx(sum(sum(r) for r in ref), rel=1e-5)


def test_label_smoothing() -> None:
    outs, ys, gts, _ = one_gt_case()
    eps = 0.1
    smooth = yolov3_loss(num_classes=C, label_smooth=True, label_smooth_factor=eps)
    cls = terms_of(smooth, to_tensors(outs, ys, gts))["s"][3]
    assert cls == pytest.approx(bce(-1.0, eps / (C - 1)) + bce(2.0, 1 - eps), rel=1e-5)
    # Targets smoothed by the data pipeline already are not smoothed twice.
    ys[2][0, 4, 2, 1, 5:] = (eps / (C - 1), 1 - eps)
    plain = terms_of(yolov3_loss(num_classes=C), to_tensors(outs, ys, gts))["s"][3]
    assert terms_of(smooth, to_tensors(outs, ys, gts))["s"][3] == pytest.approx(plain, rel=1e-6)
    assert plain == pytest.approx(cls, rel=1e-5)


def grads(loss, outs, ys, gts):
    """Gradients with respect to the raw outputs, anchor-major like ``outs``."""
    args = to_tensors(outs, ys, gts)
    g = ms.grad(per_output(loss), grad_position=(0, 1, 2))(*args[0], *args[1:])
    return [from_raw(x.asnumpy()) for x in g]


def per_output(loss):
    """The loss with the three raw outputs as separate arguments (to differentiate them)."""

    def call(out_l, out_m, out_s, *rest):
        return loss((out_l, out_m, out_s), *rest)

    return call


def test_gradients_flow_through_terms_not_mask() -> None:
    outs, ys, gts, _ = one_gt_case()
    outs[2][0, 5, 2, 0, :4] = (0.3, -0.2, 0.4, 0.1)  # a non-object prediction near the GT
    g = grads(yolov3_loss(num_classes=C), outs, ys, gts)[2]
    assert np.all(g[0, 4, 2, 1] != 0)  # xy, wh, obj and both class logits at the GT anchor
    # The non-object prediction's box logits only reach the loss through the ignore mask.
    assert np.all(g[0, 5, 2, 0, :4] == 0)
    assert np.all(g[0, 5, 2, 0, 5:] == 0)  # no class loss without an object
    # Objectness gradient of a non-ignored negative is sigmoid(t) = 0.5 for t = 0.
    assert g[0, 0, 0, 0, 4] == pytest.approx(0.5, rel=1e-5)


@pytest.fixture
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_graph_mode_matches_pynative(graph_mode) -> None:
    rng = np.random.default_rng(1)
    outs, ys, gts = empty_batch(n=2)
    for o in outs:
        o[...] = rng.normal(0, 1, o.shape)
    place_gt(ys, gts, 1, 0, (0.3, 0.7, 0.5, 0.6), 0, 0)
    place_gt(ys, gts, 2, 1, (0.2, 0.3, 0.2, 0.25), 0, 1)
    loss = yolov3_loss(num_classes=C)
    args = to_tensors(outs, ys, gts)
    value, g = ms.value_and_grad(per_output(loss), grad_position=(0, 1, 2))(*args[0], *args[1:])
    ref = sum(sum(r) for r in reference_terms(outs, ys, gts))
    assert float(value.asnumpy()) == pytest.approx(ref, rel=1e-5)
    assert all(np.abs(x.asnumpy()).sum() > 0 for x in g)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    assert float(loss(*args).asnumpy()) == pytest.approx(float(value.asnumpy()), rel=1e-6)


@pytest.mark.parametrize(
    "params",
    [
        {"num_classes": 0},
        {"ignore_threshold": 0.0},
        {"ignore_threshold": "high"},
        {"label_smooth_factor": 1.0},
        {"label_smooth": "yes"},
        {"anchors": [[10, 13], [16]]},
        {"anchor_masks": [[0, 1, 2], [3, 4, 5]]},  # two masks, three strides
        {"anchor_masks": [[0, 1, 2], [3, 4, 5], [6, 7, 9]]},
        {"strides": [32, 16]},
    ],
)
def test_bad_parameters(params) -> None:
    with pytest.raises(ConfigError):
        yolov3_loss(**params)
