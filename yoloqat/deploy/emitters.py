"""ONNX emitters: one function per cell type, kept in an extensible table.

An emitter is ``fn(g: GraphBuilder, cell, *inputs: str) -> str | tuple[str, ...]``: it
adds the ONNX nodes computing ``cell.construct(*inputs)`` (eval mode) and returns the
output tensor name(s). :func:`emit` looks the cell's type up in :data:`EMITTERS`; a
subclass that does not override ``construct`` uses its base class's emitter. A third-party
component registers its own with :func:`register_emitter`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from yoloqat.core.errors import PluginError
from yoloqat.deploy.graph import GraphBuilder

Emitter = Callable[..., Any]

#: cell type -> emitter. Extend with :func:`register_emitter`.
EMITTERS: dict[type, Emitter] = {}


def register_emitter(cell_type: type, emitter: Emitter | None = None) -> Any:
    """Register ``emitter`` for ``cell_type`` (usable as a decorator when ``emitter`` is None)."""

    def add(fn: Emitter) -> Emitter:
        EMITTERS[cell_type] = fn
        return fn

    return add if emitter is None else add(emitter)


def find_emitter(cell: Any, where: str = "") -> Emitter:
    """The emitter of ``type(cell)`` (or of a base whose ``construct`` it inherits).

    ``where`` (the cell's path in the network) goes into the error message.
    """
    cls = type(cell)
    if cls in EMITTERS:
        return EMITTERS[cls]
    for base in cls.__mro__[1:]:
        if base in EMITTERS and getattr(cls, "construct", None) is getattr(base, "construct", 0):
            return EMITTERS[base]
    raise PluginError(
        f"cannot export to ONNX: no emitter for cell type {cls.__module__}.{cls.__qualname__}"
        + (f" (at {where})" if where else ""),
        hint="register one with yoloqat.deploy.register_emitter("
        f"{cls.__qualname__}, fn) where fn(graph, cell, *inputs) returns the output name(s)",
    )


def emit(g: GraphBuilder, cell: Any, *inputs: str, name: str = "") -> Any:
    """Emit ``cell`` on ``inputs`` inside the naming scope ``name``."""
    fn = find_emitter(cell, ".".join([*g.scope, name] if name else g.scope))
    if name:
        g.scope.append(name)
    try:
        return fn(g, cell, *inputs)
    finally:
        if name:
            g.scope.pop()


# -- conv helpers ----------------------------------------------------------------------------
def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return (int(value[0]), int(value[-1]))
    return (int(value), int(value))


def conv_geometry(conv: Any, in_hw: tuple[int, int]) -> dict[str, Any]:
    """ONNX Conv attributes and the output (H, W) of a MindSpore ``nn.Conv2d``.

    ``pad_mode='same'`` is TF SAME: output ``ceil(in / stride)``, the odd pad pixel at
    the bottom/right. ``'pad'`` uses ``conv.padding``; ``'valid'`` pads nothing.
    """
    kh, kw = _pair(conv.kernel_size)
    sh, sw = _pair(conv.stride)
    dh, dw = _pair(conv.dilation)
    mode = str(conv.pad_mode).lower()
    pads: list[int] = []
    out: list[int] = []
    for size, k, s, d in ((in_hw[0], kh, sh, dh), (in_hw[1], kw, sw, dw)):
        span = d * (k - 1) + 1
        if mode == "same":
            o = -(-size // s)
            total = max((o - 1) * s + span - size, 0)
            pads.append(total // 2)
            pads.append(total - total // 2)
        else:
            p = conv.padding if mode == "pad" else 0
            if isinstance(p, (tuple, list)):
                raise PluginError(f"conv padding {p!r} (per side) is not supported by the exporter")
            pads.extend((int(p), int(p)))
            o = (size + 2 * int(p) - span) // s + 1
        out.append(o)
    attrs = {
        "kernel_shape": [kh, kw],
        "strides": [sh, sw],
        "dilations": [dh, dw],
        "group": int(conv.group),
        # ONNX order: [top, left, bottom, right]
        "pads": [pads[0], pads[2], pads[1], pads[3]],
    }
    return {"attrs": attrs, "out_hw": (out[0], out[1])}


def fold_bn(weight: np.ndarray, bn: Any) -> tuple[np.ndarray, np.ndarray]:
    """Fold an eval-mode BatchNorm (running stats) into a bias-free conv weight (float64)."""
    gamma = bn.gamma.asnumpy().astype(np.float64)
    beta = bn.beta.asnumpy().astype(np.float64)
    mean = bn.moving_mean.asnumpy().astype(np.float64)
    var = bn.moving_variance.asnumpy().astype(np.float64)
    scale = gamma / np.sqrt(var + float(bn.eps))
    return weight.astype(np.float64) * scale[:, None, None, None], beta - mean * scale


def conv_node(
    g: GraphBuilder,
    x: str,
    conv: Any,
    weight: str,
    bias: str | None,
    out_channels: int,
    hint: str = "conv",
) -> str:
    """An ONNX Conv of ``x`` with ``conv``'s geometry and the given weight/bias tensors."""
    geom = conv_geometry(conv, g.shape_of(x)[1:])
    inputs = [x, weight] + ([bias] if bias is not None else [])
    return g.node("Conv", inputs, hint, shape=(out_channels, *geom["out_hw"]), **geom["attrs"])


def activation_node(g: GraphBuilder, x: str, activation: str, slope: float) -> str:
    """ReLU / LeakyReLU(alpha) / nothing, keeping the recorded shape."""
    shape = g.shapes.get(x)
    if activation == "relu":
        return g.node("Relu", [x], "relu", shape=shape)
    if activation == "leaky":
        return g.node("LeakyRelu", [x], "leaky", shape=shape, alpha=float(slope))
    return x


# -- basic cells -----------------------------------------------------------------------------
def emit_conv2d(g: GraphBuilder, cell: Any, x: str) -> str:
    """``nn.Conv2d`` (OutputConv included): weight and optional bias as float initializers."""
    weight = cell.weight.asnumpy().astype(np.float32)
    w = g.initializer(weight, "weight")
    b = g.initializer(cell.bias.asnumpy().astype(np.float32), "bias") if cell.has_bias else None
    return conv_node(g, x, cell, w, b, weight.shape[0])


def emit_conv_bn_act(g: GraphBuilder, cell: Any, x: str) -> str:
    """ConvBnAct: Conv with BN folded into weight and bias, then ReLU / LeakyReLU."""
    weight, bias = fold_bn(cell.conv.weight.asnumpy(), cell.bn)
    w = g.initializer(weight.astype(np.float32), "weight")
    b = g.initializer(bias.astype(np.float32), "bias")
    y = conv_node(g, x, cell.conv, w, b, weight.shape[0])
    return activation_node(g, y, cell.activation if cell.has_act else "none", cell.negative_slope)


def emit_add(g: GraphBuilder, cell: Any, x: str, y: str) -> str:
    """Element-wise residual add."""
    return g.node("Add", [x, y], "add", shape=g.shapes.get(x))


def emit_sequential(g: GraphBuilder, cell: Any, x: str) -> str:
    """``nn.SequentialCell``: its children in order."""
    for i, child in enumerate(cell):
        x = emit(g, child, x, name=str(i))
    return x


def emit_residual_block(g: GraphBuilder, cell: Any, x: str) -> str:
    """DarkNet residual block: conv1 (1x1), conv2 (3x3), add(out, x)."""
    out = emit(g, cell.conv2, emit(g, cell.conv1, x, name="conv1"), name="conv2")
    return emit(g, cell.add, out, x, name="add")


def emit_darknet53(g: GraphBuilder, cell: Any, x: str) -> tuple[str, str, str]:
    """DarkNet-53: (C3, C4, C5)."""
    x = emit(g, cell.conv1, emit(g, cell.conv0, x, name="conv0"), name="conv1")
    x = emit(g, cell.layer1, x, name="layer1")
    x = emit(g, cell.layer2, emit(g, cell.conv2, x, name="conv2"), name="layer2")
    c3 = emit(g, cell.layer3, emit(g, cell.conv3, x, name="conv3"), name="layer3")
    c4 = emit(g, cell.layer4, emit(g, cell.conv4, c3, name="conv4"), name="layer4")
    c5 = emit(g, cell.layer5, emit(g, cell.conv5, c4, name="conv5"), name="layer5")
    return c3, c4, c5


def emit_yolo_block(g: GraphBuilder, cell: Any, x: str) -> tuple[str, str]:
    """YoloBlock: (route after conv4, raw output after conv6)."""
    for i in range(5):
        x = emit(g, getattr(cell, f"conv{i}"), x, name=f"conv{i}")
    out = emit(g, cell.conv6, emit(g, cell.conv5, x, name="conv5"), name="conv6")
    return x, out


def upsample_concat(g: GraphBuilder, x: str, lateral: str) -> str:
    """Nearest resize of ``x`` to ``lateral``'s size, then Concat([upsampled, lateral])."""
    c, h, w = g.shape_of(x)
    lc, lh, lw = g.shape_of(lateral)
    if lh % h or lw % w:
        raise PluginError(f"cannot export a resize of {h}x{w} to {lh}x{lw} (not an integer factor)")
    scales = g.const([1.0, 1.0, lh / h, lw / w], "up_scales")
    up = g.node(
        "Resize",
        [x, "", scales],
        "upsample",
        shape=(c, lh, lw),
        mode="nearest",
        coordinate_transformation_mode="asymmetric",
        nearest_mode="floor",
    )
    if x in g.qparams:  # int8: keep the resized map on its input's grid (exact)
        s, z = g.qparams[x]
        up = g.node("QuantizeLinear", [up, s, z], "upsample_q", shape=(c, lh, lw))
        up = g.node("DequantizeLinear", [up, s, z], "upsample_dq", shape=(c, lh, lw))
    return g.node("Concat", [up, lateral], "concat", shape=(c + lc, lh, lw), axis=1)


def emit_yolov3_head(g: GraphBuilder, cell: Any, c3: str, c4: str, c5: str) -> tuple[str, ...]:
    """YOLOv3 neck + heads: raw (stride 32, stride 16, stride 8) maps."""
    route, out_l = emit(g, cell.backblock0, c5, name="backblock0")
    x = upsample_concat(g, emit(g, cell.conv1, route, name="conv1"), c4)
    route, out_m = emit(g, cell.backblock1, x, name="backblock1")
    x = upsample_concat(g, emit(g, cell.conv2, route, name="conv2"), c3)
    _, out_s = emit(g, cell.backblock2, x, name="backblock2")
    return out_l, out_m, out_s


def decode_output(
    g: GraphBuilder, raw: str, anchors: np.ndarray, input_hw: tuple[int, int], output: str
) -> str:
    """Detector decode of one scale into the graph output named ``output``.

    ``[N, A*K, H, W]`` -> ``[N, H, W, A, K]`` -> ``[bxy, bwh, sigmoid(obj, cls)]``, with the
    same float32 operations as :class:`yoloqat.core.decode.YoloPredict`.
    """
    channels, grid_h, grid_w = g.shape_of(raw)
    num_anchors = len(anchors)
    k = channels // num_anchors
    shape = g.const([0, num_anchors, k, grid_h, grid_w], "shape", np.int64)
    x = g.node("Reshape", [raw, shape], "reshape")
    x = g.node("Transpose", [x], "anchor_major", perm=[0, 3, 4, 1, 2])
    sig = g.node("Sigmoid", [x], "sigmoid")

    def part(src: str, start: int, end: int, hint: str) -> str:
        starts, ends, axes = (
            g.const([v], f"{hint}_{n}", np.int64)
            for n, v in (("start", start), ("end", end), ("axis", 4))
        )
        return g.node("Slice", [src, starts, ends, axes], hint)

    gy, gx = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")
    grid = np.stack([gx, gy], -1).astype(np.float32).reshape(1, grid_h, grid_w, 1, 2)
    bxy = g.node("Add", [part(sig, 0, 2, "sig_xy"), g.const(grid, "grid")], "xy_cell")
    bxy = g.node("Div", [bxy, g.const([grid_w, grid_h], "grid_size")], "bxy")
    # anchors / (W_in, H_in) in float32, as the MindSpore decode computes it
    anchors_norm = anchors.astype(np.float32) / np.array(input_hw[::-1], dtype=np.float32)
    wh = g.node("Exp", [part(x, 2, 4, "t_wh")], "exp_wh")
    bwh = g.node("Mul", [wh, g.const(anchors_norm, "anchors_norm")], "bwh")
    scores = part(sig, 4, k, "scores")
    g.reserve(output)
    g.nodes.append(
        g.helper.make_node("Concat", [bxy, bwh, scores], [output], name=f"{output}/concat", axis=-1)
    )
    return output


def register_builtin_emitters() -> None:
    """Fill :data:`EMITTERS` with the bundled architecture's cells (idempotent)."""
    from mindspore import nn

    from yoloqat.core.layers import Add, ConvBnAct
    from yoloqat.plugins.darknet53.model import DarkNet53, ResidualBlock
    from yoloqat.plugins.yolov3_head.model import YoloBlock, YoloV3Head

    builtin = {
        nn.Conv2d: emit_conv2d,
        nn.SequentialCell: emit_sequential,
        ConvBnAct: emit_conv_bn_act,
        Add: emit_add,
        ResidualBlock: emit_residual_block,
        DarkNet53: emit_darknet53,
        YoloBlock: emit_yolo_block,
        YoloV3Head: emit_yolov3_head,
    }
    for cls, fn in builtin.items():
        EMITTERS.setdefault(cls, fn)
