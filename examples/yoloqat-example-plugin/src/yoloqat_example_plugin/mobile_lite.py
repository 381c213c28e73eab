"""MobileLite: a small MobileNetV2-style backbone made of plain MindSpore cells.

No yoloqat layers and no export code: ``nn.Conv2d`` (depthwise ones with ``group=c``),
``nn.BatchNorm2d`` and ``nn.SiLU`` in ``nn.SequentialCell`` runs, and the inverted
residual ``x + f(x)`` written in ``construct``. yoloqat's ``int8_qat`` quantizes the
conv + BN + activation runs by pattern and its ONNX exporter traces the network as it is.

It follows the backbone contract (:class:`yoloqat.core.contracts.backbone.Backbone`):
``construct(image) -> (C3, C4, C5)`` at strides 8, 16, 32 and the ``out_channels`` and
``strides`` attributes.
"""

from __future__ import annotations

import math

from mindspore import nn

from yoloqat.core.errors import ConfigError

#: Channels of the stem (stride 2) and of the four stages (strides 4, 8, 16, 32) at width 1.0.
STEM = 16
STAGES = (24, 32, 64, 128)


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int,
    stride: int = 1,
    *,
    group: int = 1,
    act: bool = True,
    momentum: float = 0.9,
) -> nn.SequentialCell:
    """``Conv2d`` (no bias, symmetric padding) + ``BatchNorm2d`` [+ ``SiLU``]."""
    cells = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            pad_mode="pad",
            padding=kernel // 2,
            group=group,
            has_bias=False,
        ),
        nn.BatchNorm2d(out_channels, momentum=momentum),
    ]
    if act:
        cells.append(nn.SiLU())
    return nn.SequentialCell(cells)


class InvertedResidual(nn.Cell):
    """1x1 expand -> 3x3 depthwise (stride 1 or 2) -> 1x1 linear projection.

    With stride 1 and equal channels the block adds its input: ``x + f(x)``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, expand: int, momentum: float
    ) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.residual = stride == 1 and in_channels == out_channels
        self.block = nn.SequentialCell(
            [
                conv_bn(in_channels, hidden, 1, momentum=momentum),
                conv_bn(hidden, hidden, 3, stride, group=hidden, momentum=momentum),
                conv_bn(hidden, out_channels, 1, act=False, momentum=momentum),
            ]
        )

    def construct(self, x):
        if self.residual:
            return x + self.block(x)
        return self.block(x)


def _check(width: object, depth: object, expand: object, momentum: object, channels: object):
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def count(value: object, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    if not number(width) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"backbone.width={width!r} is not valid; expected a number > 0")
    if not count(depth, 0):
        raise ConfigError(f"backbone.depth={depth!r} is not valid; expected an integer >= 0")
    if not count(expand, 1):
        raise ConfigError(f"backbone.expand={expand!r} is not valid; expected an integer >= 1")
    if not number(momentum) or not 0 <= momentum < 1:
        raise ConfigError(f"backbone.bn_momentum={momentum!r} is not valid; expected 0 <= x < 1")
    if not count(channels, 1):
        raise ConfigError(f"backbone.in_channels={channels!r} is not valid; expected an int >= 1")


class MobileLite(nn.Cell):
    """image [N, in_channels, H, W] -> (C3, C4, C5); see ``mobile_lite`` for parameters."""

    def __init__(
        self,
        *,
        width: float = 1.0,
        depth: int = 1,
        expand: int = 4,
        bn_momentum: float = 0.9,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        _check(width, depth, expand, bn_momentum, in_channels)
        chans = [max(1, round(c * width)) for c in (STEM, *STAGES)]
        self.stem = conv_bn(in_channels, chans[0], 3, 2, momentum=bn_momentum)
        stages = []
        for i, out in enumerate(chans[1:]):
            blocks = [InvertedResidual(chans[i], out, 2, expand, bn_momentum)]
            blocks += [InvertedResidual(out, out, 1, expand, bn_momentum) for _ in range(depth)]
            stages.append(nn.SequentialCell(blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        #: Channels of (C3, C4, C5): what the head is built for.
        self.out_channels: tuple[int, int, int] = (chans[2], chans[3], chans[4])
        #: Strides of (C3, C4, C5) relative to the input.
        self.strides: tuple[int, int, int] = (8, 16, 32)

    def construct(self, x):
        x = self.stage1(self.stem(x))
        c3 = self.stage2(x)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        return c3, c4, c5
