"""YOLOv3 neck + detection heads plugin (manifest only: model code is imported lazily)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.defaults import ANCHOR_MASKS, ANCHORS
from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import YoloV3Head

#: The seed's anchors and masks (spec §1.4), re-exported for reuse.
DEFAULT_ANCHORS = ANCHORS
DEFAULT_ANCHOR_MASKS = ANCHOR_MASKS


def yolov3_head(
    *,
    in_channels: Sequence[int],
    num_classes: int = 80,
    anchors: Sequence[Sequence[float]] = DEFAULT_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = DEFAULT_ANCHOR_MASKS,
    width: float = 1.0,
    negative_slope: float = 0.1,
    bn_momentum: float = 0.9,
    padding: str = "symmetric",
    bn_eps: float = 1e-5,
) -> YoloV3Head:
    """YOLOv3 neck and three detection heads (23 convs, LeakyReLU) on (C3, C4, C5).

    Parameters:
        in_channels: channels of the backbone's (C3, C4, C5) maps, e.g. (256, 512, 1024);
            normally the backbone's ``out_channels``.
        num_classes: number of object classes (80 for COCO); each output has
            ``len(mask) * (5 + num_classes)`` channels.
        anchors: anchor (w, h) pairs in network-input pixels (9 for YOLOv3).
        anchor_masks: the anchor indices used by the stride-32, stride-16 and stride-8
            outputs, in that order; together they must use every anchor exactly once.
        width: multiplies the neck's channel counts (512/256/128 at 1.0); the output
            channels are never scaled.
        negative_slope: slope of the LeakyReLU activations (0.1 as in the seed and Darknet).
        bn_momentum: BatchNorm momentum in MindSpore semantics
            (``running = m * running + (1 - m) * batch``).
        padding: "symmetric" (k//2 on every side, Darknet) or "same" (TensorFlow SAME).
        bn_eps: BatchNorm epsilon: 1e-5 (the seed's layers) or 1e-6 (Darknet's).
    """
    from .model import YoloV3Head

    return YoloV3Head(
        in_channels=in_channels,
        num_classes=num_classes,
        anchors=anchors,
        anchor_masks=anchor_masks,
        width=width,
        negative_slope=negative_slope,
        bn_momentum=bn_momentum,
        padding=padding,
        bn_eps=bn_eps,
    )


@hookimpl
def yoloqat_heads() -> dict:
    """Register the bundled heads."""
    return {"yolov3_head": yolov3_head}
