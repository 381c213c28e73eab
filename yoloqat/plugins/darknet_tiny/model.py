"""The YOLOv3-tiny backbone (Darknet's ``yolov3-tiny.cfg`` up to its 1024-filter conv).

Seven 3x3 conv + BN + LeakyReLU units, the first five each followed by a 2x2 stride-2
maxpool and the sixth by a 2x2 **stride-1** maxpool that keeps the size: Darknet pads that
pool by one row and column at the bottom and right, which it never reads (the window max
ignores it); repeating the last row and column gives the same maxima.
"""

from __future__ import annotations

from mindspore import nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import (
    PADDINGS,
    ConvBnAct,
    ConvUnit,
    check_bn_eps,
    check_choice,
)

#: Filters of the seven convs at width 1.0.
CHANNELS = (16, 32, 64, 128, 256, 512, 1024)


class KeepSizeMaxPool(nn.Cell):
    """Darknet's ``[maxpool] size=2 stride=1``: a 2x2 max over each pixel, its right and lower
    neighbours, the last row and column repeated (the output keeps the input's size)."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, pad_mode="valid")

    def construct(self, x):
        x = ops.concat((x, x[:, :, :, -1:]), 3)
        x = ops.concat((x, x[:, :, -1:, :]), 2)
        return self.pool(x)


def _scale(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class DarknetTiny(nn.Cell):
    """(C4, C5) at strides 16 and 32: the 5th conv's map (before its pool) and the last."""

    def __init__(
        self,
        *,
        activation: str = "leaky",
        negative_slope: float = 0.1,
        width: float = 1.0,
        bn_momentum: float = 0.9,
        bn_eps: float = 1e-5,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ("relu", "leaky"))
        ok = isinstance(width, (int, float)) and not isinstance(width, bool) and width > 0
        if not ok:
            raise ConfigError(f"width={width!r} is not valid; expected a number > 0")
        if not isinstance(negative_slope, (int, float)) or not 0 <= negative_slope < 1:
            raise ConfigError(f"negative_slope={negative_slope!r} is not valid; expected 0..1")
        if not isinstance(bn_momentum, (int, float)) or not 0 <= bn_momentum < 1:
            raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= m < 1")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"in_channels={in_channels!r} is not valid; expected an int >= 1")
        unit: ConvUnit = {
            "activation": activation,
            "negative_slope": float(negative_slope),
            "bn_momentum": float(bn_momentum),
            "padding": PADDINGS[0],
            "bn_eps": check_bn_eps(bn_eps),
        }
        chans = [_scale(c, width) for c in CHANNELS]
        prev = in_channels
        convs = []
        for c in chans:
            convs.append(ConvBnAct(prev, c, 3, 1, **unit))
            prev = c
        (self.conv0, self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6) = convs
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2, pad_mode="valid")
        self.pool_keep = KeepSizeMaxPool()
        self.out_channels: tuple[int, int] = (chans[4], chans[6])
        self.strides: tuple[int, int] = (16, 32)

    def conv_units(self) -> list[ConvBnAct]:
        """The 7 convs in Darknet ``yolov3-tiny.cfg`` order."""
        return [self.conv0, self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6]

    def construct(self, x):
        x = self.pool(self.conv0(x))
        x = self.pool(self.conv1(x))
        x = self.pool(self.conv2(x))
        x = self.pool(self.conv3(x))
        c4 = self.conv4(x)
        x = self.pool_keep(self.conv5(self.pool(c4)))
        c5 = self.conv6(x)
        return c4, c5
