"""YOLOv8's building blocks: Conv (conv + BN + SiLU), Bottleneck, C2f, SPPF, and the
width/depth scaling rules shared by the backbone and the head.

Every conv + BN + SiLU is a :class:`~yoloqat.core.layers.ConvBnAct` and every residual sum
an :class:`~yoloqat.core.layers.Add`, so ``int8_qat`` quantizes them by pattern (BN folded,
fake quants around the SiLU and after the sum) and the int8 export has every conv in int8.
"""

from __future__ import annotations

import math
from typing import TypeGuard

import numpy as np
from mindspore import nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import Add, ConvBnAct, ConvUnit, check_bn_eps


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_scaling(width: object, depth: object, max_channels: object) -> tuple[float, float, int]:
    """Validate the model-size multipliers; ConfigErrors name the parameter."""
    if not _is_number(width) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0 (YOLOv8n: 0.25)")
    if not _is_number(depth) or not math.isfinite(depth) or depth <= 0:
        raise ConfigError(f"depth={depth!r} is not valid; expected a number > 0 (YOLOv8n: 0.33)")
    if not _is_int(max_channels) or max_channels < 8:
        raise ConfigError(
            f"max_channels={max_channels!r} is not valid; expected an integer >= 8 (YOLOv8: 1024)"
        )
    return float(width), float(depth), int(max_channels)


def unit_params(bn_eps: object, bn_momentum: object) -> ConvUnit:
    """The ConvBnAct keyword arguments of every YOLOv8 conv (SiLU, symmetric padding)."""
    eps = check_bn_eps(bn_eps)
    if not _is_number(bn_momentum) or not 0 <= bn_momentum < 1:
        raise ConfigError(
            f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= value < 1 (MindSpore "
            "semantics: 0.97 is PyTorch's 0.03)"
        )
    return {
        "activation": "silu",
        "bn_momentum": float(bn_momentum),
        "padding": "symmetric",
        "bn_eps": eps,
    }


def channels(base: int, width: float, max_channels: int) -> int:
    """YOLOv8's channel rule: ``min(base, max_channels) * width`` rounded up to a multiple
    of 8."""
    return int(math.ceil(min(base, max_channels) * width / 8) * 8)


def repeats(base: int, depth: float) -> int:
    """YOLOv8's depth rule: ``max(round(base * depth), 1)``."""
    return max(round(base * depth), 1) if base > 1 else base


class Bottleneck(nn.Cell):
    """Two 3x3 convs; ``x + f(x)`` when ``shortcut`` (an ``Add`` cell, quantized by QAT)."""

    def __init__(self, ch: int, shortcut: bool, unit: ConvUnit) -> None:
        super().__init__()
        self.cv1 = ConvBnAct(ch, ch, 3, **unit)
        self.cv2 = ConvBnAct(ch, ch, 3, **unit)
        self.shortcut = bool(shortcut)
        self.add = Add()

    def construct(self, x):
        y = self.cv2(self.cv1(x))
        if self.shortcut:
            return self.add(x, y)
        return y


class C2f(nn.Cell):
    """CSP block with 2 convs: 1x1 to ``2c`` channels, split in halves ``(a, b)``, ``n``
    bottlenecks chained on ``b`` each appended, concat ``(a, b, m1, ..., mn)``, 1x1 out.

    The split is two channel slices (ONNX ``Slice``: exported, and exact on int8 inputs).
    """

    def __init__(self, c_in: int, c_out: int, n: int, shortcut: bool, unit: ConvUnit) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = ConvBnAct(c_in, 2 * self.c, 1, **unit)
        self.m = nn.CellList([Bottleneck(self.c, shortcut, unit) for _ in range(n)])
        self.cv2 = ConvBnAct((2 + n) * self.c, c_out, 1, **unit)

    def construct(self, x):
        y = self.cv1(x)
        c = self.c
        b = y[:, c:]
        parts: tuple = (y[:, :c], b)
        for block in self.m:
            b = block(b)
            parts = parts + (b,)  # noqa: RUF005 (GRAPH_MODE's parser)
        return self.cv2(ops.concat(parts, 1))


class SPPF(nn.Cell):
    """Spatial pyramid pooling, fast: 1x1 to half the channels, three chained 5x5 stride-1
    max pools, concat of the four, 1x1 out."""

    def __init__(self, c_in: int, c_out: int, unit: ConvUnit, k: int = 5) -> None:
        super().__init__()
        mid = c_in // 2
        self.cv1 = ConvBnAct(c_in, mid, 1, **unit)
        self.cv2 = ConvBnAct(4 * mid, c_out, 1, **unit)
        self.pool = nn.MaxPool2d(kernel_size=k, stride=1, pad_mode="same")

    def construct(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        y3 = self.pool(y2)
        return self.cv2(ops.concat((x, y1, y2, y3), 1))
