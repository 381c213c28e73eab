"""Darknet ``.cfg`` files: writing one for a network, reading and checking one.

A network built from a ``.cfg`` (the ``darknet_cfg`` backbone, which keeps the parsed file as
its ``cfg``) is written back as that file's sections, the bundled YOLOv3 and YOLOv3-tiny
networks in Darknet's layouts (:mod:`yoloqat.deploy.darknet_layouts`);
:func:`network_cfg_text` and :func:`write_cfg` write them. :func:`read_cfg` parses a
``.cfg`` file, :func:`cfg_model_settings` takes from it what the
yoloqat config needs (classes, anchors, masks, width, input size) and
:func:`check_cfg_matches` compares it layer by layer with a network's own layout, so a
``.weights`` file is read with the layout its ``.cfg`` describes, or refused with the first
layer that differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yoloqat.core.atomic import write_text
from yoloqat.core.cfgfile import CfgFile, Section, meta_line, read_cfg_file
from yoloqat.core.cfgfile import cfg_text as sections_text
from yoloqat.core.errors import CheckpointError
from yoloqat.core.version import __version__
from yoloqat.deploy.darknet_layouts import (
    DARKNET_LEAKY_SLOPE,
    layout_sections,
    yolov3_sections,
)

__all__ = [
    "DARKNET_LEAKY_SLOPE",
    "check_cfg_matches",
    "network_cfg_text",
    "read_cfg",
    "write_cfg",
    "yolov3_sections",
]

#: Keys compared per layer type (others, such as ``jitter`` or ``ignore_thresh``, are training
#: settings of Darknet that do not change inference).
COMPARED = {
    "convolutional": ("batch_normalize", "filters", "size", "stride", "padding", "activation"),
    "shortcut": ("from", "activation"),
    "route": ("layers",),
    "upsample": ("stride",),
    "yolo": ("mask", "anchors", "classes", "num"),
}


def cfg_text(
    sections: Sequence[Section],
    *,
    width: int,
    height: int,
    channels: int = 3,
    meta: Mapping[str, Any] | None = None,
    what: str = "Darknet YOLOv3 layout",
) -> str:
    """The text of a ``.cfg`` file: a testing ``[net]`` block, then ``sections`` (and
    yoloqat's ``meta`` line, see :func:`network_cfg_text`)."""
    net = {"batch": "1", "subdivisions": "1", "width": str(width), "height": str(height)}
    net["channels"] = str(channels)
    return sections_text(net, list(sections), _header(meta, what))


def _header(meta: Mapping[str, Any] | None, what: str) -> list[str]:
    lines = [f"# written by yoloqat {__version__} (export-darknet --cfg): {what}"]
    if meta:
        lines.append("# what a .cfg cannot say, for yoloqat import-darknet (a comment to Darknet):")
        lines.append(meta_line(dict(meta)))
    return lines


def graph_cfg(network: Any) -> CfgFile | None:
    """The parsed ``.cfg`` a network was built from (its backbone's ``cfg``), if any."""
    cfg = getattr(getattr(network, "backbone", None), "cfg", None)
    return cfg if isinstance(cfg, CfgFile) else None


def network_cfg_text(
    network: Any,
    *,
    input_size: int = 416,
    yolo_options: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> str:
    """The ``.cfg`` text of ``network``: a network built from a ``.cfg`` gives that file's
    sections back (``[net]`` width and height set to ``input_size``), a DarkNet-53 +
    YOLOv3-head detector the 107 layers of ``yolov3.cfg``, a YOLOv3-tiny one the 24 of
    ``yolov3-tiny.cfg``. ``meta`` (class names,
    preprocessing, BN epsilon) goes into a ``# yoloqat: {json}`` comment line, which Darknet
    and OpenCV skip and ``import-darknet`` reads."""
    parsed = graph_cfg(network)
    if parsed is None:
        sections, what = layout_sections(network, yolo_options=yolo_options)
        return cfg_text(sections, width=input_size, height=input_size, meta=meta, what=what)
    net = {**parsed.net.options, "width": str(input_size), "height": str(input_size)}
    layers = []
    for sec in parsed.layers:
        extra = dict(yolo_options or {}) if sec.type == "yolo" else {}
        layers.append(Section(sec.type, {**sec.options, **extra}))
    return sections_text(net, layers, _header(meta, "the sections of the network's own .cfg"))


def write_cfg(
    path: str | Path,
    network: Any,
    *,
    input_size: int = 416,
    yolo_options: Mapping[str, str] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write the Darknet ``.cfg`` of ``network`` (:func:`network_cfg_text`) atomically."""
    text = network_cfg_text(network, input_size=input_size, yolo_options=yolo_options, meta=meta)
    return write_text(Path(path), text)


def read_cfg(path: str | Path) -> tuple[dict[str, str], list[Section]]:
    """Parse a ``.cfg`` file into its ``[net]`` options and the layer sections after it."""
    parsed, _ = read_cfg_file(path)
    return parsed.net.options, parsed.layers


def _numbers(text: str, kind: type = float) -> list[Any]:
    return [kind(v) for v in text.replace(" ", "").split(",") if v != ""]


def cfg_model_settings(path: str | Path) -> dict[str, Any]:
    """What a yoloqat config takes from a YOLOv3 ``.cfg``: classes, anchors, masks, sizes.

    Returns ``num_classes``, ``anchors`` ([[w, h], ...]), ``anchor_masks`` (in ``[yolo]``
    order: stride 32, 16, 8), ``width`` (widest conv's filters / 1024) and ``input_size``.
    """
    net, layers = read_cfg(path)
    yolos = [s for s in layers if s.type == "yolo"]
    if len(yolos) != 3:
        raise CheckpointError(
            f"{path} has {len(yolos)} [yolo] layers; a YOLOv3 .cfg has 3",
            hint="only the YOLOv3 (DarkNet-53) layout can be imported",
        )
    first = yolos[0]
    for sec in yolos:
        for key in ("new_coords", "scale_x_y"):
            if key in sec.options and float(sec.options[key]) != (0 if key == "new_coords" else 1):
                raise CheckpointError(
                    f"{path}:{sec.line}: [yolo] {key}={sec.options[key]} is not supported "
                    "(YOLOv3 decoding only)"
                )
        if sec.options.get("anchors") != first.options.get("anchors") or sec.options.get(
            "classes"
        ) != first.options.get("classes"):
            raise CheckpointError(f"{path}:{sec.line}: the [yolo] layers differ in anchors/classes")
    try:
        values = _numbers(first.options["anchors"])
        masks = [_numbers(s.options["mask"], int) for s in yolos]
        classes = int(first.options["classes"])
        # the widest conv (1024 filters at width 1.0) fixes the width multiplier best
        filters = max(
            int(s.options["filters"])
            for s in layers
            if s.type == "convolutional" and s.options.get("batch_normalize") == "1"
        )
        width, height = int(net.get("width", 416)), int(net.get("height", 416))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: missing or malformed YOLOv3 option ({exc})") from None
    if len(values) % 2:
        raise CheckpointError(f"{path}:{first.line}: anchors has an odd count of numbers")
    if width != height:
        raise CheckpointError(
            f"{path}: [net] width={width} height={height}; yoloqat runs square inputs",
            hint="set width and height to the same multiple of 32",
        )
    return {
        "num_classes": classes,
        "anchors": [[values[i], values[i + 1]] for i in range(0, len(values), 2)],
        "anchor_masks": masks,
        "width": filters / 1024,
        "input_size": width,
    }


def _normal(sec: Section, index: int) -> dict[str, Any]:
    """The compared options of a layer, in a canonical form (defaults filled in)."""
    o = sec.options
    if sec.type == "convolutional":
        size = int(o.get("size", 1))
        return {
            "batch_normalize": int(o.get("batch_normalize", 0)),
            "filters": int(o.get("filters", 1)),
            "size": size,
            "stride": int(o.get("stride", 1)),
            "padding": size // 2 if int(o.get("pad", 0)) else int(o.get("padding", 0)),
            "activation": o.get("activation", "logistic"),
        }
    if sec.type == "shortcut":
        src = int(o.get("from", 0))
        act = o.get("activation", "linear")
        return {"from": src + index if src < 0 else src, "activation": act}
    if sec.type == "route":
        return {"layers": [v + index if v < 0 else v for v in _numbers(o.get("layers", ""), int)]}
    if sec.type == "upsample":
        return {"stride": int(o.get("stride", 2))}
    if sec.type == "yolo":
        return {
            "mask": _numbers(o.get("mask", ""), int),
            "anchors": [round(v, 4) for v in _numbers(o.get("anchors", ""))],
            "classes": int(o.get("classes", 20)),
            "num": int(o.get("num", 1)),
        }
    return dict(o)


def check_cfg_matches(path: str | Path, network: Any) -> None:
    """Raise a CheckpointError naming the first layer where ``path`` and ``network`` differ."""
    _, given = read_cfg(path)
    wanted, layout = layout_sections(network)
    if len(given) != len(wanted):
        raise CheckpointError(
            f"{path} has {len(given)} layers; the network ({layout}) has {len(wanted)}",
            hint="without --config, import-darknet builds the .cfg's own graph",
        )
    for index, (g, w) in enumerate(zip(given, wanted)):
        if g.type != w.type:
            raise CheckpointError(
                f"{path}:{g.line}: layer {index} is [{g.type}]; the {layout} has [{w.type}]"
            )
        have, need = _normal(g, index), _normal(w, index)
        for key in COMPARED.get(w.type, ()):
            if have.get(key) != need.get(key):
                raise CheckpointError(
                    f"{path}:{g.line}: layer {index} [{g.type}] has {key}={have.get(key)}; "
                    f"the network expects {need.get(key)}",
                    hint="check --num-classes / --config (width, activation) against the .cfg",
                )
