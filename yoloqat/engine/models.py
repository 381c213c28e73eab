"""Ready-made detectors built through the registry (no config file needed)."""

from __future__ import annotations

from collections.abc import Sequence

from yoloqat.core.detector import Detector
from yoloqat.registry import default_registry


def yolov3_darknet53(
    *,
    num_classes: int = 80,
    width: float = 1.0,
    activation: str = "relu",
    negative_slope: float = 0.1,
    padding: str = "symmetric",
    bn_momentum: float = 0.9,
    bn_eps: float = 1e-5,
    anchors: Sequence[Sequence[float]] | None = None,
    anchor_masks: Sequence[Sequence[int]] | None = None,
    in_channels: int = 3,
    blocks: Sequence[int] = (1, 2, 8, 8, 4),
) -> Detector:
    """The default YOLOv3-DarkNet53 detector (seed layout) built directly, without a config.

    ``activation`` is the backbone's ("relu" as in the seed, or "leaky"); the neck and heads
    always use LeakyReLU(``negative_slope``). ``anchors``/``anchor_masks`` default to the
    9 YOLOv3 anchors and masks ((6, 7, 8), (3, 4, 5), (0, 1, 2)). ``bn_eps`` is the
    BatchNorm epsilon of every conv block (1e-5 as in the seed, 1e-6 as in Darknet).
    ``blocks``: residual blocks per backbone stage (DarkNet-53: 1, 2, 8, 8, 4).
    """
    reg = default_registry()
    backbone = reg.create(
        "backbone",
        "darknet53",
        activation=activation,
        negative_slope=negative_slope,
        width=width,
        padding=padding,
        bn_momentum=bn_momentum,
        bn_eps=bn_eps,
        in_channels=in_channels,
        blocks=blocks,
    )
    yolo = {"anchors": anchors, "anchor_masks": anchor_masks}
    head = reg.create(
        "head",
        "yolov3_head",
        in_channels=backbone.out_channels,
        in_strides=backbone.strides,
        num_classes=num_classes,
        **{k: v for k, v in yolo.items() if v is not None},
        width=width,
        negative_slope=negative_slope,
        bn_momentum=bn_momentum,
        padding=padding,
        bn_eps=bn_eps,
    )
    return Detector(backbone, head)
