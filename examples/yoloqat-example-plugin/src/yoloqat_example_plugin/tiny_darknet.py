"""TinyDarkNet: a small DarkNet-style backbone built from yoloqat's shared layers.

Built from yoloqat's own parts (:class:`yoloqat.core.layers.ConvBnAct` and DarkNet-53's
``ResidualBlock``), so yoloqat's int8 QAT quantizer and ONNX exporter handle its layers like
DarkNet-53's. It follows the backbone contract: ``construct(image) -> (C3, C4, C5)`` at
strides 8, 16, 32 and an ``out_channels`` attribute; ``conv_units()`` (optional) lists its
convs in forward order, which lets ``yoloqat export-darknet`` write it.
"""

from __future__ import annotations

import math

from mindspore import nn

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import PADDINGS, ConvBnAct, check_choice
from yoloqat.plugins.darknet53.model import ResidualBlock

#: Channels of the stem and of the five downsampled stages at width 1.0.
STEM = 16
STAGES = (32, 64, 128, 256, 512)


def _check(width: object, depth: object, negative_slope: object, bn_momentum: object) -> None:
    def number(value: object) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    if not number(width) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ConfigError(f"depth={depth!r} is not valid; expected an integer >= 0")
    if not number(negative_slope) or not 0 <= negative_slope < 1:
        raise ConfigError(f"negative_slope={negative_slope!r} is not valid; expected 0 <= x < 1")
    if not number(bn_momentum) or not 0 <= bn_momentum < 1:
        raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= x < 1")


class Stage(nn.Cell):
    """A stride-2 3x3 conv followed by ``depth`` residual blocks."""

    def __init__(self, in_channels: int, channels: int, depth: int, **unit: object) -> None:
        super().__init__()
        self.down = ConvBnAct(in_channels, channels, 3, 2, **unit)
        hidden = max(1, channels // 2)
        self.blocks = nn.SequentialCell(
            [ResidualBlock(channels, hidden, **unit) for _ in range(depth)]
        )
        self.depth = depth

    def conv_units(self) -> list[ConvBnAct]:
        units = [self.down]
        for block in self.blocks:
            units += [block.conv1, block.conv2]
        return units

    def construct(self, x):
        x = self.down(x)
        if self.depth > 0:
            x = self.blocks(x)
        return x


class TinyDarkNet(nn.Cell):
    """image [N, in_channels, H, W] -> (C3, C4, C5); see ``tiny_darknet`` for parameters."""

    def __init__(
        self,
        *,
        activation: str = "leaky",
        negative_slope: float = 0.1,
        width: float = 1.0,
        depth: int = 1,
        padding: str = "symmetric",
        bn_momentum: float = 0.9,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky"))
        check_choice("padding", padding, PADDINGS)
        _check(width, depth, negative_slope, bn_momentum)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"in_channels={in_channels!r} is not valid; expected an integer >= 1")
        self.activation = activation
        self.padding = padding
        unit = {
            "activation": activation,
            "negative_slope": float(negative_slope),
            "bn_momentum": float(bn_momentum),
            "padding": padding,
        }
        chans = [max(1, round(c * width)) for c in (STEM, *STAGES)]
        self.stem = ConvBnAct(in_channels, chans[0], 3, 1, **unit)
        self.stage1 = Stage(chans[0], chans[1], depth, **unit)
        self.stage2 = Stage(chans[1], chans[2], depth, **unit)
        self.stage3 = Stage(chans[2], chans[3], depth, **unit)
        self.stage4 = Stage(chans[3], chans[4], depth, **unit)
        self.stage5 = Stage(chans[4], chans[5], depth, **unit)
        #: Channels of (C3, C4, C5): what the head is built for.
        self.out_channels: tuple[int, int, int] = (chans[3], chans[4], chans[5])
        self.out_strides: tuple[int, int, int] = (8, 16, 32)

    def conv_units(self) -> list[ConvBnAct]:
        """Every ConvBnAct in forward order (used by ``yoloqat export-darknet``)."""
        stages = (self.stage1, self.stage2, self.stage3, self.stage4, self.stage5)
        return [self.stem] + [u for s in stages for u in s.conv_units()]

    def construct(self, x):
        x = self.stage2(self.stage1(self.stem(x)))
        c3 = self.stage3(x)
        c4 = self.stage4(c3)
        c5 = self.stage5(c4)
        return c3, c4, c5
