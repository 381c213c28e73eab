"""The anchor-free YOLOv8 family: CSPDarknet backbone, PAN + decoupled Detect head, DFL
decode, task-aligned loss and the ``yolov8`` preset.

Everything the family knows lives in this package: its blocks (:mod:`.blocks`: C2f, SPPF),
its backbone (:mod:`.backbone`), head (:mod:`.head`), float decode (:mod:`.decode`, the
head's ``decode`` member), its assignment inside the loss (:mod:`.assign`, no host-side
targets) and its loss (:mod:`.loss`). This module is the manifest: MindSpore code is
imported by the factories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .backbone import CSPDarknet
    from .head import YoloV8Head
    from .loss import YoloV8Loss

__all__ = ["csp_darknet", "yolov8", "yolov8_head", "yolov8_loss"]


def csp_darknet(
    *,
    width: float = 0.25,
    depth: float = 0.33,
    max_channels: int = 1024,
    bn_eps: float = 1e-3,
    bn_momentum: float = 0.97,
    in_channels: int = 3,
) -> CSPDarknet:
    """YOLOv8's CSPDarknet (C2f stages, SPPF, SiLU) returning P3, P4, P5 at strides 8, 16, 32.

    Parameters:
        width: channel multiplier (YOLOv8 n/s/m/l/x: 0.25, 0.5, 0.75, 1.0, 1.25); channels
            are ``min(c, max_channels) * width`` rounded up to a multiple of 8, P3-P5 =
            256, 512, 1024 at 1.0 (64, 128, 256 for YOLOv8n).
        depth: bottleneck multiplier (n/s: 0.33, m: 0.67, l/x: 1.0) of the 3, 6, 6, 3
            bottlenecks of the four C2f stages (at least one each).
        max_channels: channel cap before ``width`` (n/s: 1024, m: 768, l/x: 512).
        bn_eps: BatchNorm epsilon (YOLOv8: 1e-3).
        bn_momentum: BatchNorm momentum in MindSpore semantics
            (``running = m * running + (1 - m) * batch``): 0.97 is PyTorch's 0.03.
        in_channels: channels of the input image.
    """
    from .backbone import CSPDarknet

    return CSPDarknet(
        width=width,
        depth=depth,
        max_channels=max_channels,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
        in_channels=in_channels,
    )


def yolov8_head(
    *,
    in_channels: Sequence[int],
    in_strides: Sequence[int] = (8, 16, 32),
    num_classes: int = 80,
    width: float = 0.25,
    depth: float = 0.33,
    max_channels: int = 1024,
    reg_max: int = 16,
    bn_eps: float = 1e-3,
    bn_momentum: float = 0.97,
) -> YoloV8Head:
    """YOLOv8's PAN neck and decoupled anchor-free Detect head: outputs at strides 8, 16, 32.

    Each raw output is ``[N, 4 * reg_max + num_classes, H, W]`` (``output_format``
    "dfl_ltrb": per cell, box-side distributions then class logits); its ``decode`` is the
    float DFL decode (softmax, expectation, grid points, sigmoid).

    Parameters:
        in_channels: channels of the backbone's maps (normally its ``out_channels``); the
            head reads the last three, e.g. (64, 128, 256).
        in_strides: strides of the backbone's maps; the last three must double (8, 16, 32),
            and are the outputs' strides, finest first.
        num_classes: number of object classes.
        width: channel multiplier of the neck (256, 512, 1024 at 1.0); use the backbone's.
        depth: bottleneck multiplier of the neck's C2f blocks (3 at 1.0); use the backbone's.
        max_channels: channel cap before ``width``; use the backbone's.
        reg_max: bins of each box-side distribution (YOLOv8: 16, i.e. sides up to 15
            strides).
        bn_eps: BatchNorm epsilon (YOLOv8: 1e-3).
        bn_momentum: BatchNorm momentum in MindSpore semantics (0.97 = PyTorch's 0.03).
    """
    from .head import YoloV8Head

    return YoloV8Head(
        in_channels=in_channels,
        in_strides=in_strides,
        num_classes=num_classes,
        width=width,
        depth=depth,
        max_channels=max_channels,
        reg_max=reg_max,
        bn_eps=bn_eps,
        bn_momentum=bn_momentum,
    )


def _number(name: str, value: object, low: float, why: str, strict: bool = True) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (value <= low if strict else value < low)
    ):
        raise ConfigError(f"loss.{name}={value!r} is not valid; expected {why}")
    return float(value)


def _integer(name: str, value: object, low: int, why: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"loss.{name}={value!r} is not valid; expected {why}")
    return value


def yolov8_loss(
    *,
    num_classes: int = 80,
    strides: Sequence[int] = (8, 16, 32),
    reg_max: int = 16,
    topk: int = 10,
    alpha: float = 0.5,
    beta: float = 6.0,
    box_gain: float = 7.5,
    cls_gain: float = 0.5,
    dfl_gain: float = 1.5,
) -> YoloV8Loss:
    """YOLOv8 loss: task-aligned assignment in the graph, CIoU box, BCE class and DFL terms.

    Trains heads whose ``output_format`` is "dfl_ltrb" (``yolov8_head``). No host-side
    targets: the loss assigns anchors to the padded ground truth itself (masks, constant
    top-k), so it compiles once per input size. Returns ``(box_gain * box + cls_gain * cls
    + dfl_gain * dfl) * batch size`` (YOLOv8's scaling); ``loss.terms(...)`` gives each
    term. ``num_classes``, ``strides`` and ``reg_max`` come from the head when the config
    does not set them.

    Parameters:
        num_classes: number of classes C.
        strides: stride of each head output, in the head's order.
        reg_max: bins of each box-side distribution (the head's).
        topk: candidate anchors kept per ground-truth box (by alignment metric).
        alpha: exponent of the class score in the alignment metric.
        beta: exponent of the CIoU in the alignment metric.
        box_gain: weight of the CIoU box term.
        cls_gain: weight of the BCE class term.
        dfl_gain: weight of the distribution focal term.
    """
    num_classes = _integer("num_classes", num_classes, 1, "an integer >= 1")
    reg_max = _integer("reg_max", reg_max, 2, "an integer >= 2 (the head's bins)")
    topk = _integer("topk", topk, 1, "an integer >= 1 (YOLOv8: 10)")
    try:
        steps = [int(s) for s in strides]
    except (TypeError, ValueError):
        steps = []
    if not steps or any(s < 1 for s in steps):
        raise ConfigError(
            f"loss.strides={strides!r} is not valid; expected one positive stride per head "
            "output, e.g. [8, 16, 32]"
        )
    from .loss import YoloV8Loss

    return YoloV8Loss(
        num_classes=num_classes,
        strides=steps,
        reg_max=reg_max,
        topk=topk,
        alpha=_number("alpha", alpha, 0.0, "a number > 0 (YOLOv8: 0.5)"),
        beta=_number("beta", beta, 0.0, "a number > 0 (YOLOv8: 6.0)"),
        box_gain=_number("box_gain", box_gain, 0.0, "a number >= 0 (7.5)", strict=False),
        cls_gain=_number("cls_gain", cls_gain, 0.0, "a number >= 0 (0.5)", strict=False),
        dfl_gain=_number("dfl_gain", dfl_gain, 0.0, "a number >= 0 (1.5)", strict=False),
    )


def yolov8(
    *, width: float = 0.25, depth: float = 0.33, max_channels: int = 1024, reg_max: int = 16
) -> dict[str, Any]:
    """YOLOv8 (anchor-free): CSPDarknet, PAN + Detect head (DFL), task-aligned loss; n size.

    ``width``, ``depth`` and ``max_channels`` go to both the backbone and the head, so one
    line picks a size: n (0.25, 0.33, 1024), s (0.5, 0.33, 1024), m (0.75, 0.67, 768),
    l (1.0, 1.0, 512), x (1.25, 1.0, 512).

    Parameters:
        width: channel multiplier of the backbone and the neck.
        depth: bottleneck multiplier of the C2f blocks.
        max_channels: channel cap before ``width``.
        reg_max: bins of each box-side distribution (head and loss).
    """
    size = {"width": width, "depth": depth, "max_channels": max_channels}
    return {
        "backbone": {"name": "csp_darknet", **size},
        "head": {"name": "yolov8_head", **size, "reg_max": reg_max},
        "loss": {"name": "yolov8_loss"},
    }


@hookimpl
def yoloqat_backbones() -> dict:
    """Register the YOLOv8 backbone."""
    return {"csp_darknet": csp_darknet}


@hookimpl
def yoloqat_heads() -> dict:
    """Register the YOLOv8 head."""
    return {"yolov8_head": yolov8_head}


@hookimpl
def yoloqat_losses() -> dict:
    """Register the YOLOv8 loss."""
    return {"yolov8_loss": yolov8_loss}


@hookimpl
def yoloqat_families() -> dict:
    """Register the YOLOv8 family preset."""
    return {"yolov8": yolov8}
