"""The plugin's own tests: yoloqat's conformance helpers, at toy size on CPU.

Run from this folder after ``pip install -e .``: ``python -m pytest tests``.
"""

from __future__ import annotations

import math

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor
from yoloqat_example_plugin import (
    constant,
    fcos_lite,
    fcos_lite_family,
    fcos_loss,
    mobile_lite,
)

from yoloqat.core.contracts import check_component
from yoloqat.core.errors import ConfigError
from yoloqat.testing import (
    check_backbone,
    check_head,
    check_loss,
    check_plugin_end_to_end,
    check_scheduler,
)
from yoloqat.testing.components import TOY_IN_STRIDES

NUM_CLASSES = 3


def test_backbone_conforms() -> None:
    backbone = check_backbone(mobile_lite, width=0.25, depth=2)
    assert tuple(backbone.out_channels) == (8, 16, 32)


def test_scheduler_conforms() -> None:
    check_scheduler(constant, lr=0.01, warmup_epochs=1)


def test_bad_values_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"backbone\.depth"):
        mobile_lite(depth=-1)
    with pytest.raises(ConfigError, match=r"scheduler\.lr"):
        constant(lr=0)


def test_quantizes_exports_and_evaluates(tmp_path) -> None:
    """int8_qat quantizes every conv, the int8 ONNX file has them all, and ONNX Runtime
    agrees with the fake-quant network (measured here: every output value within 1e-5,
    max 1.2e-7)."""
    report = check_plugin_end_to_end(mobile_lite, {"width": 0.25}, workdir=tmp_path)
    assert report.int8_convs == report.convs == report.quantized_convs


# -- the FCOS family ------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [1, 2, 3])
def test_fcos_head_conforms_on_any_number_of_levels(levels: int) -> None:
    """check_head: contract, one raw output per level at its stride, decode's boxes and
    scores; the head reads the toy backbone's last ``levels`` maps."""
    head = check_head(fcos_lite, levels=levels, channels=8, tower_convs=1)
    assert head.strides == TOY_IN_STRIDES[-levels:]
    assert head.in_indices == tuple(range(len(TOY_IN_STRIDES) - levels, len(TOY_IN_STRIDES)))
    assert head.output_format == "fcos_ltrb"


@pytest.mark.parametrize("levels", [1, 3])
def test_fcos_loss_conforms(levels: int) -> None:
    """check_loss: built with the head's own values (num_classes, strides), accepts its
    format, a finite scalar whose gradient reaches the head's weights."""
    loss = check_loss(fcos_loss, head=fcos_lite, head_params={"levels": levels, "channels": 8})
    assert loss.strides == TOY_IN_STRIDES[-levels:]


def _points(strides, size: int) -> np.ndarray:
    """``[P, 4]`` rows ``(level, px, py, stride)`` in the head's output order."""
    rows = []
    for level, s in enumerate(strides):
        n = size // s
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        for x, y in zip(xs.ravel(), ys.ravel()):
            rows.append((level, (x + 0.5) * s, (y + 0.5) * s, s))
    return np.asarray(rows, np.float64)


def _ground_truth(images, max_boxes: int = 4):
    """Padded ground truth from ``[[(x1, y1, x2, y2, label), ...], ...]``."""
    boxes = np.zeros((len(images), max_boxes, 4), np.float32)
    labels = np.zeros((len(images), max_boxes), np.int32)
    valid = np.zeros((len(images), max_boxes), np.float32)
    for b, rows in enumerate(images):
        for j, (*box, label) in enumerate(rows):
            boxes[b, j], labels[b, j], valid[b, j] = box, label, 1.0
    return boxes, labels, valid


def _zeros(strides, size: int, batch: int):
    return tuple(
        Tensor(np.zeros((batch, 5 + NUM_CLASSES, size // s, size // s), np.float32))
        for s in strides
    )


def _assign(gt, *, strides=(8, 16, 32), size: int = 64, **params):
    loss = fcos_loss(num_classes=NUM_CLASSES, strides=strides, **params)
    outs = _zeros(strides, size, gt[0].shape[0])
    pos, labels, ltrb = loss.targets(outs, *(Tensor(a) for a in gt))
    return pos.asnumpy() > 0, labels.asnumpy(), ltrb.asnumpy(), _points(strides, size)


def _positives(pos, points, image: int = 0) -> set:
    return {(int(lv), px, py) for lv, px, py, _ in points[pos[image]]}


def test_a_box_centre_region_gets_the_positives() -> None:
    """A 32 px box centred at (24, 24): the stride-8 points strictly inside its centre
    region (24 +- 1.5 x 8) are positive, with their distances to the sides."""
    pos, labels, ltrb, points = _assign(_ground_truth([[(8, 8, 40, 40, 2)]]))
    assert _positives(pos, points) == {(0, x, y) for x in (20.0, 28.0) for y in (20.0, 28.0)}
    assert (labels[0][pos[0]] == 2).all()
    at = {(px, py): ltrb[0, i] for i, (_, px, py, _) in enumerate(points) if pos[0, i]}
    np.testing.assert_allclose(at[(20.0, 28.0)], [12, 20, 20, 12])


def test_padding_assigns_nothing() -> None:
    """Padding rows (gt_valid 0) are never candidates, whatever they hold; an image
    without boxes has only negatives and a finite loss (no box or centerness term)."""
    boxes, labels, valid = _ground_truth([[(8, 8, 40, 40, 1)], []])
    boxes[:, 1:] = boxes[0, 0]  # rubbish in the padding rows
    pos, _, _, _ = _assign((boxes, labels, valid))
    assert pos[0].sum() == 4 and pos[1].sum() == 0
    loss = fcos_loss(num_classes=NUM_CLASSES, strides=(8, 16, 32))
    empty = _ground_truth([[], []])
    terms = loss.terms(_zeros((8, 16, 32), 64, 2), *(Tensor(a) for a in empty))
    assert terms["box"] == 0 and terms["ctr"] == 0
    assert math.isfinite(terms["cls"]) and terms["cls"] > 0


@pytest.mark.parametrize("small_first", [False, True])
def test_ambiguous_points_take_the_smaller_box(small_first: bool) -> None:
    """A point in the centre regions of two boxes takes the smaller one, whichever row it
    has; the points only the large box claims keep it."""
    big, small = (0, 0, 64, 64, 0), (16, 16, 32, 32, 1)
    rows = [small, big] if small_first else [big, small]
    pos, labels, ltrb, points = _assign(_ground_truth([rows]))
    index = {(px, py): i for i, (lv, px, py, _) in enumerate(points) if lv == 0}
    both = index[(28.0, 28.0)]  # in both centre regions
    assert pos[0, both] and labels[0, both] == 1
    np.testing.assert_allclose(ltrb[0, both], [12, 12, 4, 4])
    assert labels[0, index[(20.0, 20.0)]] == 1  # only the small box's
    assert pos[0, index[(36.0, 36.0)]] and labels[0, index[(36.0, 36.0)]] == 0


def test_scale_ranges_send_a_large_box_to_the_coarse_level() -> None:
    """FCOS's ranges (64, 128 px boundaries for strides 8, 16, 32): a 256 px box reaches
    more than 128 px from its centre points, so only stride-32 points take it."""
    pos, _, _, points = _assign(_ground_truth([[(0, 0, 256, 256, 0)]]), size=256)
    assert _positives(pos, points) == {(2, x, y) for x in (112.0, 144.0) for y in (112.0, 144.0)}


def _reference(boxes, valid, points, bounds, radius):
    """The assignment written out point by point (NumPy): positive, box index, ltrb."""
    edges = [0.0, *bounds, math.inf]
    out = []
    for b in range(len(boxes)):
        for lv, px, py, s in points:
            best, best_area = -1, math.inf
            for j, (x1, y1, x2, y2) in enumerate(boxes[b]):
                if not valid[b, j]:
                    continue
                cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, radius * s
                inside = max(cx - r, x1) < px < min(cx + r, x2)
                inside = inside and max(cy - r, y1) < py < min(cy + r, y2)
                reach = max(px - x1, py - y1, x2 - px, y2 - py)
                area = (x2 - x1) * (y2 - y1)
                if inside and edges[int(lv)] < reach <= edges[int(lv) + 1] and area < best_area:
                    best, best_area = j, area
            out.append(best)
    return np.asarray(out).reshape(len(boxes), -1)


def test_assignment_matches_a_reference_and_every_positive_reaches_its_box() -> None:
    """Random boxes at 128 px: the compiled-style assignment equals the point-by-point
    reference, every positive's regression targets are > 0 (the head's exp distances can
    reach them: no positive is unreachable), and decoding raw outputs set to
    ``log(target / stride)`` gives back each positive's box exactly."""
    rng = np.random.default_rng(3)
    size, strides, bounds = 128, (8, 16, 32), (24.0, 48.0)  # every level gets boxes
    images = []
    for _ in range(4):
        rows = []
        for _ in range(rng.integers(0, 7)):
            x1, y1 = rng.uniform(0, size - 8, 2)
            x2, y2 = x1 + rng.uniform(4, size - x1), y1 + rng.uniform(4, size - y1)
            rows.append((x1, y1, x2, y2, int(rng.integers(NUM_CLASSES))))
        images.append(rows)
    gt = _ground_truth(images, max_boxes=8)
    pos, labels, ltrb, points = _assign(gt, strides=strides, size=size, scale_bounds=bounds)
    want = _reference(gt[0].astype(np.float64), gt[2], points, bounds, 1.5)
    np.testing.assert_array_equal(pos, want >= 0)
    assert pos.sum() > 20 and len(set(points[pos.any(0), 0])) == 3  # all levels used
    picked = np.take_along_axis(gt[1], np.maximum(want, 0), 1)
    np.testing.assert_array_equal(labels[pos], picked[pos])
    assert (ltrb[pos] > 0).all()  # every positive can reach its box

    head = fcos_lite(in_channels=(8, 16, 32), in_strides=strides, num_classes=NUM_CLASSES)
    raw = np.zeros((len(images), len(points), 5 + NUM_CLASSES), np.float32)
    raw[..., :4] = np.log(np.where(pos[..., None], ltrb, 1.0) / points[None, :, 3:4])
    outs, start = [], 0
    for s in strides:
        n = size // s
        level = raw[:, start : start + n * n].reshape(len(images), n, n, -1)
        outs.append(Tensor(np.ascontiguousarray(level.transpose(0, 3, 1, 2))))
        start += n * n
    boxes, _ = head.decode(tuple(outs), size, size)
    assigned = np.take_along_axis(gt[0], np.maximum(want, 0)[..., None], 1)
    xyxy = np.concatenate(
        [assigned[..., :2] + assigned[..., 2:], assigned[..., 2:] - assigned[..., :2]], -1
    )
    expected = xyxy * np.array([0.5, 0.5, 1.0, 1.0]) / size  # cx, cy, w, h normalised
    np.testing.assert_allclose(boxes.asnumpy()[pos], expected[pos], atol=1e-5)


def test_decode_boxes_and_scores() -> None:
    """One level, hand-set raw values: a point's box from its distances, its scores the
    geometric mean of class and centerness probabilities."""
    head = fcos_lite(in_channels=(8,), in_strides=(16,), num_classes=2, levels=1)
    raw = np.zeros((1, 7, 2, 2), np.float32)
    raw[0, :4, 1, 0] = np.log(np.array([4.0, 8.0, 12.0, 16.0]) / 16)  # l, t, r, b at (8, 24)
    raw[0, 4, 1, 0] = 2.0  # centerness logit
    raw[0, 5:, 1, 0] = (-1.0, 3.0)  # class logits
    boxes, scores = head.decode((Tensor(raw),), 32, 64)
    point = 2  # row 1, column 0
    np.testing.assert_allclose(
        boxes.asnumpy()[0, point], [(8 + 4) / 64, (24 + 4) / 32, 16 / 64, 24 / 32], rtol=1e-6
    )

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    want = [math.sqrt(sig(-1.0) * sig(2.0)), math.sqrt(sig(3.0) * sig(2.0))]
    np.testing.assert_allclose(scores.asnumpy()[0, point], want, rtol=1e-6)


def test_fcos_loss_compiles_in_graph_mode() -> None:
    """The loss in GRAPH_MODE (as the train step runs it) gives PYNATIVE's value, twice
    (one compiled graph per input size)."""
    rng = np.random.default_rng(0)
    strides = (8, 16, 32)
    outs = tuple(
        Tensor(rng.standard_normal((2, 5 + NUM_CLASSES, 64 // s, 64 // s)).astype(np.float32))
        for s in strides
    )
    gt = [Tensor(a) for a in _ground_truth([[(8, 8, 40, 40, 2)], [(0, 0, 50, 30, 1)]])]
    loss = fcos_loss(num_classes=NUM_CLASSES, strides=strides)
    mode = ms.get_context("mode")
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        eager = float(loss(outs, *gt).asnumpy())
        ms.set_context(mode=ms.GRAPH_MODE)
        graph = [float(loss(outs, *gt).asnumpy()) for _ in range(2)]
    finally:
        ms.set_context(mode=mode)
    assert math.isfinite(eager)
    np.testing.assert_allclose(graph, [eager, eager], rtol=1e-5)


def test_fcos_family_preset() -> None:
    """The preset names this plugin's backbone, head and loss (family contract)."""
    preset = fcos_lite_family(width=0.25, levels=2)
    check_component("family", preset, plugin="(under test)", name="fcos_lite")
    names = {k: preset[k]["name"] for k in ("backbone", "head", "loss")}
    assert names == {"backbone": "mobile_lite", "head": "fcos_lite", "loss": "fcos_loss"}
    assert preset["head"]["levels"] == 2


def test_fcos_bad_values_name_the_parameter() -> None:
    with pytest.raises(ValueError, match=r"head\.levels=4 .* expected 1 to 3"):
        fcos_lite(in_channels=(8, 16, 32), in_strides=(8, 16, 32), levels=4)
    with pytest.raises(ValueError, match=r"loss\.scale_bounds"):
        fcos_loss(strides=(8, 16, 32), scale_bounds=[64])
    with pytest.raises(ValueError, match=r"loss\.box_loss"):
        fcos_loss(box_loss="l1")


def test_fcos_quantizes_exports_and_evaluates(tmp_path) -> None:
    """mobile_lite + fcos_lite + fcos_loss end to end: one float training step, int8_qat
    quantizes every conv (25 backbone + 3 levels x (3 tower + 3 predictor) = 43), all 43
    have int8 weights in the ONNX file, and ONNX Runtime agrees with the fake-quant network
    (measured here, seeds 0-3: every output value within 1e-5, max 3e-7 to 1.1e-6)."""
    report = check_plugin_end_to_end(
        mobile_lite,
        {"width": 0.25},
        head=fcos_lite,
        head_params={"channels": 16},
        loss=fcos_loss,
        workdir=tmp_path,
        bound=1e-5,
        min_match=0.99,
    )
    assert report.int8_convs == report.convs == report.quantized_convs == 25 + 18
    assert report.float_convs == []
