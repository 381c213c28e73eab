"""YOLOv3 neck + heads (spec §1.3-1.4): three YoloBlocks joined by 2x nearest upsampling.

Cell names follow the seed's ``yolo.py`` (``backblock0``, ``conv1``, ``backblock1``,
``conv2``, ``backblock2``; inside a block ``conv0`` ... ``conv5`` and the linear output conv
``conv6``) and are stable: checkpoints and the Darknet-weights importer rely on them.
:meth:`YoloV3Head.conv_units` lists the 23 convs in Darknet ``yolov3.cfg`` order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from mindspore import nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import PADDINGS, ConvBnAct, OutputConv, check_bn_eps, check_choice

#: Neck widths (the YoloBlock "mid" channels) of the stride-32, 16 and 8 paths at width 1.0.
MID_CHANNELS = (512, 256, 128)


def _scale(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_anchors(anchors: object) -> np.ndarray:
    """Return ``anchors`` as a float32 [K, 2] array or raise a ConfigError."""
    expected = "expected a list of [w, h] pairs of positive pixel sizes, e.g. [[10, 13], ...]"
    try:
        rows = [list(pair) for pair in anchors]  # type: ignore[union-attr]
    except TypeError:
        raise ConfigError(f"anchors={anchors!r} is not valid; {expected}") from None
    if not rows or any(len(r) != 2 or not all(_is_number(v) for v in r) for r in rows):
        raise ConfigError(f"anchors={anchors!r} is not valid; {expected}")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"anchors={anchors!r} is not valid; {expected}")
    return arr.astype(np.float32)


def check_anchor_masks(anchor_masks: object, num_anchors: int) -> tuple[tuple[int, ...], ...]:
    """Validate the three anchor-index groups; together they must use each anchor once."""
    expected = (
        f"expected 3 lists of anchor indices (stride 32, 16, 8) that together use each of "
        f"0..{num_anchors - 1} exactly once, e.g. [[6, 7, 8], [3, 4, 5], [0, 1, 2]]"
    )
    try:
        masks = tuple(tuple(m) for m in anchor_masks)  # type: ignore[union-attr]
    except TypeError:
        raise ConfigError(f"anchor_masks={anchor_masks!r} is not valid; {expected}") from None
    flat = [i for m in masks for i in m]
    if (
        len(masks) != 3
        or any(len(m) == 0 for m in masks)
        or not all(_is_int(i) for i in flat)
        or sorted(int(i) for i in flat) != list(range(num_anchors))
    ):
        raise ConfigError(f"anchor_masks={anchor_masks!r} is not valid; {expected}")
    return tuple(tuple(int(i) for i in m) for m in masks)


def check_head_params(
    in_channels: object, num_classes: object, width: object, negative_slope: object
) -> tuple[tuple[int, int, int], int, float, float]:
    """Validate the scalar head parameters; return them normalised."""
    try:
        chans = tuple(in_channels)  # type: ignore[arg-type]
    except TypeError:
        chans = ()
    if len(chans) != 3 or not all(_is_int(c) and c >= 1 for c in chans):
        raise ConfigError(
            f"in_channels={in_channels!r} is not valid; expected the 3 channel counts of "
            "(C3, C4, C5), e.g. [256, 512, 1024] (the backbone's out_channels)"
        )
    if not _is_int(num_classes) or num_classes < 1:
        raise ConfigError(f"num_classes={num_classes!r} is not valid; expected an integer >= 1")
    if not _is_number(width) or not math.isfinite(width) or width <= 0:
        raise ConfigError(f"width={width!r} is not valid; expected a number > 0 (1.0 = full size)")
    if not _is_number(negative_slope) or not 0 <= negative_slope < 1:
        raise ConfigError(
            f"negative_slope={negative_slope!r} is not valid; expected 0 <= value < 1 (e.g. 0.1)"
        )
    c3, c4, c5 = (int(c) for c in chans)
    return (c3, c4, c5), int(num_classes), float(width), float(negative_slope)


class YoloBlock(nn.Cell):
    """Seven convs: 1x1, 3x3, 1x1, 3x3, 1x1 (route), 3x3, then the linear 1x1 output conv.

    ``construct`` returns ``(route, output)``: the 5th conv's map (``mid`` channels) feeding
    the next scale, and the raw prediction map (``out_channels`` channels); with
    ``return_route=False`` (the last scale) only the output map.
    """

    def __init__(
        self, in_channels: int, mid: int, out_channels: int, return_route: bool = True, **unit
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
    """Neck + heads: (C3, C4, C5) -> raw maps (stride 32, stride 16, stride 8).

    Each raw map is [N, len(mask) * (5 + num_classes), H, W], channels anchor-major.
    See :func:`yoloqat.plugins.yolov3_head.yolov3_head` for the parameters.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
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
        from . import DEFAULT_ANCHOR_MASKS, DEFAULT_ANCHORS

        (c3, c4, c5), num_classes, width, negative_slope = check_head_params(
            in_channels, num_classes, width, negative_slope
        )
        check_choice("padding", padding, PADDINGS)
        ok = _is_number(bn_momentum) and 0 <= bn_momentum < 1
        if not ok:
            raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= value < 1")
        anchor_arr = check_anchors(DEFAULT_ANCHORS if anchors is None else anchors)
        masks = check_anchor_masks(
            DEFAULT_ANCHOR_MASKS if anchor_masks is None else anchor_masks, len(anchor_arr)
        )
        self.in_channels = (c3, c4, c5)
        self.num_classes = num_classes
        #: Anchor (w, h) pairs in input pixels, float32 [K, 2] (a NumPy array, not a Parameter).
        self.anchors = anchor_arr
        self.anchor_masks = masks
        #: Raw output channels of the (stride 32, 16, 8) maps.
        self.out_channels = tuple(len(m) * (5 + num_classes) for m in masks)
        self.strides = (32, 16, 8)
        unit = {
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
