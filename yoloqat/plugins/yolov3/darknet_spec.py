"""What a Darknet YOLO ``.cfg`` describes, checked section by section (pure Python).

:func:`build_spec` walks the sections of a parsed ``.cfg`` (:mod:`yoloqat.core.cfgfile`) in
order, as Darknet does, and returns one :class:`LayerSpec` per layer with its output
channels, stride and size at the ``[net]`` input size, plus the ``[yolo]`` layers. Every
section type and key is used, accepted as a training setting, or an error naming the file,
line, section index, key and value (:mod:`.darknet_keys`): nothing is skipped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from yoloqat.core.cfgfile import CfgFile
from yoloqat.core.errors import ConfigError

from .darknet_keys import SECTION_TYPES, SectionReader


@dataclass
class LayerSpec:
    """One layer: its type, options, output shape and the layers it reads."""

    index: int
    type: str
    line: int
    channels: int
    stride: Fraction
    hw: tuple[int, int]
    params: dict[str, Any] = field(default_factory=dict)
    sources: tuple[int, ...] = ()


@dataclass
class DarknetSpec:
    """A checked ``.cfg``: input, layers, ``[yolo]`` layers in file order."""

    width: int
    height: int
    channels: int
    layers: list[LayerSpec]
    yolos: list[LayerSpec]
    letterbox: bool | None
    cfg: CfgFile


def build_spec(cfg: CfgFile) -> DarknetSpec:
    """Check every section of ``cfg`` and compute each layer's output (see the module doc)."""
    source = cfg.source
    net = SectionReader(cfg.net, source)
    net.check_keys("net")
    width, height = net.integer("width", 416, 1), net.integer("height", 416, 1)
    channels = net.integer("channels", 3, 1)
    if channels != 3:
        raise net.fail("channels", "is not supported (yoloqat feeds RGB images: channels=3)")
    letterbox = bool(net.integer("letter_box", 0, 0)) if "letter_box" in cfg.net.options else None
    layers: list[LayerSpec] = []
    yolos: list[LayerSpec] = []
    prev = (channels, Fraction(1), (height, width))
    for sec in cfg.layers:
        kind = SECTION_TYPES.get(sec.type)
        rd = SectionReader(sec, source)
        if kind is None:
            raise rd.fail(
                None,
                f"the section type [{sec.type}] is not supported (supported: "
                f"{', '.join(dict.fromkeys(SECTION_TYPES.values()))})",
            )
        rd.check_keys(kind)
        if layers and layers[-1].type == "yolo" and kind != "route":
            raise rd.fail(None, "reads the output of the [yolo] layer before it (unsupported)")
        layer = _LAYERS[kind](rd, layers, prev)
        layers.append(layer)
        if kind == "yolo":
            yolos.append(layer)
        prev = (layer.channels, layer.stride, layer.hw)
    if not yolos:
        raise ConfigError(f"{source} has no [yolo] layer: not a YOLO detector .cfg")
    last = yolos[-1].index
    if last != len(layers) - 1:
        extra = cfg.layers[last + 1]
        raise SectionReader(extra, source).fail(
            None, "comes after the last [yolo] layer (a layer no [yolo] layer reads is unsupported)"
        )
    _check_yolos(yolos, cfg, source)
    top = max(y.stride for y in yolos)
    deep = next((lay for lay in layers if lay.stride > top), None)
    if deep is not None:
        raise SectionReader(cfg.layers[deep.index], source).fail(
            None,
            f"runs at stride {deep.stride}, above the [yolo] layers' largest ({top}); "
            "unsupported (the input size would have to be a multiple of it)",
        )
    return DarknetSpec(width, height, channels, layers, yolos, letterbox, cfg)


def _source_index(rd: SectionReader, key: str, value: int, layers: list[LayerSpec]) -> int:
    index = rd.sec.index + value if value < 0 else value
    if not 0 <= index < rd.sec.index:
        raise rd.fail(
            key, f"points at layer {index}; expected an earlier layer (0..{rd.sec.index - 1})"
        )
    if layers[index].type == "yolo":
        raise rd.fail(key, f"reads the [yolo] layer {index} (unsupported)")
    return index


def _conv(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    cin, stride, (h, w) = prev
    size = rd.integer("size", 1, 1)
    step = rd.integer("stride", 1, 1)
    padding = size // 2 if rd.integer("pad", 0, 0) else rd.integer("padding", 0, 0)
    groups = rd.integer("groups", 1, 1)
    filters = rd.integer("filters", 1, 1)
    if cin % groups or filters % groups:
        raise rd.fail(
            "groups", f"does not divide the input channels ({cin}) and filters ({filters})"
        )
    out_hw = ((h + 2 * padding - size) // step + 1, (w + 2 * padding - size) // step + 1)
    _check_scaled(rd, (h, w), out_hw, Fraction(1, step), "size/stride/pad")
    params = {
        "batch_normalize": bool(rd.integer("batch_normalize", 0, 0)),
        "filters": filters,
        "size": size,
        "stride": step,
        "padding": padding,
        "groups": groups,
        "activation": rd.activation("activation", "logistic"),
        "in_channels": cin,
    }
    return LayerSpec(
        rd.sec.index, "convolutional", rd.sec.line, filters, stride * step, out_hw, params
    )


def _maxpool(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    cin, stride, (h, w) = prev
    step = rd.integer("stride", 1, 1)
    size = rd.integer("size", step, 1)
    padding = rd.integer("padding", size - 1, 0)
    if padding > size - 1:
        raise rd.fail("padding", f"is not supported; expected 0..size-1 ({size - 1})")
    out_hw = ((h + padding - size) // step + 1, (w + padding - size) // step + 1)
    _check_scaled(rd, (h, w), out_hw, Fraction(1, step), "size/stride/padding")
    params = {"size": size, "stride": step, "padding": padding}
    return LayerSpec(rd.sec.index, "maxpool", rd.sec.line, cin, stride * step, out_hw, params)


def _route(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    values = rd.ints("layers")
    if not values:
        raise rd.fail(None, "the key 'layers' is missing or empty")
    sources = tuple(_source_index(rd, "layers", v, layers) for v in values)
    groups = rd.integer("groups", 1, 1)
    group_id = rd.integer("group_id", 0, 0)
    if group_id >= groups:
        raise rd.fail("group_id", f"is not valid; expected 0..groups-1 ({groups - 1})")
    first = layers[sources[0]]
    channels = 0
    for s in sources:
        src = layers[s]
        if src.hw != first.hw:
            raise rd.fail(
                "layers",
                f"joins maps of different sizes (layer {sources[0]}: {first.hw}, layer {s}: "
                f"{src.hw} at the [net] size)",
            )
        if src.channels % groups:
            raise rd.fail("groups", f"does not divide the {src.channels} channels of layer {s}")
        channels += src.channels // groups
    params = {
        "groups": groups,
        "group_id": group_id,
        "channels": [layers[s].channels for s in sources],
    }
    return LayerSpec(
        rd.sec.index, "route", rd.sec.line, channels, first.stride, first.hw, params, sources
    )


def _shortcut(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    cin, stride, hw = prev
    values = rd.ints("from")
    if len(values) != 1:
        raise rd.fail("from", "is not supported; expected one layer")
    source = _source_index(rd, "from", values[0], layers)
    src = layers[source]
    if (src.channels, src.hw) != (cin, hw):
        raise rd.fail(
            "from",
            f"adds layer {source} ({src.channels} x {src.hw}) to the previous layer ({cin} x "
            f"{hw}); yoloqat adds maps of the same shape only",
        )
    params = {"activation": rd.activation("activation", "linear")}
    return LayerSpec(rd.sec.index, "shortcut", rd.sec.line, cin, stride, hw, params, (source,))


def _upsample(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    cin, stride, (h, w) = prev
    step = rd.integer("stride", 2, 1)
    if rd.number("scale", 1.0) != 1.0:
        raise rd.fail("scale", "is not supported; expected 1")
    params = {"stride": step}
    return LayerSpec(
        rd.sec.index, "upsample", rd.sec.line, cin, stride / step, (h * step, w * step), params
    )


def _yolo(rd: SectionReader, layers: list[LayerSpec], prev: tuple) -> LayerSpec:
    cin, stride, hw = prev
    if not layers or layers[-1].type != "convolutional":
        raise rd.fail(None, "must follow a [convolutional] layer (its raw outputs)")
    values = rd.floats("anchors")
    if not values or len(values) % 2 or any(v <= 0 for v in values):
        raise rd.fail("anchors", "is not valid; expected w,h pairs of positive numbers")
    anchors = [[values[i], values[i + 1]] for i in range(0, len(values), 2)]
    num = rd.integer("num", len(anchors), 1)
    if num != len(anchors):
        raise rd.fail("num", f"does not match the {len(anchors)} anchor pairs")
    mask = rd.ints("mask") if "mask" in rd.sec.options else list(range(num))
    if not mask or any(not 0 <= m < num for m in mask) or len(set(mask)) != len(mask):
        raise rd.fail("mask", f"is not valid; expected distinct anchor indices in 0..{num - 1}")
    classes = rd.integer("classes", 20, 1)
    if rd.integer("new_coords", 0, 0) != 0:
        raise rd.fail("new_coords", "is not supported (YOLOv4-style decoding only: new_coords=0)")
    if rd.sec.options.get("nms_kind", "greedynms").strip() != "greedynms":
        raise rd.fail("nms_kind", "is not supported (yoloqat runs greedy IoU NMS: greedynms)")
    scale = rd.number("scale_x_y", 1.0)
    if not 1.0 <= scale <= 4.0:
        raise rd.fail("scale_x_y", "is not valid; expected a number in [1, 4]")
    if cin != len(mask) * (5 + classes):
        raise rd.fail(
            "classes",
            f"needs {len(mask)} anchors x (5 + {classes}) = {len(mask) * (5 + classes)} "
            f"channels; the conv before it has filters={cin}",
        )
    if stride.denominator != 1 or stride.numerator & (stride.numerator - 1):
        raise rd.fail(None, f"reads a map at stride {stride}; expected a power of two")
    params = {
        "anchors": anchors,
        "mask": mask,
        "classes": classes,
        "scale_x_y": scale,
        "ignore_thresh": rd.number("ignore_thresh", 0.7),
    }
    return LayerSpec(
        rd.sec.index, "yolo", rd.sec.line, cin, stride, hw, params, (rd.sec.index - 1,)
    )


_LAYERS = {
    "convolutional": _conv,
    "maxpool": _maxpool,
    "route": _route,
    "shortcut": _shortcut,
    "upsample": _upsample,
    "yolo": _yolo,
}


def _check_scaled(rd: SectionReader, hw: tuple, out: tuple, factor: Fraction, keys: str) -> None:
    """Strided layers must map an ``H x W`` map to ``H/s x W/s`` (at the [net] size)."""
    want = tuple(v * factor for v in hw)
    if any(o < 1 for o in out) or tuple(Fraction(o) for o in out) != want:
        raise rd.fail(
            None,
            f"turns a {hw[0]}x{hw[1]} map into {out[0]}x{out[1]}; yoloqat supports layers that "
            f"keep the size or divide it by their stride (check {keys} and the [net] size)",
        )


def _check_yolos(yolos: list[LayerSpec], cfg: CfgFile, source: str) -> None:
    first = yolos[0].params
    for y in yolos[1:]:
        for key in ("anchors", "classes"):
            if y.params[key] != first[key]:
                sec = cfg.layers[y.index]
                raise SectionReader(sec, source).fail(
                    key, f"differs from the first [yolo] layer's; yoloqat needs one {key} list"
                )
