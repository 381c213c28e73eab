"""YOLOv3-tiny neck + heads (Darknet's ``yolov3-tiny.cfg``): two outputs, strides 32 and 16.

From the backbone's last two maps (C4 at stride 16, C5 at stride 32): a 1x1 route conv on
C5, a 3x3 conv and the stride-32 output conv; the route, a 1x1 conv, 2x nearest upsampling
concatenated with C4, a 3x3 conv and the stride-16 output conv. :meth:`conv_units` lists
the convs in the ``.cfg``'s order.
"""

from __future__ import annotations

from collections.abc import Sequence

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

from .head import _is_number, _scale, check_head_params, check_in_strides, yolo_members


class YoloV3TinyHead(nn.Cell):
    """Neck + heads of YOLOv3-tiny: (C4, C5) -> raw outputs at strides 32, 16.

    Each raw output is [N, len(mask) * (5 + num_classes), H, W], channels anchor-major
    (``output_format`` "yolo"). See :func:`yoloqat.plugins.yolov3.yolov3_tiny_head`.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        in_strides: Sequence[int] = (16, 32),
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
        from .anchors import TINY_ANCHOR_MASKS, TINY_ANCHORS

        chans, num_classes, width, negative_slope = check_head_params(
            in_channels, num_classes, width, negative_slope, levels=2
        )
        c4, c5 = chans[-2:]
        check_choice("padding", padding, PADDINGS)
        if not (_is_number(bn_momentum) and 0 <= bn_momentum < 1):
            raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= value < 1")
        yolo_members(
            self,
            anchors=TINY_ANCHORS if anchors is None else anchors,
            anchor_masks=TINY_ANCHOR_MASKS if anchor_masks is None else anchor_masks,
            num_levels=2,
            num_maps=len(chans),
            read_strides=check_in_strides(in_strides, 2),
            num_classes=num_classes,
        )
        self.in_channels = (c4, c5)
        unit: ConvUnit = {
            "activation": "leaky",
            "negative_slope": negative_slope,
            "bn_momentum": float(bn_momentum),
            "padding": padding,
            "bn_eps": check_bn_eps(bn_eps),
        }
        route, mid_l, up, mid_m = (_scale(c, width) for c in (256, 512, 128, 256))
        out_l, out_m = self.out_channels
        self.conv0 = ConvBnAct(c5, route, 1, **unit)
        self.conv1 = ConvBnAct(route, mid_l, 3, **unit)
        self.out0 = OutputConv(mid_l, out_l)
        self.conv2 = ConvBnAct(route, up, 1, **unit)
        self.conv3 = ConvBnAct(up + c4, mid_m, 3, **unit)
        self.out1 = OutputConv(mid_m, out_m)

    def conv_units(self) -> list[nn.Cell]:
        """The 6 convs in Darknet ``yolov3-tiny.cfg`` order (the output convs are
        OutputConvs: bias, no BN)."""
        return [self.conv0, self.conv1, self.out0, self.conv2, self.conv3, self.out1]

    def construct(self, c4, c5):
        route = self.conv0(c5)
        out_l = self.out0(self.conv1(route))
        up = ops.ResizeNearestNeighbor((c4.shape[2], c4.shape[3]))(self.conv2(route))
        out_m = self.out1(self.conv3(ops.concat((up, c4), 1)))
        return out_l, out_m
