"""YOLOv8's CSPDarknet: a stride-2 conv stem, four stages (stride-2 conv + C2f with
shortcuts) and SPPF, returning P3, P4, P5 at strides 8, 16, 32.

At width 1.0, depth 1.0 (YOLOv8l) the stages have 128, 256, 512, 1024 channels (capped at
``max_channels``) and 3, 6, 6, 3 bottlenecks; the channel and depth rules are
:func:`.blocks.channels` and :func:`.blocks.repeats`.
"""

from __future__ import annotations

from mindspore import nn

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import ConvBnAct

from .blocks import SPPF, C2f, channels, check_scaling, repeats, unit_params

#: Channels of the stem and the four stages at width 1.0, and the stages' bottleneck counts.
STEM = 64
STAGES = ((128, 3), (256, 6), (512, 6), (1024, 3))


class CSPDarknet(nn.Cell):
    """(P3, P4, P5) at strides (8, 16, 32); see :func:`yoloqat.plugins.yolov8.csp_darknet`."""

    def __init__(
        self,
        *,
        width: float = 0.25,
        depth: float = 0.33,
        max_channels: int = 1024,
        bn_eps: float = 1e-3,
        bn_momentum: float = 0.97,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        width, depth, max_channels = check_scaling(width, depth, max_channels)
        unit = unit_params(bn_eps, bn_momentum)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ConfigError(f"in_channels={in_channels!r} is not valid; expected an int >= 1")
        prev = channels(STEM, width, max_channels)
        self.stem = ConvBnAct(in_channels, prev, 3, 2, **unit)
        stages = []
        outs = []
        for base, n in STAGES:
            ch = channels(base, width, max_channels)
            stages.append(
                nn.SequentialCell(
                    [ConvBnAct(prev, ch, 3, 2, **unit), C2f(ch, ch, repeats(n, depth), True, unit)]
                )
            )
            outs.append(ch)
            prev = ch
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.sppf = SPPF(prev, prev, unit)
        self.out_channels: tuple[int, int, int] = (outs[1], outs[2], outs[3])
        self.strides: tuple[int, int, int] = (8, 16, 32)

    def construct(self, x):
        x = self.stage1(self.stem(x))
        p3 = self.stage2(x)
        p4 = self.stage3(p3)
        p5 = self.sppf(self.stage4(p4))
        return p3, p4, p5
