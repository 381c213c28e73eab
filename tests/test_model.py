"""The YOLOv3-DarkNet53 network: layout, parameter counts, shapes, decoding, options."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn

from yoloqat.core.detector import Detector, check_input_shape
from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import ConvBnAct, OutputConv
from yoloqat.engine.models import yolov3_darknet53
from yoloqat.plugins.darknet53 import darknet53, yoloqat_backbones
from yoloqat.plugins.yolov3 import (
    DEFAULT_ANCHORS,
    darknet_yolo_head,
    yoloqat_heads,
    yolov3_head,
    yolov3_tiny_head,
)
from yoloqat.plugins.yolov3.decode import YoloDecode, YoloPredict

TINY = 0.0625  # width of the toy models used for runtime tests

# oneDNN's default AVX-512 path runs MindSpore's NCHW 3x3 convs on a reference kernel here
# (~100x slower); capping the ISA at AVX2 selects the gemm kernel. It is read at the first
# conv, so setting it at collection time covers the session.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")


@pytest.fixture(scope="module")
def full_net() -> Detector:
    """The default 80-class detector at full width (built once; forward run at most once)."""
    return yolov3_darknet53()


@pytest.fixture
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _image(n: int, h: int, w: int, seed: int = 0) -> Tensor:
    return Tensor(np.random.default_rng(seed).normal(size=(n, 3, h, w)).astype(np.float32))


def _count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in params)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _np_decode(raw: np.ndarray, anchors: np.ndarray, in_w: int, in_h: int) -> np.ndarray:
    """Independent NumPy version of docs/seed.md §2 on a raw [N, H, W, A, K] array."""
    _, gh, gw, _, _ = raw.shape
    cx = np.arange(gw)[None, None, :, None]
    cy = np.arange(gh)[None, :, None, None]
    out = np.empty_like(raw)
    out[..., 0] = (_sigmoid(raw[..., 0]) + cx) / gw
    out[..., 1] = (_sigmoid(raw[..., 1]) + cy) / gh
    out[..., 2] = np.exp(raw[..., 2]) * anchors[:, 0] / in_w
    out[..., 3] = np.exp(raw[..., 3]) * anchors[:, 1] / in_h
    out[..., 4:] = _sigmoid(raw[..., 4:])
    return out


# --- layout and parameter counts of the real network (docs/seed.md §1.2-1.5) ----------


def test_default_parameter_counts(full_net):
    assert _count(full_net.trainable_params()) == 61_949_149
    assert _count(full_net.get_parameters()) == 62_001_757
    assert _count(full_net.backbone.trainable_params()) == 40_584_928


def test_conv_counts_and_darknet_order(full_net):
    convs = [c for _, c in full_net.cells_and_names() if isinstance(c, nn.Conv2d)]
    backbone_convs = [c for _, c in full_net.backbone.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert len(backbone_convs) == 52
    assert len(convs) == 75
    units = full_net.backbone.conv_units()
    assert len(units) == 52
    assert all(isinstance(u, ConvBnAct) for u in units)
    assert {id(u.conv) for u in units} == {id(c) for c in backbone_convs}
    # In forward order every backbone unit consumes what the previous one produced.
    for prev, cur in zip(units, units[1:]):
        assert cur.in_channels == prev.out_channels
    strides = [u.stride for u in units]
    assert [i for i, s in enumerate(strides) if s == 2] == [1, 4, 9, 26, 43]
    assert (units[0].kernel_size, units[0].out_channels) == (3, 32)
    head_units = full_net.head.conv_units()
    assert len(head_units) == 23
    assert [i for i, u in enumerate(head_units) if isinstance(u, OutputConv)] == [6, 14, 22]
    head_convs = {id(c) for _, c in full_net.head.cells_and_names() if isinstance(c, nn.Conv2d)}
    unit_convs = {id(u if isinstance(u, OutputConv) else u.conv) for u in head_units}
    assert unit_convs == head_convs


def test_parameter_names_are_stable(full_net):
    names = {p.name for p in full_net.get_parameters()}
    assert all(n.startswith(("backbone.", "head.")) for n in names)
    for name in (
        "backbone.conv0.conv.weight",
        "backbone.layer1.0.conv1.bn.gamma",
        "backbone.layer5.3.conv2.conv.weight",
        "backbone.conv5.bn.moving_variance",
        "head.backblock0.conv0.conv.weight",
        "head.conv1.bn.beta",
        "head.backblock2.conv6.weight",
        "head.backblock2.conv6.bias",
    ):
        assert name in names, name
    assert full_net.backbone.out_channels == (256, 512, 1024)
    assert full_net.head.out_channels == (255, 255, 255)


def test_initialisation_follows_seed(full_net):
    for _, cell in full_net.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            w = cell.weight.asnumpy()
            fan_in = w[0].size
            bound = 1.0 / math.sqrt(fan_in)  # Kaiming-uniform, a = sqrt(5)
            assert np.abs(w).max() <= bound * (1 + 1e-6)
            if w.size >= 100_000:
                assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound
            if isinstance(cell, OutputConv):
                b = cell.bias.asnumpy()
                assert np.abs(b).max() <= bound and np.abs(b).max() > 0.5 * bound
            else:
                assert cell.bias is None
        if isinstance(cell, nn.BatchNorm2d):
            assert np.all(cell.gamma.asnumpy() == 1) and np.all(cell.beta.asnumpy() == 0)
            assert np.all(cell.moving_mean.asnumpy() == 0)
            assert np.all(cell.moving_variance.asnumpy() == 1)


def test_full_width_forward(full_net):
    # Full width at a small input: the channel counts of every level (the 416 px grids are
    # checked at a small width below; a 416 px forward at full width costs 40x this one).
    full_net.set_train(False)
    c3, c4, c5 = full_net.backbone(_image(1, 64, 64))
    assert (c3.shape, c4.shape, c5.shape) == (
        (1, 256, 8, 8),
        (1, 512, 4, 4),
        (1, 1024, 2, 2),
    )
    outs = full_net.head(c3, c4, c5)
    assert [o.shape for o in outs] == [(1, 255, 2, 2), (1, 255, 4, 4), (1, 255, 8, 8)]
    assert all(np.isfinite(o.asnumpy()).all() for o in outs)


# --- shapes, modes and decoding on toy widths -------------------------------------------------


def test_416_grids_with_80_classes_at_small_width():
    net = yolov3_darknet53(width=0.125)
    net.set_train(True)
    raws = net(_image(1, 416, 416))
    assert [o.shape for o in raws] == [(1, 255, 13, 13), (1, 255, 26, 26), (1, 255, 52, 52)]
    net.set_train(False)
    boxes, scores = net(_image(1, 416, 416))
    candidates = 3 * (13 * 13 + 26 * 26 + 52 * 52)  # 10647
    assert (boxes.shape, scores.shape) == ((1, candidates, 4), (1, candidates, 80))
    assert net.head.out_channels == (255, 255, 255)


def test_multi_scale_sizes_work():
    # The smallest and largest multi-scale sizes and one whose grids are odd (11, 22, 44):
    # the arithmetic is size // stride at every level, the same for the sizes in between.
    net = yolov3_darknet53(width=TINY, num_classes=3)
    net.set_train(True)
    for size in (320, 352, 608):
        outs = net(_image(1, size, size))
        assert [o.shape[2:4] for o in outs] == [(size // s, size // s) for s in (32, 16, 8)]
        assert all(o.shape[1] == 3 * 8 for o in outs)
    outs = net(_image(1, 320, 608))  # non-square: H then W
    assert [o.shape[2:4] for o in outs] == [(10, 19), (20, 38), (40, 76)]


@pytest.mark.parametrize("shape", [(300, 300), (416, 300), (0, 416), (32.5, 416)])
def test_input_size_must_be_multiple_of_32(shape):
    with pytest.raises(ConfigError, match="multiple of 32"):
        check_input_shape(*shape)
    with pytest.raises(ConfigError, match="multiple of 32"):
        yolov3_darknet53(width=TINY, num_classes=2).check_input_shape(*shape)


def test_detector_call_rejects_bad_size_in_both_modes(graph_mode, tmp_path, monkeypatch):
    # A failed graph compile writes rank_0/om/analyze_fail.ir under MS_OM_PATH (default: cwd).
    monkeypatch.setenv("MS_OM_PATH", str(tmp_path))
    net = yolov3_darknet53(width=TINY, num_classes=2)
    with pytest.raises(ConfigError, match="height 300"):
        net(_image(1, 300, 320))

    class Wrapped(nn.Cell):  # a compiled graph that contains the detector
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def construct(self, x):
            return self.inner(x)[0].sum()

    with pytest.raises(ValueError, match="multiples of 32"):
        Wrapped(net)(_image(1, 96, 80))


def test_pynative_and_graph_mode_agree_and_graph_training_updates_every_batchnorm():
    # One network for both claims: each graph (eval, train) is compiled once.
    ms.set_seed(3)
    net = yolov3_darknet53(width=TINY, num_classes=4, bn_momentum=0.9)
    bns = [c for _, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    assert len(bns) == 72

    def means() -> list[np.ndarray]:
        return [bn.moving_mean.asnumpy().copy() for bn in bns]

    x = _image(2, 64, 64, seed=1)
    modes = (ms.PYNATIVE_MODE, ms.GRAPH_MODE)
    results = {mode: [] for mode in modes}
    try:
        # Eval first: a training-mode forward updates the BN moving statistics.
        for train in (False, True):
            net.set_train(train)  # training mode uses batch statistics
            for mode in modes:
                ms.set_context(mode=mode)
                before = means()
                results[mode] += [o.asnumpy() for o in net(x)]
                if train and mode == ms.GRAPH_MODE:  # the graph updates every BN
                    for b, bn in zip(before, bns):
                        assert not np.allclose(bn.moving_mean.asnumpy(), b), bn.moving_mean.name
        net.set_train(False)  # eval mode (graph) leaves them alone
        before = means()
        net(_image(2, 64, 64, seed=8))
        assert all(np.array_equal(b, a) for b, a in zip(before, means()))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(results[ms.GRAPH_MODE]) == 5  # eval: boxes, scores; training: 3 raw outputs
    for a, b in zip(results[ms.PYNATIVE_MODE], results[ms.GRAPH_MODE]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_decode_matches_numpy_reference():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(2, 3, 5, 3, 7)).astype(np.float32)
    anchors = np.array([[10, 13], [16, 30], [33, 23]], np.float32)
    in_w, in_h = 160, 96
    grid, bxy, bwh = YoloDecode()(Tensor(raw), Tensor(anchors), in_w, in_h)
    ref = _np_decode(raw, anchors, in_w, in_h)
    assert grid.shape == (1, 3, 5, 1, 2)
    assert grid.asnumpy()[0, 2, 4, 0].tolist() == [4.0, 2.0]  # (c_x, c_y)
    np.testing.assert_allclose(bxy.asnumpy(), ref[..., 0:2], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bwh.asnumpy(), ref[..., 2:4], rtol=1e-5, atol=1e-6)
    # the head's decode takes the raw channel-first output [N, A*K, H, W]
    head_out = raw.transpose(0, 3, 4, 1, 2).reshape(2, 3 * 7, 3, 5)
    boxes, scores = YoloPredict([anchors])((Tensor(head_out),), in_h, in_w)
    np.testing.assert_allclose(boxes.asnumpy(), ref[..., 0:4].reshape(2, -1, 4), rtol=1e-5)
    want = (ref[..., 4:5] * ref[..., 5:]).reshape(2, -1, 2)  # objectness x class probability
    np.testing.assert_allclose(scores.asnumpy(), want, rtol=1e-5, atol=1e-7)


def test_eval_output_is_decoded_head_output():
    net = yolov3_darknet53(width=TINY, num_classes=2)
    net.set_train(False)
    x = _image(2, 64, 96, seed=2)
    boxes, scores = (o.asnumpy() for o in net(x))
    maps = net.head(*net.backbone(x))
    refs = []
    for m, mask in zip(maps, net.head.anchor_masks):
        n, _, h, w = m.shape
        raw = m.asnumpy().reshape(n, len(mask), 7, h, w).transpose(0, 3, 4, 1, 2)
        refs.append(
            _np_decode(raw, np.asarray(DEFAULT_ANCHORS, np.float32)[list(mask)], 96, 64).reshape(
                n, -1, 7
            )
        )
    ref = np.concatenate(refs, axis=1)  # the outputs in order, each (row, column, anchor)
    np.testing.assert_allclose(boxes, ref[..., 0:4], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scores, ref[..., 4:5] * ref[..., 5:], rtol=1e-4, atol=1e-6)


def test_training_and_eval_output_structure():
    net = yolov3_darknet53(width=TINY, num_classes=2)
    x = _image(2, 64, 64, seed=4)
    net.set_train(True)
    raws = net(x)
    net.set_train(False)
    boxes, scores = (o.asnumpy() for o in net(x))
    assert isinstance(raws, tuple)
    assert [r.shape for r in raws] == [(2, 21, 2, 2), (2, 21, 4, 4), (2, 21, 8, 8)]
    assert min(r.asnumpy().min() for r in raws) < 0  # raw logits
    assert boxes.shape == (2, 3 * (4 + 16 + 64), 4) and scores.shape == (2, 252, 2)
    assert (boxes[..., 0:2] >= 0).all() and (boxes[..., 0:2] <= 1).all()
    assert (boxes[..., 2:4] > 0).all()
    assert (scores > 0).all() and (scores < 1).all()
    assert net.strides == (32, 16, 8) and net.output_format == "yolo"
    assert net.in_indices == (0, 1, 2) and net.input_multiple == 32
    head = net.head
    assert head.anchors.shape == (9, 2) and head.anchors.dtype == np.float32
    assert head.anchor_masks == ((6, 7, 8), (3, 4, 5), (0, 1, 2))
    assert head.loss_params["anchor_masks"] == [[6, 7, 8], [3, 4, 5], [0, 1, 2]]
    assert not list(head.decode.get_parameters())  # the decode adds nothing to checkpoints


# --- options ---------------------------------------------------------------------------------


def test_relu_and_leaky_backbones():
    x = _image(1, 64, 64, seed=5)
    relu = darknet53(width=TINY)
    leaky = darknet53(width=TINY, activation="leaky", negative_slope=0.1)
    assert all(u.activation == "relu" and isinstance(u.act, nn.ReLU) for u in relu.conv_units())
    assert all(isinstance(u.act, nn.LeakyReLU) for u in leaky.conv_units())
    # Residual adds of ReLU outputs stay >= 0; LeakyReLU lets negative values through.
    assert min(c.asnumpy().min() for c in relu(x)) >= 0
    assert min(c.asnumpy().min() for c in leaky(x)) < 0
    head = yolov3_head(in_channels=relu.out_channels, width=TINY)
    assert all(isinstance(u.act, nn.LeakyReLU) for u in head.conv_units()[:6])


def test_symmetric_and_same_padding_give_equal_shapes():
    x = _image(1, 96, 160, seed=6)
    paddings = ("symmetric", "same")
    nets = {p: yolov3_darknet53(width=TINY, num_classes=2, padding=p) for p in paddings}
    ms.load_param_into_net(nets["same"], nets["symmetric"].parameters_dict())
    outs = {}
    for p, net in nets.items():
        net.set_train(False)
        outs[p] = [o.asnumpy() for o in net(x)]
    assert [o.shape for o in outs["same"]] == [o.shape for o in outs["symmetric"]]
    # Same weights, different padding: the boxes must differ.
    assert not np.allclose(outs["same"][0], outs["symmetric"][0])


@pytest.mark.parametrize(
    ("factory", "params", "field"),
    [
        (darknet53, {"width": 0}, "width"),
        (darknet53, {"width": -0.5}, "width"),
        (darknet53, {"width": float("nan")}, "width"),
        (darknet53, {"width": "half"}, "width"),
        (darknet53, {"activation": "swish"}, "activation"),
        (darknet53, {"padding": "valid"}, "padding"),
        (darknet53, {"bn_momentum": 1.5}, "bn_momentum"),
        (darknet53, {"in_channels": 0}, "in_channels"),
        (darknet53, {"blocks": [1, 2, 8, 8]}, "blocks"),
        (darknet53, {"blocks": [1, 2, 8, 0, 4]}, "blocks"),
        (yolov3_head, {"num_classes": 0}, "num_classes"),
        (yolov3_head, {"width": 0}, "width"),
        (yolov3_head, {"anchors": DEFAULT_ANCHORS[:8]}, "anchor_masks"),
        (yolov3_head, {"anchors": [[10, -13], *DEFAULT_ANCHORS[1:]]}, "anchors"),
        (yolov3_head, {"anchors": [[10, 13, 5]] * 9}, "anchors"),
        (yolov3_head, {"anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 9]]}, "anchor_masks"),
        (yolov3_head, {"anchor_masks": [[6, 7, 8], [0, 1, 2, 3, 4, 5]]}, "anchor_masks"),
        (yolov3_head, {"anchor_masks": [[6, 7, 8], [3, 4, 5], [0, 1, 1]]}, "anchor_masks"),
        (yolov3_head, {"in_channels": (256, 512)}, "in_channels"),
    ],
)
def test_bad_parameters_raise_config_error(factory, params, field):
    if factory is yolov3_head:
        params = {"in_channels": (8, 16, 32), **params}
    with pytest.raises(ConfigError, match=field):
        factory(**params)


def test_blocks_set_the_depth_with_the_same_parameter_names():
    deep, shallow = darknet53(width=0.0625), darknet53(width=0.0625, blocks=[1, 1, 2, 1, 1])
    assert len(deep.conv_units()) == 52 and len(shallow.conv_units()) == 2 + 2 * 6 + 4
    names = {p.name for p in shallow.get_parameters()}
    assert "layer3.1.conv2.conv.weight" in names and "layer3.2.conv1.conv.weight" not in names
    assert names < {p.name for p in deep.get_parameters()}
    x = Tensor(np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32))
    shapes = [tuple(c.shape) for c in shallow(x)]
    assert shapes == [tuple(c.shape) for c in deep(x)]


def test_width_scales_channels_and_custom_classes():
    net = yolov3_darknet53(width=0.25, num_classes=5)
    assert net.backbone.out_channels == (64, 128, 256)
    assert net.head.out_channels == (30, 30, 30)
    assert net.num_classes == 5
    assert net.head.backblock0.conv0.out_channels == 128


def test_hooks_and_cheap_manifests():
    assert yoloqat_backbones() == {"darknet53": darknet53}
    assert yoloqat_heads() == {
        "yolov3_head": yolov3_head,
        "yolov3_tiny_head": yolov3_tiny_head,
        "darknet_yolo_head": darknet_yolo_head,
    }
    code = (
        "import sys, yoloqat.plugins.darknet53, yoloqat.plugins.yolov3, "
        "yoloqat.plugins.darknet_tiny;"
        "print('mindspore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
