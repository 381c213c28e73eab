"""The anchor-free YOLOv8 family: components against their contracts, the task-aligned
assignment on hand-made cases, the loss in GRAPH_MODE, and the family end to end (QAT, int8
ONNX, ONNX Runtime)."""

from __future__ import annotations

import math
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from yoloqat.core.errors import ConfigError
from yoloqat.plugins.yolov8 import csp_darknet, yolov8, yolov8_head, yolov8_loss
from yoloqat.plugins.yolov8.assign import TaskAlignedAssigner, box_ciou
from yoloqat.testing import check_backbone, check_head, check_loss

TOY = {"width": 0.0625, "depth": 0.33}


@pytest.fixture(autouse=True)
def _pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


# -- components ------------------------------------------------------------------------------
def test_components_conform_at_toy_size() -> None:
    backbone = check_backbone(csp_darknet, **TOY)
    assert backbone.strides == (8, 16, 32) and backbone.out_channels == (16, 32, 64)
    head = check_head(
        yolov8_head, in_channels=backbone.out_channels, in_strides=backbone.strides, **TOY
    )
    assert head.strides == (8, 16, 32) and head.in_indices == (0, 1, 2)
    assert head.output_format == "dfl_ltrb" and dict(head.loss_params) == {"reg_max": 16}
    assert head.out_channels == (4 * 16 + 3,) * 3
    loss = check_loss(
        yolov8_loss, head=head, in_channels=backbone.out_channels, in_strides=backbone.strides
    )
    assert loss.accepts == ("dfl_ltrb",) and loss.reg_max == 16 and loss.strides == (8, 16, 32)
    assert not callable(getattr(loss, "build_targets", None))  # assignment inside the loss


def test_the_manifest_is_cheap_and_registers_every_component() -> None:
    import subprocess
    import sys

    from yoloqat.registry import default_registry

    code = "import sys, yoloqat.plugins.yolov8; print('mindspore' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    reg = default_registry()
    for kind, name in [("backbone", "csp_darknet"), ("head", "yolov8_head"),
                       ("loss", "yolov8_loss"), ("family", "yolov8")]:  # fmt: skip
        assert reg.get(kind, name).plugin == "yolov8"


def test_head_reads_the_last_three_maps_of_a_four_map_backbone() -> None:
    head = check_head(yolov8_head, reg_max=8, **TOY)  # toy maps at strides 4, 8, 16, 32
    assert head.in_indices == (1, 2, 3) and head.strides == (8, 16, 32)
    assert head.out_channels == (4 * 8 + 3,) * 3


def test_yolov8n_sizes_and_bias_priors() -> None:
    backbone = csp_darknet()
    assert backbone.out_channels == (64, 128, 256)
    head = yolov8_head(in_channels=backbone.out_channels, num_classes=80)
    count = sum(int(np.prod(p.shape)) for p in [*backbone.get_parameters(), *head.get_parameters()]
                if p.requires_grad)  # fmt: skip
    assert count == 3_157_184  # Ultralytics' YOLOv8n: 3,157,200 with its frozen 16-weight DFL conv
    assert np.allclose(head.box[0].out.bias.asnumpy(), 1.0)
    for level, stride in enumerate((8, 16, 32)):
        want = math.log(5 / 80 / (640 / stride) ** 2)
        assert np.allclose(head.cls[level].out.bias.asnumpy(), want)


def test_decode_of_a_known_distribution() -> None:
    """All the mass of each side on bin 2 -> a box of 4 x 4 cells centred on its cell."""
    head = yolov8_head(in_channels=(16, 32, 64), num_classes=2, **TOY)
    r = head.reg_max
    outs = []
    for s in head.strides:
        raw = np.full((1, 4 * r + 2, 64 // s, 64 // s), -30.0, np.float32)
        raw[:, [2, r + 2, 2 * r + 2, 3 * r + 2]] = 30.0
        raw[:, 4 * r :] = 0.0
        outs.append(Tensor(raw))
    boxes, scores = head.decode(tuple(outs), 64, 64)
    boxes, scores = boxes.asnumpy(), scores.asnumpy()
    assert boxes.shape == (1, 64 + 16 + 4, 4) and scores.shape == (1, 84, 2)
    np.testing.assert_allclose(scores, 0.5)
    # first cell of stride 8 (8 x 8 grid): centre (0.5, 0.5) cells, 4 x 4 cells
    np.testing.assert_allclose(boxes[0, 0], [0.5 / 8, 0.5 / 8, 4 / 8, 4 / 8], atol=1e-6)
    # cell (row 1, col 2) of stride 8
    np.testing.assert_allclose(boxes[0, 10], [2.5 / 8, 1.5 / 8, 4 / 8, 4 / 8], atol=1e-6)
    # last cell of stride 32 (2 x 2 grid)
    np.testing.assert_allclose(boxes[0, -1], [1.5 / 2, 1.5 / 2, 4 / 2, 4 / 2], atol=1e-6)


@pytest.mark.parametrize(
    ("factory", "params", "name"),
    [
        (csp_darknet, {"width": 0}, "width"),
        (csp_darknet, {"depth": -1}, "depth"),
        (csp_darknet, {"max_channels": 4}, "max_channels"),
        (csp_darknet, {"bn_momentum": 1.5}, "bn_momentum"),
        (csp_darknet, {"bn_eps": 0}, "bn_eps"),
        (csp_darknet, {"in_channels": 0}, "in_channels"),
        (yolov8_head, {"in_channels": (8, 16)}, "in_channels"),
        (yolov8_head, {"in_channels": (8, 16, 32), "in_strides": (8, 16, 64)}, "in_strides"),
        (yolov8_head, {"in_channels": (8, 16, 32), "reg_max": 1}, "reg_max"),
        (yolov8_head, {"in_channels": (8, 16, 32), "num_classes": 0}, "num_classes"),
        (yolov8_loss, {"topk": 0}, "loss.topk"),
        (yolov8_loss, {"beta": -1.0}, "loss.beta"),
        (yolov8_loss, {"strides": [8, 0]}, "loss.strides"),
        (yolov8_loss, {"cls_gain": "x"}, "loss.cls_gain"),
    ],
)
def test_bad_parameters_are_config_errors_naming_them(factory, params, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        factory(**params)
    assert name in str(err.value)


def test_family_preset_passes_its_size_to_backbone_and_head() -> None:
    from yoloqat.core.config import resolve_family
    from yoloqat.engine.pipeline import build_loss, build_model
    from yoloqat.registry import default_registry

    preset = yolov8(width=0.5)
    assert preset["backbone"]["width"] == preset["head"]["width"] == 0.5
    cfg = {
        "family": {"name": "yolov8", **TOY},
        "model": {"num_classes": 2, "head": {"reg_max": 8}},
    }
    resolved = resolve_family(cfg, default_registry())
    assert resolved["model"]["backbone"] == {"name": "csp_darknet", **TOY, "max_channels": 1024}
    net = build_model(cfg)
    loss = build_loss(cfg, net)
    assert net.output_format == "dfl_ltrb" and net.num_classes == 2
    assert loss.reg_max == 8 and loss.num_classes == 2  # from the head's loss_params


def test_bundled_configs_build_and_mirror_each_other() -> None:
    from yoloqat.core.config import check_config, load_config
    from yoloqat.core.schema import check_sections
    from yoloqat.engine.pipeline import describe
    from yoloqat.registry import default_registry

    float_cfg, quant_cfg = load_config("synth_yolov8"), load_config("synth_yolov8_quant")
    for cfg in (float_cfg, quant_cfg):
        check_sections(cfg)
        check_config(cfg, default_registry())
    for key in ("family", "model", "loss", "data", "eval"):
        assert float_cfg[key] == quant_cfg[key], key
    assert quant_cfg["quantizer"]["name"] == "int8_qat"
    summary = describe(quant_cfg)
    assert summary["output_format"] == "dfl_ltrb" and summary["quantized"]
    assert summary["targets"] == "in loss" and summary["strides"] == [8, 16, 32]


# -- task-aligned assignment -------------------------------------------------------------------
GRID = 8  # one 8 x 8 level at stride 8: a 64 px input
POINTS = np.array([[((i % GRID) + 0.5) * 8, ((i // GRID) + 0.5) * 8] for i in range(GRID * GRID)])


def _scaled(box: np.ndarray, factor: float) -> np.ndarray:
    """``box`` scaled about its centre (CIoU with ``box`` = IoU = ``factor ** 2``)."""
    c = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) / 2 * factor
    return np.concatenate([c - half, c + half])


def _assign(pred, gt_boxes, gt_labels, gt_valid, scores=None, topk=10, num_classes=3):
    a = len(POINTS)
    if scores is None:
        scores = np.full((1, a, num_classes), 0.5, np.float32)
    out = TaskAlignedAssigner(num_classes, topk=topk)(
        Tensor(scores.astype(np.float32)),
        Tensor(np.asarray(pred, np.float32)[None]),
        Tensor(POINTS.astype(np.float32)),
        Tensor(np.asarray(gt_boxes, np.float32)[None]),
        Tensor(np.asarray(gt_labels, np.int32)[None]),
        Tensor(np.asarray(gt_valid, np.float32)[None]),
    )
    return [o.asnumpy()[0] for o in out]


def _inside(box) -> np.ndarray:
    x, y = POINTS[:, 0], POINTS[:, 1]
    return (x > box[0]) & (x < box[2]) & (y > box[1]) & (y < box[3])


def test_ciou_known_values() -> None:
    box = np.array([10.0, 10.0, 30.0, 50.0], np.float32)
    same = box_ciou(Tensor(box), Tensor(box)).asnumpy()
    inner = box_ciou(Tensor(box), Tensor(_scaled(box, 0.5).astype(np.float32))).asnumpy()
    apart = box_ciou(Tensor(box), Tensor(box + 100)).asnumpy()
    np.testing.assert_allclose([same, inner], [1.0, 0.25], atol=1e-5)
    assert apart < 0


def test_a_gt_gets_exactly_its_topk_candidates_by_metric() -> None:
    gt = np.array([2.0, 2.0, 62.0, 46.0])  # covers 8 x 6 = 48 anchor centres
    inside = _inside(gt)
    assert inside.sum() == 48
    rng = np.random.default_rng(0)
    factors = rng.permutation(np.linspace(0.3, 0.95, len(POINTS)))
    factors[~inside] = 0.99  # the best overlaps are outside: never candidates
    pred = np.stack([_scaled(gt, f) for f in factors])
    boxes, scores, fg, mask_pos = _assign(pred, [gt], [2], [1.0])
    want = np.zeros(len(POINTS), bool)
    want[np.argsort(np.where(inside, factors, -1))[-10:]] = True
    np.testing.assert_array_equal(mask_pos[0] > 0, want)
    np.testing.assert_array_equal(fg > 0, want)
    np.testing.assert_allclose(boxes[want], np.repeat(gt[None], 10, 0), atol=1e-5)
    assert not boxes[~want].any() and not scores[~want].any()
    # target score: metric * max IoU / max metric, on the GT's class only
    metric = np.sqrt(0.5) * (factors**2) ** 6
    best = factors[want].max()
    expect = metric * best**2 / metric[want].max()
    np.testing.assert_allclose(scores[want, 2], expect[want], rtol=1e-4)
    assert not scores[:, :2].any()
    assert np.isclose(scores[:, 2].max(), best**2, rtol=1e-5)  # best anchor: its own IoU


@pytest.mark.parametrize("topk", [10, 100])  # 100: more than the 64 anchors
def test_fewer_candidates_than_k_are_all_positive_and_padding_assigns_nothing(topk: int) -> None:
    small = np.array([2.0, 2.0, 22.0, 22.0])  # 3 x 3 anchor centres, fewer than k
    padding = np.array([0.0, 0.0, 64.0, 64.0])  # a padding row with a box: still nothing
    pred = np.stack([_scaled(small, 0.8)] * len(POINTS))
    _, scores, fg, mask_pos = _assign(
        pred, [small, padding, np.zeros(4)], [1, 0, 0], [1, 0, 0], topk=topk
    )
    np.testing.assert_array_equal(mask_pos[0] > 0, _inside(small))
    assert not mask_pos[1:].any()
    assert fg.sum() == 9 and np.allclose(scores[fg > 0, 1], 0.8**2, rtol=1e-5)


def test_an_anchor_inside_two_gts_takes_the_higher_overlap() -> None:
    gt1 = np.array([0.0, 0.0, 24.0, 24.0])  # centres 4, 12, 20 -> 3 x 3
    gt2 = np.array([8.0, 8.0, 40.0, 40.0])  # centres 12 .. 36 -> 4 x 4
    shared = _inside(gt1) & _inside(gt2)
    assert shared.sum() == 4
    pred = np.array([[p[0] - 8, p[1] - 8, p[0] + 8, p[1] + 8] for p in POINTS])
    to_gt1 = (POINTS[:, 0] == 20) & (POINTS[:, 1] == 20)
    pred[shared] = gt2
    pred[to_gt1] = gt1
    _, _, fg, mask_pos = _assign(pred, [gt1, gt2], [0, 1], [1, 1], topk=16)
    assert mask_pos.sum(0).max() == 1  # one GT per anchor
    np.testing.assert_array_equal(fg > 0, _inside(gt1) | _inside(gt2))
    assert mask_pos[0, to_gt1].all() and not mask_pos[1, to_gt1].any()
    others = shared & ~to_gt1
    assert mask_pos[1, others].all() and not mask_pos[0, others].any()


# -- the loss ---------------------------------------------------------------------------------
def _toy_net(num_classes: int = 3):
    from yoloqat.core.detector import Detector

    ms.set_seed(0)
    backbone = csp_darknet(**TOY)
    head = yolov8_head(in_channels=backbone.out_channels, num_classes=num_classes, **TOY)
    return Detector(backbone, head), yolov8_loss(num_classes=num_classes)


def test_terms_sum_to_the_loss_and_no_ground_truth_leaves_only_the_class_term() -> None:
    from yoloqat.testing import toy_ground_truth

    net, loss = _toy_net()
    net.set_train(True)
    images = Tensor(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    outs = net(images)
    gt = [Tensor(a) for a in toy_ground_truth(3)]
    terms = loss.terms(outs, *gt)
    assert all(v > 0 for v in terms.values())
    assert np.isclose(sum(terms.values()), float(loss(outs, *gt).asnumpy()), rtol=1e-5)
    empty = loss.terms(outs, gt[0], gt[1], Tensor(np.zeros((2, 8), np.float32)))
    assert empty["box"] == 0 and empty["dfl"] == 0 and empty["cls"] > 0


@pytest.mark.slow
def test_trains_in_graph_mode_compiling_once_per_input_size() -> None:
    from yoloqat.engine.training.step import NetWithLoss, TrainStep
    from yoloqat.testing import toy_ground_truth

    ms.set_context(mode=ms.GRAPH_MODE)
    net, loss = _toy_net()
    step = TrainStep(NetWithLoss(net, loss), nn.Momentum(net.trainable_params(), 0.01, 0.9))
    step.set_train(True)
    rng = np.random.default_rng(0)
    images = Tensor(rng.random((2, 3, 64, 64), dtype=np.float32))
    gt = [Tensor(a) for a in toy_ground_truth(3)]
    losses = [float(step(images, *gt)[0].asnumpy()) for _ in range(10)]
    assert all(np.isfinite(losses)) and min(losses[-3:]) < losses[0]
    assert len(step.compile_cache) == 1  # ten steps, one graph
    other = Tensor(rng.random((2, 3, 96, 96), dtype=np.float32))
    gt96 = [Tensor(a) for a in toy_ground_truth(3, (96, 96))]
    for _ in range(2):
        assert np.isfinite(step(other, *gt96)[0].asnumpy())
    assert len(step.compile_cache) == 2  # one more for the second size


@pytest.mark.slow
def test_trains_with_dynamic_shapes_in_one_compile() -> None:
    """``train.dynamic_shapes``: one graph for every input size (the loss has no shape-
    dependent constants: top-k stays constant, the grid comes from the runtime shape)."""
    from yoloqat.engine.training.step import NetWithLoss, TrainStep, spatially_dynamic
    from yoloqat.testing import toy_ground_truth

    ms.set_context(mode=ms.GRAPH_MODE)
    net, loss = _toy_net()
    step = TrainStep(NetWithLoss(net, loss), nn.Momentum(net.trainable_params(), 0.01, 0.9))
    step.set_train(True)
    rng = np.random.default_rng(0)
    batches = [
        [Tensor(rng.random((2, 3, s, s), dtype=np.float32))]
        + [Tensor(a) for a in toy_ground_truth(3, (s, s))]
        for s in (64, 96)
    ]
    step.set_inputs(*spatially_dynamic(*batches))
    for batch in (*batches, *batches):
        assert np.isfinite(step(*batch)[0].asnumpy())
    assert len(step.compile_cache) == 1


# -- end to end -------------------------------------------------------------------------------
def _upstream(model, name: str, stop: str = "Conv") -> set[str]:
    """Op types between tensor ``name`` and the nearest ``stop`` nodes above it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    seen: set[str] = set()
    types: set[str] = set()
    todo = [name]
    while todo:
        node = producer.get(todo.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        types.add(node.op_type)
        if node.op_type != stop:
            todo.extend(node.input)
    return types


@pytest.mark.slow
def test_end_to_end_int8(tmp_path: Path) -> None:
    import onnx

    from yoloqat.testing import check_plugin_end_to_end

    report = check_plugin_end_to_end(
        "csp_darknet", TOY, head="yolov8_head", head_params=TOY, loss="yolov8_loss",
        workdir=tmp_path,
    )  # fmt: skip
    # depth 0.33: backbone 27 (stem, 4 downs, C2f 4 + 6 + 6 + 4, SPPF 2), neck 18, detect 18
    assert report.convs == report.int8_convs == report.quantized_convs == 63
    assert report.float_convs == []
    # seeds 0-3: 100%, 99.8%, 100%, 100% within 1e-5, max 9.5e-7, 7.8e-4, 9.5e-7, 9.5e-7
    assert report.match_fraction >= 0.95 and report.max_abs_diff < 1e-2
    model = onnx.load(str(report.onnx_path))
    assert [o.name for o in model.graph.output] == ["boxes", "scores"]
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 3  # the DFL, one per level, in float
    float_ops = {"QuantizeLinear", "DequantizeLinear"}
    for node in softmaxes:
        assert not _upstream(model, node.input[0]) & float_ops, "Q/DQ feeds the DFL softmax"
    for out in ("boxes", "scores"):
        assert not _upstream(model, out) & float_ops, f"Q/DQ between the last convs and {out}"
    # the default export (convs over concatenations split per input) runs in OpenVINO with
    # every conv in int8 but the first, whose input is the float image
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.deploy.openvino_stats import int8_op_stats

    default = export_onnx(report.network, tmp_path / "default.onnx", input_size=64, int8=True)
    stats = int8_op_stats(default, threads=1)
    assert stats["int8_convolutions"] == stats["convolutions"] - 1, stats["float_convolutions"]
