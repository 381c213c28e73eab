"""DarkNet-53 backbone (docs/seed.md §1.1-1.2): 52 conv units returning (C3, C4, C5).

Cell and parameter names follow the seed's ``darknet.py`` (``conv0``, ``conv1``, ``layer1``,
``conv2``, ..., ``layer5``; blocks ``layerK.i.conv1`` / ``layerK.i.conv2``) and are stable:
checkpoints and the Darknet-weights importer rely on them. :meth:`DarkNet53.conv_units`
lists the conv units in Darknet ``.cfg`` / ``.weights`` file order.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mindspore import nn

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import PADDINGS, Add, ConvBnAct, ConvUnit, check_bn_eps, check_choice

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Residual blocks per stage and output channels of each stage (width 1.0).
STAGE_BLOCKS = (1, 2, 8, 8, 4)
STAGE_CHANNELS = (64, 128, 256, 512, 1024)
STEM_CHANNELS = 32
BACKBONE_ACTIVATIONS = ("relu", "leaky")


def scale_channels(channels: int, width: float) -> int:
    """Channel count ``channels`` scaled by ``width``: ``max(1, round(channels * width))``."""
    return max(1, round(channels * width))


def check_width(width: object) -> float:
    """Return ``width`` as a float, or raise a ConfigError unless it is a finite number > 0."""
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0 (1.0 = full size)")
    if not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0 (1.0 = full size)")
    return float(width)


def check_blocks(blocks: object) -> tuple[int, ...]:
    """Return ``blocks`` as a 5-tuple of ints >= 1, or raise a ConfigError naming it."""
    if not (
        isinstance(blocks, (list, tuple))
        and len(blocks) == len(STAGE_BLOCKS)
        and all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in blocks)
    ):
        raise ConfigError(
            f"blocks={blocks!r} is not valid; expected {len(STAGE_BLOCKS)} integers >= 1, "
            f"the residual blocks of each stage (DarkNet-53: {list(STAGE_BLOCKS)})"
        )
    return tuple(blocks)


def check_bn_momentum(bn_momentum: object) -> float:
    """Return ``bn_momentum`` as a float, or raise a ConfigError unless 0 <= m < 1."""
    if (
        isinstance(bn_momentum, bool)
        or not isinstance(bn_momentum, (int, float))
        or not 0.0 <= bn_momentum < 1.0
    ):
        raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= value < 1")
    return float(bn_momentum)


def check_negative_slope(negative_slope: object) -> float:
    """Return ``negative_slope`` as a float, or raise a ConfigError unless 0 <= slope < 1."""
    if (
        isinstance(negative_slope, bool)
        or not isinstance(negative_slope, (int, float))
        or not 0.0 <= negative_slope < 1.0
    ):
        raise ConfigError(
            f"negative_slope={negative_slope!r} is not valid; expected 0 <= value < 1 (e.g. 0.1)"
        )
    return float(negative_slope)


class ResidualBlock(nn.Cell):
    """1x1 conv to ``hidden`` channels, 3x3 conv back to ``channels``, identity add.

    There is no activation after the add (docs/seed.md §1.2).
    """

    def __init__(self, channels: int, hidden: int, **unit: Unpack[ConvUnit]) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(channels, hidden, 1, **unit)
        self.conv2 = ConvBnAct(hidden, channels, 3, **unit)
        self.add = Add()

    def construct(self, x):
        out = self.conv2(self.conv1(x))
        return self.add(out, x)


class DarkNet53(nn.Cell):
    """DarkNet-53 feature extractor: image [N, in_channels, H, W] -> (C3, C4, C5).

    C3, C4, C5 have strides 8, 16, 32 and ``out_channels`` channels (256, 512, 1024 at
    width 1.0). See :func:`yoloqat.plugins.darknet53.darknet53` for the parameters.
    """

    def __init__(
        self,
        *,
        activation: str = "relu",
        negative_slope: float = 0.1,
        width: float = 1.0,
        padding: str = "symmetric",
        bn_momentum: float = 0.9,
        bn_eps: float = 1e-5,
        in_channels: int = 3,
        blocks: tuple[int, ...] | list[int] = STAGE_BLOCKS,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, BACKBONE_ACTIVATIONS)
        check_choice("padding", padding, PADDINGS)
        width = check_width(width)
        negative_slope = check_negative_slope(negative_slope)
        blocks = check_blocks(blocks)
        bn_momentum = check_bn_momentum(bn_momentum)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"in_channels={in_channels!r} is not valid; expected an integer >= 1")
        self.activation = activation
        self.width = width
        self.blocks = blocks
        self.padding = padding
        unit: ConvUnit = {
            "activation": activation,
            "negative_slope": negative_slope,
            "bn_momentum": bn_momentum,
            "padding": padding,
            "bn_eps": check_bn_eps(bn_eps),
        }
        stem = scale_channels(STEM_CHANNELS, width)
        chans = [scale_channels(c, width) for c in STAGE_CHANNELS]
        hidden = [scale_channels(c // 2, width) for c in STAGE_CHANNELS]

        self.conv0 = ConvBnAct(in_channels, stem, 3, 1, **unit)
        self.conv1 = ConvBnAct(stem, chans[0], 3, 2, **unit)
        self.layer1 = self._stage(blocks[0], chans[0], hidden[0], unit)
        self.conv2 = ConvBnAct(chans[0], chans[1], 3, 2, **unit)
        self.layer2 = self._stage(blocks[1], chans[1], hidden[1], unit)
        self.conv3 = ConvBnAct(chans[1], chans[2], 3, 2, **unit)
        self.layer3 = self._stage(blocks[2], chans[2], hidden[2], unit)
        self.conv4 = ConvBnAct(chans[2], chans[3], 3, 2, **unit)
        self.layer4 = self._stage(blocks[3], chans[3], hidden[3], unit)
        self.conv5 = ConvBnAct(chans[3], chans[4], 3, 2, **unit)
        self.layer5 = self._stage(blocks[4], chans[4], hidden[4], unit)
        #: Channels of (C3, C4, C5).
        self.out_channels: tuple[int, int, int] = (chans[2], chans[3], chans[4])
        #: Strides of (C3, C4, C5) relative to the input.
        self.strides: tuple[int, int, int] = (8, 16, 32)

    @staticmethod
    def _stage(blocks: int, channels: int, hidden: int, unit: ConvUnit) -> nn.SequentialCell:
        return nn.SequentialCell([ResidualBlock(channels, hidden, **unit) for _ in range(blocks)])

    def conv_units(self) -> list[ConvBnAct]:
        """The ConvBnAct units (52 in DarkNet-53) in Darknet file order (the forward order).

        conv0, conv1, layer1 blocks (each: 1x1 ``conv1`` then 3x3 ``conv2``), conv2, layer2,
        conv3, layer3, conv4, layer4, conv5, layer5. This is also the order of the
        ``[convolutional]`` sections of Darknet's ``darknet53.cfg`` / ``yolov3.cfg``.
        """
        units: list[ConvBnAct] = [self.conv0]
        downs = (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5)
        stages = (self.layer1, self.layer2, self.layer3, self.layer4, self.layer5)
        for down, stage in zip(downs, stages):
            units.append(down)
            for block in stage:
                units.extend((block.conv1, block.conv2))
        return units

    def construct(self, x):
        x = self.conv1(self.conv0(x))
        x = self.layer1(x)
        x = self.layer2(self.conv2(x))
        c3 = self.layer3(self.conv3(x))
        c4 = self.layer4(self.conv4(c3))
        c5 = self.layer5(self.conv5(c4))
        return c3, c4, c5
