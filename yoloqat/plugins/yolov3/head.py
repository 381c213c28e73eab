"""YOLOv3 neck + heads (docs/seed.md §1.3-1.4): three YoloBlocks joined by 2x nearest upsampling.

Cell names follow the seed's ``yolo.py`` (``backblock0``, ``conv1``, ``backblock1``,
``conv2``, ``backblock2``; inside a block ``conv0`` ... ``conv5`` and the linear output conv
``conv6``) and are stable: checkpoints and the Darknet-weights importer rely on them.
:meth:`YoloV3Head.conv_units` lists the 23 convs in Darknet ``yolov3.cfg`` order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeGuard

import numpy as np
from mindspore import nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import (
    PADDINGS,
    ConvBnAct,
    ConvUnit,
    OutputConv,
    check_bn_eps,
    check_choice,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

#: Neck widths (the YoloBlock "mid" channels) of the stride-32, 16 and 8 paths at width 1.0.
MID_CHANNELS = (512, 256, 128)


def _scale(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_head_params(
    in_channels: object, num_classes: object, width: object, negative_slope: object, levels: int
) -> tuple[tuple[int, ...], int, float, float]:
    """Validate the scalar head parameters; return them normalised. ``in_channels`` are the
    backbone's maps (at least ``levels`` of them); the head reads the last ``levels``."""
    chans = tuple(in_channels) if isinstance(in_channels, Iterable) else ()
    if len(chans) < levels or not all(_is_int(c) and c >= 1 for c in chans):
        raise ConfigError(
            f"in_channels={in_channels!r} is not valid; expected the channel counts of the "
            f"backbone's feature maps, at least {levels} (the head reads the last {levels}), "
            "e.g. [256, 512, 1024] (the backbone's out_channels)"
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} is not valid; expected an integer >= 1")
    if not _is_number(width) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0 (1.0 = full size)")
    if not _is_number(negative_slope) or not 0 <= negative_slope < 1:
        raise ConfigError(
            f"negative_slope={negative_slope!r} is not valid; expected 0 <= value < 1 (e.g. 0.1)"
        )
    return tuple(int(c) for c in chans), int(num_classes), float(width), float(negative_slope)


def check_in_strides(in_strides: object, levels: int) -> tuple[int, ...]:
    """The strides of the backbone maps the head reads (the last ``levels``), each twice the
    one before (the head upsamples by 2 between them)."""
    try:
        strides = tuple(int(s) for s in in_strides) if isinstance(in_strides, Iterable) else ()
    except (TypeError, ValueError):
        strides = ()
    read = strides[-levels:]
    if len(read) != levels or any(b != 2 * a for a, b in zip(read, read[1:])):
        raise ConfigError(
            f"in_strides={in_strides!r} is not valid; the head reads the backbone's last "
            f"{levels} maps, each at twice the stride of the one before (e.g. 8, 16, 32)"
        )
    return read


def yolo_members(
    head: nn.Cell,
    *,
    anchors: object,
    anchor_masks: object,
    num_levels: int,
    num_maps: int,
    read_strides: tuple[int, ...],
    num_classes: int,
) -> None:
    """Set the head-contract members every YOLO head has (its outputs coarsest first)."""
    from .anchors import check_anchor_masks, check_anchors
    from .decode import YoloPredict

    anchor_arr = check_anchors(anchors)
    masks = check_anchor_masks(anchor_masks, len(anchor_arr), levels=num_levels)
    head.num_classes = num_classes
    #: Anchor (w, h) pairs in input pixels, float32 [K, 2] (a NumPy array, not a Parameter).
    head.anchors = anchor_arr
    head.anchor_masks = masks
    head.output_format = "yolo"
    head.strides = tuple(reversed(read_strides))
    head.in_indices = tuple(range(num_maps - num_levels, num_maps))
    #: Raw output channels, coarsest output first.
    head.out_channels = tuple(len(m) * (5 + num_classes) for m in masks)
    head.loss_params = {
        "anchors": anchor_arr.tolist(),
        "anchor_masks": [list(m) for m in masks],
    }
    head.decode = YoloPredict([anchor_arr[list(m)] for m in masks])


class YoloBlock(nn.Cell):
    """Seven convs: 1x1, 3x3, 1x1, 3x3, 1x1 (route), 3x3, then the linear 1x1 output conv.

    ``construct`` returns ``(route, output)``: the 5th conv's map (``mid`` channels) feeding
    the next scale, and the raw prediction map (``out_channels`` channels); with
    ``return_route=False`` (the last scale) only the output map.
    """

    def __init__(
        self,
        in_channels: int,
        mid: int,
        out_channels: int,
        return_route: bool = True,
        **unit: Unpack[ConvUnit],
    ) -> None:
        super().__init__()
        self.return_route = return_route
        self.conv0 = ConvBnAct(in_channels, mid, 1, **unit)
        self.conv1 = ConvBnAct(mid, 2 * mid, 3, **unit)
        self.conv2 = ConvBnAct(2 * mid, mid, 1, **unit)
        self.conv3 = ConvBnAct(mid, 2 * mid, 3, **unit)
        self.conv4 = ConvBnAct(2 * mid, mid, 1, **unit)
        self.conv5 = ConvBnAct(mid, 2 * mid, 3, **unit)
        self.conv6 = OutputConv(2 * mid, out_channels)

    def conv_units(self) -> list[nn.Cell]:
        """conv0 ... conv6 in forward (Darknet file) order; conv6 is an OutputConv."""
        return [self.conv0, self.conv1, self.conv2, self.conv3, self.conv4, self.conv5, self.conv6]

    def construct(self, x):
        route = self.conv4(self.conv3(self.conv2(self.conv1(self.conv0(x)))))
        out = self.conv6(self.conv5(route))
        if self.return_route:
            return route, out
        # Returning an unused route would make GRAPH_MODE warn about dropped BN side effects.
        return out


class YoloV3Head(nn.Cell):
    """Neck + heads: the backbone's last three maps (C3, C4, C5) -> raw outputs at strides
    32, 16, 8 (twice, four times the stride of C3 ... for other backbones).

    Each raw output is [N, len(mask) * (5 + num_classes), H, W], channels anchor-major
    (``output_format`` "yolo"); ``decode`` is the family's :class:`~.decode.YoloPredict`.
    See :func:`yoloqat.plugins.yolov3.yolov3_head` for the parameters.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        in_strides: Sequence[int] = (8, 16, 32),
        num_classes: int = 80,
        anchors: Sequence[Sequence[float]] | None = None,
        anchor_masks: Sequence[Sequence[int]] | None = None,
        width: float = 1.0,
        negative_slope: float = 0.1,
        bn_momentum: float = 0.9,
        padding: str = "symmetric",
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        from .anchors import ANCHOR_MASKS, ANCHORS

        chans, num_classes, width, negative_slope = check_head_params(
            in_channels, num_classes, width, negative_slope, levels=3
        )
        c3, c4, c5 = chans[-3:]
        check_choice("padding", padding, PADDINGS)
        ok = _is_number(bn_momentum) and 0 <= bn_momentum < 1
        if not ok:
            raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= value < 1")
        yolo_members(
            self,
            anchors=ANCHORS if anchors is None else anchors,
            anchor_masks=ANCHOR_MASKS if anchor_masks is None else anchor_masks,
            num_levels=3,
            num_maps=len(chans),
            read_strides=check_in_strides(in_strides, 3),
            num_classes=num_classes,
        )
        self.in_channels = (c3, c4, c5)
        unit: ConvUnit = {
            "activation": "leaky",
            "negative_slope": negative_slope,
            "bn_momentum": float(bn_momentum),
            "padding": padding,
            "bn_eps": check_bn_eps(bn_eps),
        }
        m_l, m_m, m_s = (_scale(c, width) for c in MID_CHANNELS)
        up_m, up_s = _scale(256, width), _scale(128, width)
        out_l, out_m, out_s = self.out_channels
        self.backblock0 = YoloBlock(c5, m_l, out_l, **unit)
        self.conv1 = ConvBnAct(m_l, up_m, 1, **unit)
        self.backblock1 = YoloBlock(up_m + c4, m_m, out_m, **unit)
        self.conv2 = ConvBnAct(m_m, up_s, 1, **unit)
        self.backblock2 = YoloBlock(up_s + c3, m_s, out_s, return_route=False, **unit)

    def conv_units(self) -> list[nn.Cell]:
        """The 23 convs in Darknet ``yolov3.cfg`` order.

        backblock0 (7), conv1, backblock1 (7), conv2, backblock2 (7); the last conv of each
        block is an OutputConv (bias, no BN), the others are ConvBnAct.
        """
        return [
            *self.backblock0.conv_units(),
            self.conv1,
            *self.backblock1.conv_units(),
            self.conv2,
            *self.backblock2.conv_units(),
        ]

    def construct(self, c3, c4, c5):
        route, out_l = self.backblock0(c5)
        up = ops.ResizeNearestNeighbor((c4.shape[2], c4.shape[3]))(self.conv1(route))
        route, out_m = self.backblock1(ops.concat((up, c4), 1))
        up = ops.ResizeNearestNeighbor((c3.shape[2], c3.shape[3]))(self.conv2(route))
        out_s = self.backblock2(ops.concat((up, c3), 1))
        return out_l, out_m, out_s
