"""YOLOv3 loss plugin (manifest only: the MindSpore code is imported by the factory)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.defaults import ANCHOR_MASKS, ANCHORS
from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .loss import YoloV3Loss

#: The seed's anchors and masks (spec §1.4), re-exported for reuse.
DEFAULT_ANCHORS = ANCHORS
DEFAULT_ANCHOR_MASKS = ANCHOR_MASKS


def _check_anchors(anchors: Sequence, anchor_masks: Sequence) -> tuple[list, list]:
    try:
        pairs = [[float(v) for v in a] for a in anchors]
    except (TypeError, ValueError):
        raise ConfigError(
            f"loss.anchors must be a list of [w, h] pixel pairs, got {anchors!r}"
        ) from None
    if not pairs or any(len(p) != 2 or min(p) <= 0 for p in pairs):
        raise ConfigError(f"loss.anchors must be a list of [w, h] pairs > 0, got {anchors!r}")
    try:
        masks = [[int(i) for i in m] for m in anchor_masks]
    except (TypeError, ValueError):
        raise ConfigError(
            f"loss.anchor_masks must be 3 lists of anchor indices, got {anchor_masks!r}"
        ) from None
    if len(masks) != 3 or any(not m for m in masks):
        raise ConfigError(
            "loss.anchor_masks must be 3 non-empty lists of anchor indices (stride 32, 16, 8), "
            f"got {anchor_masks!r}"
        )
    if len({len(m) for m in masks}) != 1:
        raise ConfigError(
            f"loss.anchor_masks must give every scale the same number of anchors, got {masks!r}"
        )
    bad = [i for m in masks for i in m if not 0 <= i < len(pairs)]
    if bad:
        raise ConfigError(
            f"loss.anchor_masks index {bad[0]} is out of range for {len(pairs)} anchors"
        )
    return pairs, masks


def yolov3_loss(
    *,
    num_classes: int = 80,
    anchors: Sequence[Sequence[float]] = DEFAULT_ANCHORS,
    anchor_masks: Sequence[Sequence[int]] = DEFAULT_ANCHOR_MASKS,
    ignore_threshold: float = 0.7,
    label_smooth: bool = False,
    label_smooth_factor: float = 0.1,
) -> YoloV3Loss:
    """YOLOv3 loss of the seed: BCE xy, L2 log-wh, BCE objectness with ignore mask, BCE class.

    Called as ``loss(out_l, out_m, out_s, y_true_l, y_true_m, y_true_s, gt_l, gt_m, gt_s)``
    with the network's raw training outputs (stride 32, 16, 8), the targets and the per-scale
    GT lists; returns the scalar Σ_scales (xy + wh + conf + cls) / batch size.
    ``loss.terms(...)`` gives every term per scale.

    Parameters:
        num_classes: number of classes C (outputs have 5 + C channels per anchor).
        anchors: anchor (w, h) pairs in pixels of the network input.
        anchor_masks: anchor indices of each output, in order stride 32, 16, 8.
        ignore_threshold: a non-object prediction whose best IoU with a GT of the same scale
            reaches this value gets no objectness loss.
        label_smooth: smooth hard one-hot class targets: true class 1 - eps, others
            eps / (C - 1). Targets already smoothed by the data pipeline are left alone.
        label_smooth_factor: eps of the label smoothing.
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
    pairs, masks = _check_anchors(anchors, anchor_masks)

    import numpy as np

    from .loss import YoloV3Loss

    return YoloV3Loss(
        num_classes=num_classes,
        anchors=np.asarray(pairs, dtype=np.float32),
        anchor_masks=tuple(tuple(m) for m in masks),
        ignore_threshold=float(ignore_threshold),
        label_smooth=label_smooth,
        label_smooth_factor=float(label_smooth_factor),
    )


@hookimpl
def yoloqat_losses() -> dict:
    """Register the bundled losses."""
    return {"yolov3_loss": yolov3_loss}
