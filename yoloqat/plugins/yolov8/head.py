"""YOLOv8's PAN neck and decoupled Detect head.

Neck (C3, C4, C5 = the backbone's last three maps): top-down, upsample C5 (nearest) +
concat C4 -> C2f -> ``h4``; upsample + concat C3 -> C2f -> P3 out; bottom-up, stride-2
conv + concat ``h4`` -> C2f -> P4 out; stride-2 conv + concat C5 -> C2f -> P5 out (the
neck's C2f have no shortcuts). Detect, per level: a box branch (3x3, 3x3, 1x1 to
``4 * reg_max``) and a class branch (3x3, 3x3, 1x1 to ``num_classes``); the raw output is
their concat on channels, ``[N, 4 * reg_max + C, H, W]`` (``output_format`` "dfl_ltrb").
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from mindspore import Tensor, nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import ConvBnAct, ConvUnit, OutputConv

from .blocks import C2f, channels, check_scaling, repeats, unit_params
from .decode import DflDecode

#: Neck widths at width 1.0 (P3, P4, P5 paths) and the bottlenecks of each neck C2f.
NECK = (256, 512, 1024)
NECK_BLOCKS = 3
#: The image side YOLOv8's class-bias prior assumes (5 objects per 640 x 640 image).
PRIOR_IMAGE = 640


def _ints(value: object) -> tuple[int, ...]:
    """``value`` as a tuple of ints; () unless it is an iterable of int-convertible items."""
    try:
        return tuple(int(v) for v in value) if isinstance(value, Iterable) else ()
    except (TypeError, ValueError):
        return ()


def _check_inputs(
    in_channels: object, in_strides: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    chans, strides = _ints(in_channels), _ints(in_strides)
    if len(chans) < 3 or min(chans) < 1:
        raise ConfigError(
            f"in_channels={in_channels!r} is not valid; expected the channel counts of the "
            "backbone's maps, at least 3 (the head reads the last 3), e.g. [64, 128, 256]"
        )
    read = strides[-3:]
    doubling = len(read) == 3 and read[1] == 2 * read[0] and read[2] == 2 * read[1]
    if len(strides) != len(chans) or not doubling:
        raise ConfigError(
            f"in_strides={in_strides!r} is not valid; expected one stride per backbone map, "
            "the last three each twice the one before (e.g. [8, 16, 32])"
        )
    return chans[-3:], read


def _check_classes(num_classes: object, reg_max: object) -> tuple[int, int]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} is not valid; expected an integer >= 1")
    if isinstance(reg_max, bool) or not isinstance(reg_max, int) or reg_max < 2:
        raise ConfigError(
            f"reg_max={reg_max!r} is not valid; expected an integer >= 2 (YOLOv8: 16 bins)"
        )
    return num_classes, reg_max


class DetectBranch(nn.Cell):
    """Two 3x3 convs then the linear 1x1 output conv (bias set to ``bias``)."""

    def __init__(self, c_in: int, mid: int, c_out: int, bias: float, unit: ConvUnit) -> None:
        super().__init__()
        self.cv1 = ConvBnAct(c_in, mid, 3, **unit)
        self.cv2 = ConvBnAct(mid, mid, 3, **unit)
        self.out = OutputConv(mid, c_out)
        self.out.bias.set_data(Tensor(np.full(c_out, bias, np.float32)))

    def construct(self, x):
        return self.out(self.cv2(self.cv1(x)))


class YoloV8Head(nn.Cell):
    """PAN neck + Detect: three maps -> raw outputs at strides (s, 2s, 4s), finest first;
    see :func:`yoloqat.plugins.yolov8.yolov8_head` for the parameters and their defaults."""

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        num_classes: int,
        width: float,
        depth: float,
        max_channels: int,
        reg_max: int,
        bn_eps: float,
        bn_momentum: float,
    ) -> None:
        super().__init__()
        (c3, c4, c5), read = _check_inputs(in_channels, in_strides)
        num_classes, reg_max = _check_classes(num_classes, reg_max)
        width, depth, max_channels = check_scaling(width, depth, max_channels)
        unit = unit_params(bn_eps, bn_momentum)
        n3, n4, n5 = (channels(c, width, max_channels) for c in NECK)
        n = repeats(NECK_BLOCKS, depth)
        self.num_classes = num_classes
        self.reg_max = reg_max
        self.strides = read
        self.output_format = "dfl_ltrb"
        self.in_indices = tuple(range(len(tuple(in_channels)) - 3, len(tuple(in_channels))))
        self.loss_params = {"reg_max": reg_max}
        self.decode = DflDecode(reg_max, 3)
        self.in_channels = (c3, c4, c5)
        # neck
        self.top4 = C2f(c5 + c4, n4, n, False, unit)
        self.top3 = C2f(n4 + c3, n3, n, False, unit)
        self.down3 = ConvBnAct(n3, n3, 3, 2, **unit)
        self.bottom4 = C2f(n3 + n4, n4, n, False, unit)
        self.down4 = ConvBnAct(n4, n4, 3, 2, **unit)
        self.bottom5 = C2f(n4 + c5, n5, n, False, unit)
        self.level_channels = (n3, n4, n5)
        # detect
        box_mid = max(16, n3 // 4, 4 * reg_max)
        cls_mid = max(n3, min(num_classes, 100))
        self.box = nn.CellList(
            [DetectBranch(c, box_mid, 4 * reg_max, 1.0, unit) for c in self.level_channels]
        )
        self.cls = nn.CellList(
            [
                DetectBranch(c, cls_mid, num_classes, self.class_prior(num_classes, s), unit)
                for c, s in zip(self.level_channels, read)
            ]
        )
        #: Raw output channels, the same at every level.
        self.out_channels = (4 * reg_max + num_classes,) * 3

    @staticmethod
    def class_prior(num_classes: int, stride: int) -> float:
        """YOLOv8's class-logit bias: ``log(5 / C / (640 / s)^2)``, i.e. 5 objects per 640 px
        image spread over its ``(640 / s)^2`` cells and ``C`` classes."""
        return math.log(5.0 / num_classes / (PRIOR_IMAGE / stride) ** 2)

    def construct(self, c3, c4, c5):
        up = ops.ResizeNearestNeighbor((c4.shape[2], c4.shape[3]))(c5)
        h4 = self.top4(ops.concat((up, c4), 1))
        up = ops.ResizeNearestNeighbor((c3.shape[2], c3.shape[3]))(h4)
        p3 = self.top3(ops.concat((up, c3), 1))
        p4 = self.bottom4(ops.concat((self.down3(p3), h4), 1))
        p5 = self.bottom5(ops.concat((self.down4(p4), c5), 1))
        feats = (p3, p4, p5)
        outs: tuple = ()
        for i in range(3):
            out = ops.concat((self.box[i](feats[i]), self.cls[i](feats[i])), 1)
            outs = outs + (out,)  # noqa: RUF005 (GRAPH_MODE's parser)
        return outs
