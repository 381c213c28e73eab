"""FcosLite: an FCOS-style anchor-free head of plain MindSpore cells, and its float decode.

Per level (one per backbone map it reads): a tower of ``nn.Conv2d`` + ``nn.BatchNorm2d`` +
``nn.ReLU``/``nn.SiLU`` runs, each an ``nn.SequentialCell`` (a 1x1 conv to ``channels``,
then ``tower_convs`` 3x3 convs), shared by three 1x1 ``nn.Conv2d`` predictors:

- ``box``: 4 channels ``t``; the distances from the point to the box's left, top, right and
  bottom sides are ``exp(t) * stride`` pixels (positive by construction);
- ``ctr``: 1 channel, the centerness logit;
- ``cls``: ``C`` channels, class logits (sigmoid, no background class).

Each raw output is ``[N, 4 + 1 + C, H, W]`` in that channel order (``output_format``
"fcos_ltrb"). A level's points are its cell centres ``((x + 0.5) * stride, (y + 0.5) *
stride)`` in input pixels. :class:`FcosDecode` turns the raw outputs into boxes and scores,
in float, from the static shapes (``ops.arange``, ``exp``, ``sigmoid``, ``sqrt``: ops that
MindSpore's ONNX exporter maps), so it is part of every exported graph unchanged.

No yoloqat code: yoloqat's int8_qat quantizes the towers' conv + BN + activation runs and
the predictors (plain convs) by pattern, and its exporter traces the head and the decode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from mindspore import Tensor, nn, ops

#: The head's activations by name.
ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


def level_points(height: int, width: int, stride: int, dtype):
    """Cell centres of an ``height x width`` map of ``stride``: ``(px, py)``, each
    ``[H * W, 1]`` in input pixels, row-major (the order of a flattened map)."""
    px = (ops.arange(width).astype(dtype) + 0.5) * stride  # [W]
    py = (ops.arange(height).astype(dtype) + 0.5) * stride  # [H]
    px = ops.broadcast_to(px, (height, width))
    py = ops.broadcast_to(ops.expand_dims(py, 1), (height, width))
    return ops.reshape(px, (height * width, 1)), ops.reshape(py, (height * width, 1))


def flatten_level(raw):
    """A raw output ``[N, K, H, W]`` -> ``[N, H * W, K]`` (points row-major)."""
    n, k, h, w = raw.shape
    return ops.reshape(ops.transpose(raw, (0, 2, 3, 1)), (n, h * w, k))


def distances(t_box, stride):
    """Box distances ``(l, t, r, b)`` in pixels from the raw box channels."""
    return ops.exp(t_box) * stride


class FcosDecode(nn.Cell):
    """The family's decode (the head's ``decode`` member): raw outputs -> boxes, scores.

    ``construct(outputs, input_h, input_w) -> (boxes [N, M, 4], scores [N, M, C])``, ``M``
    the points of every level in output order (each row-major); boxes ``(cx, cy, w, h)``
    normalised to the input, scores ``sqrt(sigmoid(cls) * sigmoid(centerness))`` (the
    geometric mean keeps them on the scale of a probability; the ranking is the product's).
    """

    def __init__(self, strides: Sequence[int]) -> None:
        super().__init__()
        self.strides = tuple(int(s) for s in strides)

    def construct(self, outputs, input_h, input_w):
        boxes = ()
        scores = ()
        for i in range(len(self.strides)):
            stride = self.strides[i]
            raw = outputs[i]
            h, w = raw.shape[2], raw.shape[3]
            x = flatten_level(raw)
            px, py = level_points(h, w, stride, x.dtype)
            d = distances(x[..., 0:4], stride)
            left, top, right, bottom = d[..., 0:1], d[..., 1:2], d[..., 2:3], d[..., 3:4]
            cx = px + (right - left) * 0.5
            cy = py + (bottom - top) * 0.5
            box = ops.concat(
                (cx / input_w, cy / input_h, (left + right) / input_w, (top + bottom) / input_h),
                -1,
            )
            score = ops.sqrt(ops.sigmoid(x[..., 5:]) * ops.sigmoid(x[..., 4:5]))
            # tuple + tuple: GRAPH_MODE's parser does not take (*boxes, x) here
            boxes = boxes + (box,)  # noqa: RUF005
            scores = scores + (score,)  # noqa: RUF005
        return ops.concat(boxes, 1), ops.concat(scores, 1)


def _conv_bn_act(cin: int, cout: int, kernel: int, act: type, momentum: float):
    # One SequentialCell per run: int8_qat's rewrite of a SequentialCell holding two runs
    # fails below the network's top level (IndexError in
    # MindSpore's SequentialCell.__setitem__ on the second run).
    return nn.SequentialCell(
        [
            nn.Conv2d(cin, cout, kernel, pad_mode="pad", padding=kernel // 2, has_bias=False),
            nn.BatchNorm2d(cout, momentum=momentum),
            act(),
        ]
    )


def _predictor(cin: int, cout: int, bias: float) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, 1, has_bias=True, weight_init="normal")
    # normal(0, 0.01) weights as FCOS: the first outputs are the biases (boxes of one
    # stride, class probability ``prior_prob``), which keeps the first steps' loss sane.
    conv.weight.set_data(Tensor(conv.weight.asnumpy() * 0.01, conv.weight.dtype))
    conv.bias.set_data(Tensor(np.full((cout,), bias, np.float32)))
    return conv


class FcosLiteHead(nn.Cell):
    """The backbone's last ``levels`` maps -> one raw output per map (finest first).

    See ``yoloqat_example_plugin.fcos_lite`` for the parameters.
    """

    output_format = "fcos_ltrb"

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        num_classes: int,
        levels: int,
        channels: int,
        tower_convs: int,
        activation: str,
        bn_momentum: float,
        prior_prob: float,
    ) -> None:
        super().__init__()
        act = ACTIVATIONS[activation]
        maps = len(in_channels)
        read = tuple(int(c) for c in in_channels[maps - levels :])
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in in_strides[maps - levels :])
        self.in_indices = tuple(range(maps - levels, maps))
        self.num_levels = levels
        self.loss_params: dict = {}
        self.decode = FcosDecode(self.strides)
        towers = []
        for cin in read:
            cells = [_conv_bn_act(cin, channels, 1, act, bn_momentum)]
            cells += [
                _conv_bn_act(channels, channels, 3, act, bn_momentum) for _ in range(tower_convs)
            ]
            towers.append(nn.SequentialCell(cells))
        cls_bias = -math.log((1.0 - prior_prob) / prior_prob)
        self.towers = nn.CellList(towers)
        self.box = nn.CellList([_predictor(channels, 4, 0.0) for _ in read])
        self.ctr = nn.CellList([_predictor(channels, 1, 0.0) for _ in read])
        self.cls = nn.CellList([_predictor(channels, self.num_classes, cls_bias) for _ in read])

    def construct(self, *features):
        outs = ()
        for i in range(self.num_levels):
            x = self.towers[i](features[i])
            out = ops.concat((self.box[i](x), self.ctr[i](x), self.cls[i](x)), 1)
            outs = outs + (out,)  # noqa: RUF005 (GRAPH_MODE's parser)
        return outs
