"""An example third-party yoloqat plugin: a ``mobile_lite`` backbone, an FCOS-style family
(``fcos_lite`` head, ``fcos_loss`` loss, ``fcos_lite`` preset) and a ``constant`` LR.

This module is the plugin's manifest. yoloqat imports it through the entry point
``[project.entry-points."yoloqat.plugins"]`` in ``pyproject.toml`` and calls its hooks, so it
must stay cheap to import: MindSpore is imported inside the factories, not here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

from yoloqat import hookimpl

if TYPE_CHECKING:
    from .fcos import FcosLiteHead
    from .fcos_loss import FcosLoss
    from .mobile_lite import MobileLite
    from .schedules import Constant

__version__ = "0.3.0"


def mobile_lite(
    *,
    width: float = 1.0,
    depth: int = 1,
    expand: int = 4,
    bn_momentum: float = 0.9,
    in_channels: int = 3,
) -> MobileLite:
    """A small MobileNetV2-style backbone (depthwise convs, SiLU, inverted residuals).

    Plain MindSpore cells only: yoloqat's int8_qat quantizes it by pattern and its ONNX
    exporter traces it, with no quantizer or export code here.

    Parameters:
        width: multiplies every channel count; at 1.0 C3/C4/C5 have 32/64/128 channels.
        depth: stride-1 inverted residual blocks after each downsampling block (>= 0).
        expand: expansion ratio of the inverted residual blocks (>= 1).
        bn_momentum: BatchNorm momentum (``running = m * running + (1 - m) * batch``).
        in_channels: channels of the input image.
    """
    from .mobile_lite import MobileLite

    return MobileLite(
        width=width, depth=depth, expand=expand, bn_momentum=bn_momentum, in_channels=in_channels
    )


def constant(*, lr: float = 0.001, warmup_epochs: float = 0) -> Constant:
    """A constant learning rate, after an optional linear warmup from 0.

    Parameters:
        lr: the learning rate of every step.
        warmup_epochs: epochs over which the LR ramps linearly up to ``lr`` (0: none).
    """
    from .schedules import Constant

    return Constant.build(lr=lr, warmup_epochs=warmup_epochs)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _ints(value: object) -> list:
    try:
        out = list(value)  # type: ignore[call-overload]
    except TypeError:
        return []
    return out if all(_int(v) and v > 0 for v in out) else []


def fcos_lite(
    *,
    in_channels: Sequence[int],
    in_strides: Sequence[int] = (8, 16, 32),
    num_classes: int = 80,
    levels: int = 3,
    channels: int = 64,
    tower_convs: int = 2,
    activation: str = "relu",
    bn_momentum: float = 0.9,
    prior_prob: float = 0.01,
) -> FcosLiteHead:
    """FCOS-style anchor-free head: per level a conv tower and l,t,r,b + centerness + class.

    Plain MindSpore cells, no yoloqat code: int8_qat quantizes it by pattern, the exporter
    traces it and its float decode. Reads the backbone's last ``levels`` maps; one raw
    output ``[N, 4 + 1 + C, H, W]`` per map, finest first (``output_format``
    "fcos_ltrb"); trained by ``fcos_loss``.

    Parameters:
        in_channels: channels of the backbone's maps (its ``out_channels``, given by yoloqat).
        in_strides: strides of the backbone's maps (its ``strides``, given by yoloqat); the
            outputs have the strides of the maps read.
        num_classes: number of object classes C (``model.num_classes``, given by yoloqat).
        levels: how many of the backbone's maps the head reads (the last ones), >= 1.
        channels: width of every level's tower.
        tower_convs: 3x3 conv + BN + activation layers per tower after its 1x1 input conv.
        activation: "relu" or "silu".
        bn_momentum: BatchNorm momentum (``running = m * running + (1 - m) * batch``).
        prior_prob: initial class probability of every point (focal-loss init), in (0, 1).
    """
    from .fcos import ACTIVATIONS, FcosLiteHead

    chans, strides = _ints(in_channels), _ints(in_strides)
    if not chans:
        raise ValueError(
            f"head.in_channels={in_channels!r} is not valid; expected the backbone's "
            "out_channels (positive ints)"
        )
    if len(strides) != len(chans):
        raise ValueError(
            f"head.in_strides={in_strides!r} is not valid; expected one stride per backbone "
            f"map ({len(chans)}, the backbone's strides)"
        )
    if not _int(levels) or not 1 <= levels <= len(chans):
        raise ValueError(
            f"head.levels={levels!r} is not valid; expected 1 to {len(chans)} (the backbone "
            f"returns {len(chans)} maps; the head reads the last ones)"
        )
    if not _int(num_classes) or num_classes < 1:
        raise ValueError(f"head.num_classes={num_classes!r} is not valid; expected an int >= 1")
    if not _int(channels) or channels < 1:
        raise ValueError(f"head.channels={channels!r} is not valid; expected an int >= 1")
    if not _int(tower_convs) or tower_convs < 0:
        raise ValueError(f"head.tower_convs={tower_convs!r} is not valid; expected an int >= 0")
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"head.activation={activation!r} is not valid; expected one of {', '.join(ACTIVATIONS)}"
        )
    if not _number(bn_momentum) or not 0 <= bn_momentum < 1:
        raise ValueError(f"head.bn_momentum={bn_momentum!r} is not valid; expected 0 <= m < 1")
    if not _number(prior_prob) or not 0 < prior_prob < 1:
        raise ValueError(f"head.prior_prob={prior_prob!r} is not valid; expected 0 < p < 1")
    return FcosLiteHead(
        in_channels=chans,
        in_strides=strides,
        num_classes=num_classes,
        levels=levels,
        channels=channels,
        tower_convs=tower_convs,
        activation=activation,
        bn_momentum=float(bn_momentum),
        prior_prob=float(prior_prob),
    )


def fcos_loss(
    *,
    num_classes: int = 80,
    strides: Sequence[int] = (8, 16, 32),
    scale_bounds: Optional[Sequence[float]] = None,
    center_radius: float = 1.5,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    box_loss: str = "giou",
    box_weight: float = 1.0,
) -> FcosLoss:
    """FCOS loss: centre sampling in the loss, focal classes, GIoU boxes, BCE centerness.

    Trains the heads whose ``output_format`` is "fcos_ltrb" (``fcos_lite``), any number of
    levels. A point is positive for a box when it lies in the box's centre region
    (``center_radius`` strides around its centre, inside the box) and the box's size suits
    its level (``scale_bounds``); a point with several such boxes takes the smallest. Every
    term is normalised by the batch's positives.

    Parameters:
        num_classes: number of classes C (the head's, given by yoloqat).
        strides: stride of each head output, in output order (the head's, given by yoloqat).
        scale_bounds: the ``len(strides) - 1`` boundaries (input pixels) between the levels'
            ranges of ``max(l, t, r, b)``: level i takes (bounds[i-1], bounds[i]], the first
            from 0, the last unbounded. Default: 8 strides of each level but the last (64,
            128 for strides 8, 16, 32, as FCOS).
        center_radius: half the side of the centre region, in strides of the point's level.
        focal_alpha: focal loss alpha (weight of the positives), in [0, 1].
        focal_gamma: focal loss gamma (0: plain BCE), >= 0.
        box_loss: "giou" or "iou" (the loss is 1 - that).
        box_weight: weight of the box term.
    """
    from .fcos_loss import FcosLoss, default_bounds

    steps = _ints(strides)
    if not steps or steps != sorted(steps):
        raise ValueError(
            f"loss.strides={strides!r} is not valid; expected the head's output strides, "
            "finest first (e.g. [8, 16, 32])"
        )
    if not _int(num_classes) or num_classes < 1:
        raise ValueError(f"loss.num_classes={num_classes!r} is not valid; expected an int >= 1")
    bounds = default_bounds(steps) if scale_bounds is None else scale_bounds
    try:
        edges = [float(b) for b in bounds]
    except (TypeError, ValueError):
        edges = [-1.0]
    if (
        len(edges) != len(steps) - 1
        or any(b <= 0 for b in edges)
        or any(b <= a for a, b in zip(edges, edges[1:]))
    ):
        raise ValueError(
            f"loss.scale_bounds={scale_bounds!r} is not valid; expected {len(steps) - 1} "
            f"increasing positive sizes in pixels (one between each two of the "
            f"{len(steps)} levels), e.g. {list(default_bounds(steps))}"
        )
    if not _number(center_radius) or center_radius <= 0:
        raise ValueError(f"loss.center_radius={center_radius!r} is not valid; expected > 0")
    if not _number(focal_alpha) or not 0 <= focal_alpha <= 1:
        raise ValueError(f"loss.focal_alpha={focal_alpha!r} is not valid; expected 0..1")
    if not _number(focal_gamma) or focal_gamma < 0:
        raise ValueError(f"loss.focal_gamma={focal_gamma!r} is not valid; expected >= 0")
    if box_loss not in ("giou", "iou"):
        raise ValueError(f"loss.box_loss={box_loss!r} is not valid; expected giou or iou")
    if not _number(box_weight) or box_weight < 0:
        raise ValueError(f"loss.box_weight={box_weight!r} is not valid; expected >= 0")
    return FcosLoss(
        num_classes=num_classes,
        strides=steps,
        bounds=edges,
        center_radius=float(center_radius),
        focal_alpha=float(focal_alpha),
        focal_gamma=float(focal_gamma),
        box_loss=box_loss,
        box_weight=float(box_weight),
    )


def fcos_lite_family(*, width: float = 1.0, levels: int = 3) -> dict[str, Any]:
    """FCOS-lite: the mobile_lite backbone, the fcos_lite head and the fcos_loss.

    Parameters:
        width: multiplies the backbone's channels and the head's tower width (64 at 1.0).
        levels: how many of the backbone's maps (strides 8, 16, 32) the head reads.
    """
    if not _number(width) or width <= 0:
        raise ValueError(f"family.width={width!r} is not valid; expected a number > 0")
    return {
        "backbone": {"name": "mobile_lite", "width": width},
        "head": {"name": "fcos_lite", "levels": levels, "channels": max(8, round(64 * width))},
        "loss": {"name": "fcos_loss"},
    }


@hookimpl
def yoloqat_backbones() -> dict:
    """Backbones of this plugin."""
    return {"mobile_lite": mobile_lite}


@hookimpl
def yoloqat_heads() -> dict:
    """Heads of this plugin."""
    return {"fcos_lite": fcos_lite}


@hookimpl
def yoloqat_losses() -> dict:
    """Losses of this plugin."""
    return {"fcos_loss": fcos_loss}


@hookimpl
def yoloqat_families() -> dict:
    """Detector family presets of this plugin."""
    return {"fcos_lite": fcos_lite_family}


@hookimpl
def yoloqat_schedulers() -> dict:
    """LR schedulers of this plugin."""
    return {"constant": constant}
