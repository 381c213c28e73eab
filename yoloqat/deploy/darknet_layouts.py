"""The Darknet ``.cfg`` layouts of yoloqat's bundled YOLO networks.

:func:`yolov3_sections` lists the layers of a DarkNet-53 + YOLOv3-head detector in the order
and form of Darknet's ``yolov3.cfg`` (107 layers: 75 ``[convolutional]``, 23 ``[shortcut]``,
4 ``[route]``, 2 ``[upsample]``, 3 ``[yolo]``); :func:`yolov3_tiny_sections` those of a
``darknet_tiny`` + ``yolov3_tiny_head`` detector as ``yolov3-tiny.cfg`` (24 layers). The
networks are recognised by their cells (this layer imports no plugin).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from yoloqat.core.cfgfile import Section
from yoloqat.core.errors import ConfigError

#: Darknet's leaky activation has this fixed slope.
DARKNET_LEAKY_SLOPE = 0.1
#: yoloqat activation -> Darknet's name.
ACTIVATION_NAMES = {
    "leaky": "leaky",
    "relu": "relu",
    "mish": "mish",
    "logistic": "logistic",
    "none": "linear",
}


def _act(unit: Any) -> str:
    act = getattr(unit, "activation", "none")
    if act == "leaky" and abs(float(unit.negative_slope) - DARKNET_LEAKY_SLOPE) > 1e-9:
        raise ConfigError(
            f"negative_slope={unit.negative_slope} cannot be written as a Darknet .cfg: "
            f"Darknet's leaky activation has slope {DARKNET_LEAKY_SLOPE}"
        )
    return ACTIVATION_NAMES[act]


def _conv(unit: Any) -> Section:
    if hasattr(unit, "bn"):
        opts = {
            "batch_normalize": "1",
            "filters": str(unit.out_channels),
            "size": str(unit.kernel_size),
            "stride": str(unit.stride),
            "pad": "1",
            "activation": _act(unit),
        }
        if getattr(unit, "padding", "symmetric") != "symmetric":
            raise ConfigError(
                "padding='same' (TF-style) cannot be written as a Darknet .cfg: Darknet pads "
                "k//2 on every side (padding: symmetric)"
            )
        return Section("convolutional", opts)
    opts = {"size": "1", "stride": "1", "pad": "1", "filters": str(unit.out_channels)}
    return Section("convolutional", {**opts, "activation": "linear"})


def _anchor_text(anchors: Any) -> str:
    return ",  ".join(f"{float(w):g},{float(h):g}" for w, h in anchors)


def _yolo(network: Any, mask: Sequence[int], extra: Mapping[str, str] | None) -> Section:
    head = network.head
    opts = {"mask": ",".join(str(i) for i in mask), "anchors": _anchor_text(head.anchors)}
    opts |= {"classes": str(network.num_classes), "num": str(len(head.anchors))}
    opts |= {"jitter": ".3", "ignore_thresh": ".7", "truth_thresh": "1", "random": "1"}
    return Section("yolo", {**opts, **dict(extra or {})})


def yolov3_sections(
    network: Any, *, yolo_options: Mapping[str, str] | None = None
) -> list[Section]:
    """The 107 layers of ``yolov3.cfg`` for a DarkNet-53 + YOLOv3-head ``network``.

    ``yolo_options``: extra options written into each ``[yolo]`` block (e.g. OpenCV's
    ``thresh``/``nms_threshold``).
    """
    bb, head = network.backbone, network.head
    needed = ("conv0", "conv1", "layer1", "layer5")
    if not all(hasattr(bb, n) for n in needed) or not hasattr(head, "backblock2"):
        raise ConfigError(
            f"{type(bb).__name__} + {type(head).__name__} cannot be written as a Darknet .cfg",
            hint="a .cfg is written for the darknet53 backbone with the yolov3_head",
        )
    out: list[Section] = [_conv(bb.conv0)]
    taps: list[int] = []  # layer index of each stage's output
    for k in range(1, 6):
        out.append(_conv(getattr(bb, f"conv{k}")))
        for residual in getattr(bb, f"layer{k}"):
            out += [_conv(residual.conv1), _conv(residual.conv2)]
            out.append(Section("shortcut", {"from": "-3", "activation": "linear"}))
        taps.append(len(out) - 1)
    c3, c4 = taps[2], taps[3]

    def block(yolo_block: Any, mask: Sequence[int]) -> None:
        out.extend(_conv(u) for u in yolo_block.conv_units())
        out.append(_yolo(network, mask, yolo_options))

    masks = head.anchor_masks
    block(head.backblock0, masks[0])
    out.append(Section("route", {"layers": "-4"}))
    out += [_conv(head.conv1), Section("upsample", {"stride": "2"})]
    out.append(Section("route", {"layers": f"-1, {c4}"}))
    block(head.backblock1, masks[1])
    out.append(Section("route", {"layers": "-4"}))
    out += [_conv(head.conv2), Section("upsample", {"stride": "2"})]
    out.append(Section("route", {"layers": f"-1, {c3}"}))
    block(head.backblock2, masks[2])
    return out


def yolov3_tiny_sections(
    network: Any, *, yolo_options: Mapping[str, str] | None = None
) -> list[Section]:
    """The 24 layers of ``yolov3-tiny.cfg`` for a ``darknet_tiny`` + ``yolov3_tiny_head``
    ``network`` (``yolo_options`` as in :func:`yolov3_sections`)."""
    bb, head = network.backbone, network.head
    if not (hasattr(bb, "pool_keep") and hasattr(bb, "conv6") and hasattr(head, "out1")):
        raise ConfigError(
            f"{type(bb).__name__} + {type(head).__name__} is not the YOLOv3-tiny layout"
        )
    pool = Section("maxpool", {"size": "2", "stride": "2"})
    out: list[Section] = []
    for k in range(5):
        out += [_conv(getattr(bb, f"conv{k}")), Section(pool.type, dict(pool.options))]
    c4 = len(out) - 2  # the 5th conv, before its pool
    out += [_conv(bb.conv5), Section("maxpool", {"size": "2", "stride": "1"}), _conv(bb.conv6)]
    masks = head.anchor_masks
    out += [_conv(head.conv0), _conv(head.conv1), _conv(head.out0)]
    out.append(_yolo(network, masks[0], yolo_options))
    out += [Section("route", {"layers": "-4"}), _conv(head.conv2)]
    out += [Section("upsample", {"stride": "2"}), Section("route", {"layers": f"-1, {c4}"})]
    out += [_conv(head.conv3), _conv(head.out1), _yolo(network, masks[1], yolo_options)]
    return out


def layout_sections(
    network: Any, *, yolo_options: Mapping[str, str] | None = None
) -> tuple[list[Section], str]:
    """The ``.cfg`` sections of a bundled YOLO network and the name of its layout."""
    if hasattr(network.head, "backblock2"):
        return yolov3_sections(network, yolo_options=yolo_options), "Darknet YOLOv3 layout"
    if hasattr(network.head, "out1") and hasattr(network.backbone, "pool_keep"):
        sections = yolov3_tiny_sections(network, yolo_options=yolo_options)
        return sections, "Darknet YOLOv3-tiny layout"
    raise ConfigError(
        f"{type(network.backbone).__name__} + {type(network.head).__name__} cannot be written "
        "as a Darknet .cfg",
        hint="a .cfg is written for a network imported from a .cfg, and for the bundled "
        "darknet53 + yolov3_head and darknet_tiny + yolov3_tiny_head networks",
    )
