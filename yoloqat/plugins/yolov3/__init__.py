"""The YOLO family (YOLOv3, YOLOv3-tiny): heads, loss, decode, targets and presets.

Everything the family knows lives in this package: its anchors and masks
(:mod:`.anchors`), its decode (:mod:`.decode`, the heads' ``decode`` member), its
best-anchor targets built on the host (:mod:`.targets`, the loss's ``build_targets``) and
the loss over any number of outputs (:mod:`.loss`). This module is the manifest: MindSpore
code is imported by the factories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl

from .anchors import (
    ANCHOR_MASKS,
    ANCHORS,
    TINY_ANCHOR_MASKS,
    TINY_ANCHORS,
    check_scale_x_y,
)
from .darknet import darknet, darknet_cfg, darknet_yolo_head

if TYPE_CHECKING:
    from .head import YoloV3Head
    from .loss import YoloV3Loss
    from .tiny import YoloV3TinyHead

#: The seed's anchors and masks (docs/seed.md §1.4), re-exported for reuse.
DEFAULT_ANCHORS = ANCHORS
DEFAULT_ANCHOR_MASKS = ANCHOR_MASKS

__all__ = [
    "ANCHORS",
    "ANCHOR_MASKS",
    "TINY_ANCHORS",
    "TINY_ANCHOR_MASKS",
    "darknet_cfg",
    "darknet_yolo_head",
    "yolov3_head",
    "yolov3_loss",
    "yolov3_tiny_head",
]


def yolov3_head(
    *,
    in_channels: Sequence[int],
    in_strides: Sequence[int] = (8, 16, 32),
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
        in_channels: channels of the backbone's maps (normally its ``out_channels``); the
            head reads the last three, e.g. (256, 512, 1024).
        in_strides: strides of the backbone's maps (normally its ``strides``); the outputs
            have the strides of the last three, coarsest first (32, 16, 8).
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
    from .head import YoloV3Head

    return YoloV3Head(
        in_channels=in_channels,
        in_strides=in_strides,
        num_classes=num_classes,
        anchors=anchors,
        anchor_masks=anchor_masks,
        width=width,
        negative_slope=negative_slope,
        bn_momentum=bn_momentum,
        padding=padding,
        bn_eps=bn_eps,
    )


def yolov3_tiny_head(
    *,
    in_channels: Sequence[int],
    in_strides: Sequence[int] = (16, 32),
    num_classes: int = 80,
    anchors: Sequence[Sequence[float]] = TINY_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = TINY_ANCHOR_MASKS,
    width: float = 1.0,
    negative_slope: float = 0.1,
    bn_momentum: float = 0.9,
    padding: str = "symmetric",
    bn_eps: float = 1e-5,
) -> YoloV3TinyHead:
    """YOLOv3-tiny neck and two detection heads (6 convs) on (C4, C5): strides 32, 16.

    Parameters:
        in_channels: channels of the backbone's maps; the head reads the last two, e.g.
            (256, 1024) of ``darknet_tiny``.
        in_strides: strides of the backbone's maps; the last two must be s and 2s.
        num_classes: number of object classes; each output has ``len(mask) * (5 + C)``
            channels.
        anchors: anchor (w, h) pairs in network-input pixels (Darknet's 6 by default).
        anchor_masks: the anchor indices of the stride-32 and stride-16 outputs.
        width: multiplies the neck's channel counts (256/512/128/256 at 1.0).
        negative_slope: slope of the LeakyReLU activations.
        bn_momentum: BatchNorm momentum in MindSpore semantics.
        padding: "symmetric" or "same".
        bn_eps: BatchNorm epsilon: 1e-5, or 1e-6 for Darknet's weights.
    """
    from .tiny import YoloV3TinyHead

    return YoloV3TinyHead(
        in_channels=in_channels,
        in_strides=in_strides,
        num_classes=num_classes,
        anchors=anchors,
        anchor_masks=anchor_masks,
        width=width,
        negative_slope=negative_slope,
        bn_momentum=bn_momentum,
        padding=padding,
        bn_eps=bn_eps,
    )


def _check_loss_anchors(
    anchors: Sequence, anchor_masks: Sequence, strides: Sequence
) -> tuple[list, list, list]:
    from .anchors import check_anchor_masks, check_anchors

    pairs = check_anchors(anchors, where="loss.anchors").tolist()
    masks = check_anchor_masks(anchor_masks, len(pairs), where="loss.anchor_masks", partial=True)
    try:
        steps = [int(s) for s in strides]
    except (TypeError, ValueError):
        steps = []
    if len(steps) != len(masks) or any(s < 1 for s in steps):
        raise ConfigError(
            f"loss.strides={strides!r} is not valid; expected one stride per anchor mask "
            f"({len(masks)}), e.g. [32, 16, 8]"
        )
    return pairs, [list(m) for m in masks], steps


def yolov3_loss(
    *,
    num_classes: int = 80,
    anchors: Sequence[Sequence[float]] = DEFAULT_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = DEFAULT_ANCHOR_MASKS,
    strides: Sequence[int] = (32, 16, 8),
    ignore_threshold: float = 0.7,
    label_smooth: bool = False,
    label_smooth_factor: float = 0.1,
    scale_x_y: Sequence[float] | None = None,
) -> YoloV3Loss:
    """YOLO loss of the seed: BCE xy, L2 log-wh, BCE objectness with ignore mask, BCE class.

    Trains the heads whose ``output_format`` is "yolo" (any number of outputs); its targets
    (best-anchor matching) are built on the host by ``loss.build_targets``. Returns the
    scalar Σ_outputs (xy + wh + conf + cls) / batch size; ``loss.terms(...)`` gives every
    term per output. ``num_classes``, ``anchors``, ``anchor_masks`` and ``strides`` come from
    the head when the config does not set them.

    Parameters:
        num_classes: number of classes C (outputs have 5 + C channels per anchor).
        anchors: anchor (w, h) pairs in pixels of the network input.
        anchor_masks: anchor indices of each output, in the head's output order.
        strides: stride of each output, in the same order.
        ignore_threshold: a non-object prediction whose best IoU with a GT of the same scale
            reaches this value gets no objectness loss.
        label_smooth: smooth hard one-hot class targets: true class 1 - eps, others
            eps / (C - 1). Targets already smoothed by the data pipeline are left alone.
        label_smooth_factor: eps of the label smoothing.
        scale_x_y: Darknet's ``scale_x_y`` of each output (YOLOv4), in the head's order
            (default: 1 for each). The centre target is mapped through it, so that the
            head's decode of a perfect prediction is the box centre: ``sigmoid(t_xy)``
            learns ``(c + (s - 1) / 2) / s`` for the offset ``c`` in the cell.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"loss.num_classes must be an integer >= 1, got {num_classes!r}")
    if isinstance(ignore_threshold, bool) or not isinstance(ignore_threshold, (int, float)):
        raise ConfigError(f"loss.ignore_threshold must be a number, got {ignore_threshold!r}")
    if not 0.0 < ignore_threshold <= 1.0:
        raise ConfigError(f"loss.ignore_threshold must be in (0, 1], got {ignore_threshold!r}")
    if not isinstance(label_smooth, bool):
        raise ConfigError(f"loss.label_smooth must be true or false, got {label_smooth!r}")
    if (
        isinstance(label_smooth_factor, bool)
        or not isinstance(label_smooth_factor, (int, float))
        or not 0.0 <= label_smooth_factor < 1.0
    ):
        raise ConfigError(
            f"loss.label_smooth_factor must be a number in [0, 1), got {label_smooth_factor!r}"
        )
    pairs, masks, steps = _check_loss_anchors(anchors, anchor_masks, strides)
    scales = check_scale_x_y(scale_x_y, len(masks))

    import numpy as np

    from .loss import YoloV3Loss

    return YoloV3Loss(
        num_classes=num_classes,
        anchors=np.asarray(pairs, dtype=np.float32),
        anchor_masks=tuple(tuple(m) for m in masks),
        strides=steps,
        ignore_threshold=float(ignore_threshold),
        label_smooth=label_smooth,
        label_smooth_factor=float(label_smooth_factor),
        scale_x_y=scales,
    )


def yolov3(*, activation: str = "relu") -> dict[str, Any]:
    """YOLOv3: DarkNet-53, the YOLOv3 head (3 outputs, 9 anchors) and the seed's loss.

    Parameters:
        activation: the backbone's activation: "relu" (the seed's) or "leaky" (Darknet's).
    """
    return {
        "backbone": {"name": "darknet53", "activation": activation},
        "head": {"name": "yolov3_head"},
        "loss": {"name": "yolov3_loss", "ignore_threshold": 0.7},
    }


def yolov3_tiny() -> dict[str, Any]:
    """YOLOv3-tiny: Darknet's maxpool backbone, 2 outputs (strides 32, 16), 6 anchors."""
    return {
        "backbone": {"name": "darknet_tiny", "activation": "leaky"},
        "head": {"name": "yolov3_tiny_head"},
        "loss": {"name": "yolov3_loss", "ignore_threshold": 0.7},
    }


@hookimpl
def yoloqat_backbones() -> dict:
    """Register the Darknet .cfg backbone."""
    return {"darknet_cfg": darknet_cfg}


@hookimpl
def yoloqat_heads() -> dict:
    """Register the YOLO heads."""
    return {
        "yolov3_head": yolov3_head,
        "yolov3_tiny_head": yolov3_tiny_head,
        "darknet_yolo_head": darknet_yolo_head,
    }


@hookimpl
def yoloqat_losses() -> dict:
    """Register the YOLO loss."""
    return {"yolov3_loss": yolov3_loss}


@hookimpl
def yoloqat_families() -> dict:
    """Register the YOLO family presets."""
    return {"yolov3": yolov3, "yolov3_tiny": yolov3_tiny, "darknet": darknet}
