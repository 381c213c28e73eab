"""The config of an imported Darknet model, its class names and yoloqat's ``.cfg`` metadata.

Two kinds of network come out of ``import-darknet``:

- the bundled YOLOv3 network (``darknet53`` + ``yolov3_head``) when a ``--config`` names it
  or the ``.cfg`` is Darknet's YOLOv3 layout (:func:`darknet_config`): the seed's layer
  names, so its QAT recipe and reports apply as they are;
- any other ``.cfg`` (or ``--cfg-graph``): the ``.cfg``'s own graph (the ``darknet`` family
  preset: ``darknet_cfg`` + ``darknet_yolo_head`` + ``yolov3_loss``; :func:`cfg_graph_config`).

Both are set up as Darknet runs them: BatchNorm epsilon 1e-6, RGB/255 input, letterbox,
unless the ``.cfg``'s ``# yoloqat: {json}`` line (written by ``export-darknet``) says what
the exported model used instead (``normalize``, ``letterbox``, ``bn_eps``, ``class_names``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yoloqat.core.cfgfile import CfgFile
from yoloqat.core.errors import ConfigError, DataError
from yoloqat.core.layers import DARKNET_BN_EPS
from yoloqat.deploy.darknet_format import DARKNET_ACTIVATION, DEFAULT_CONFIG

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

#: What an imported YOLOv3 network's config says so that it computes what Darknet computes.
DARKNET_SETTINGS: dict[str, Any] = {
    "model.backbone.activation": DARKNET_ACTIVATION,
    "model.backbone.negative_slope": 0.1,
    "model.backbone.padding": "symmetric",
    "model.backbone.bn_eps": DARKNET_BN_EPS,
    "model.head.negative_slope": 0.1,
    "model.head.padding": "symmetric",
    "model.head.bn_eps": DARKNET_BN_EPS,
    "data.normalize": "unit",
    "eval.letterbox": True,
}
#: How the ``darknet`` family preset names the ``.cfg`` text in its errors (the importer
#: names the file instead).
FAMILY_LABEL = "family.cfg"
#: The layer indices of the [yolo] sections of Darknet's yolov3.cfg (107 layers).
YOLOV3_YOLO_LAYERS = (82, 94, 106)
#: The keys of yoloqat's ``.cfg`` metadata line.
META_KEYS = ("class_names", "normalize", "letterbox", "bn_eps")


def check_meta(meta: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The ``# yoloqat:`` metadata of a ``.cfg``, checked (unknown keys are an error)."""
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ConfigError(
            f"{source}: the '# yoloqat:' line has unknown keys {unknown}; "
            f"known: {', '.join(META_KEYS)}"
        )
    names = meta.get("class_names")
    bad = (
        ("normalize" in meta and meta["normalize"] not in ("unit", "imagenet"))
        or ("letterbox" in meta and not isinstance(meta["letterbox"], bool))
        or ("bn_eps" in meta and not isinstance(meta["bn_eps"], (int, float)))
        or (
            names is not None
            and not (isinstance(names, list) and all(isinstance(n, str) for n in names))
        )
    )
    if bad:
        raise ConfigError(f"{source}: the '# yoloqat:' line holds a malformed value: {meta!r}")
    return dict(meta)


def class_names(
    num_classes: int, *, names_file: str | Path | None = None, stored: Sequence[str] | None = None
) -> tuple[list[str], str]:
    """The class names of an imported model and where they come from: ``--names`` (a
    ``.names`` file, one a line), else the ``.cfg``'s metadata, else Darknet's 80 COCO names
    for an 80-class model, else ``class0`` ... ``class{N-1}``."""
    from yoloqat.data.names import COCO80_NAMES, read_names

    if names_file is not None:
        try:
            names = read_names(str(names_file), None, "--names")
        except DataError as exc:
            raise ConfigError(exc.message) from None
        origin = str(names_file)
    elif stored:
        names, origin = list(stored), "the .cfg's yoloqat metadata"
    elif num_classes == len(COCO80_NAMES):
        return list(COCO80_NAMES), "Darknet's COCO names (80 classes)"
    else:
        return [f"class{i}" for i in range(num_classes)], "class0..classN-1 (pass --names)"
    if len(names) != num_classes:
        raise ConfigError(
            f"{origin} holds {len(names)} class names; the model has {num_classes} classes"
        )
    return names, origin


def relabel(exc: ConfigError, label: str, path: str | Path) -> ConfigError:
    """``exc`` with a message naming ``path`` where it named the ``.cfg`` text ``label``."""
    if exc.message.startswith(f"{label}:") or exc.message.startswith(f"{label} "):
        exc.message = str(path) + exc.message[len(label) :]
        exc.args = (exc.message,)
    return exc


def is_yolov3_layout(parsed: CfgFile) -> bool:
    """Whether a ``.cfg`` looks like Darknet's yolov3.cfg (107 layers, [yolo] at 82, 94 and
    106, leaky/linear convs, plain YOLOv3 decoding): worth checking against the bundled
    YOLOv3 network."""
    layers = parsed.layers
    if len(layers) != 107:
        return False
    if tuple(i for i, s in enumerate(layers) if s.type == "yolo") != YOLOV3_YOLO_LAYERS:
        return False
    for sec in layers:
        o = sec.options
        if sec.type == "convolutional" and o.get("activation") not in ("leaky", "linear"):
            return False
        if sec.type == "yolo" and (
            o.get("scale_x_y", "1") not in ("1", "1.0", "1.00") or o.get("new_coords", "0") != "0"
        ):
            return False  # (the .cfg's own graph reads and checks these values)
    return True


def _cfg_settings(cfg_file: str | Path) -> dict[str, Any]:
    """Config keys taken from a Darknet YOLOv3 ``.cfg`` (classes, anchors, width, size)."""
    from yoloqat.deploy.darknet_cfg import cfg_model_settings

    got = cfg_model_settings(cfg_file)
    return {
        "model.num_classes": got["num_classes"],
        "model.head.anchors": got["anchors"],
        "model.head.anchor_masks": got["anchor_masks"],
        "model.backbone.width": got["width"],
        "model.head.width": got["width"],
        "eval.testing_shape": got["input_size"],
    }


def _meta_settings(meta: Mapping[str, Any], eps_keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "normalize" in meta:
        out["data.normalize"] = meta["normalize"]
    if "letterbox" in meta:
        out["eval.letterbox"] = meta["letterbox"]
    if "bn_eps" in meta:
        out |= {key: float(meta["bn_eps"]) for key in eps_keys}
    return out


def _apply(cfg: dict[str, Any], settings: Mapping[str, Any]) -> list[str]:
    from yoloqat.core.config import get_dotted, set_dotted

    notes = []
    for key, value in settings.items():
        before = get_dotted(cfg, key)
        if before != value:
            shown = f"{value!r}" if len(repr(value)) < 80 else "the .cfg's"
            notes.append(f"{key} set to {shown} (was {before!r}) to match the Darknet model")
            set_dotted(cfg, key.split("."), value)
    return notes


def _check_num_classes(num_classes: int | None, given: int, cfg_file: Any) -> None:
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ConfigError(f"--num-classes {num_classes!r} is not valid; expected an integer >= 1")
    if num_classes is not None and cfg_file is not None and num_classes != given:
        raise ConfigError(
            f"--num-classes {num_classes} but {cfg_file} says classes={given}",
            hint="drop --num-classes: the .cfg gives the class count",
        )


def darknet_config(
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    cfg_file: str | Path | None = None,
    meta: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The config of an imported YOLOv3 network: ``config`` set to compute what Darknet does.

    :data:`DARKNET_SETTINGS` (leaky backbone, BN eps 1e-6, RGB/255 input, letterbox), then
    what ``cfg_file`` (a ``yolov3.cfg``) says (classes, anchors, masks, width, input size),
    then its yoloqat ``meta`` (normalize, letterbox, bn_eps), then ``num_classes``, then
    ``overrides`` (``--set``, which win over everything). Returns the config and notes
    naming each changed setting.
    """
    from yoloqat.core.config import apply_overrides, get_dotted, load_config

    cfg = load_config(config or DEFAULT_CONFIG)
    _check_num_classes(num_classes, 0, None)
    darknet53 = get_dotted(cfg, "model.backbone.name") == "darknet53"
    settings = dict(DARKNET_SETTINGS) if darknet53 else {}
    if cfg_file is not None:
        from_cfg = _cfg_settings(cfg_file)
        _check_num_classes(num_classes, from_cfg["model.num_classes"], cfg_file)
        settings |= from_cfg
    if darknet53:
        settings |= _meta_settings(meta or {}, ("model.backbone.bn_eps", "model.head.bn_eps"))
    if num_classes is not None:
        settings["model.num_classes"] = num_classes
    notes = _apply(cfg, settings)
    return apply_overrides(cfg, list(overrides)), notes


def cfg_graph_config(
    cfg_file: str | Path,
    text: str,
    parsed: CfgFile,
    *,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    registry: ComponentRegistry | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The config of a network built from the ``.cfg``'s own sections: the ``darknet``
    family preset's blocks (the ``.cfg`` text stored in ``model.backbone.cfg``, so the
    checkpoint rebuilds it anywhere), the ``.cfg``'s classes and ``[net]`` size, Darknet's
    input and BN epsilon (or the yoloqat metadata's), over the bundled training settings,
    then ``overrides``. Errors name ``cfg_file``, its line, section index, key and value."""
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.engine.pipeline import registry_of

    meta = check_meta(parsed.meta, str(cfg_file))
    eps = float(meta.get("bn_eps", DARKNET_BN_EPS))
    try:
        preset = registry_of(registry).create("family", "darknet", cfg=text, bn_eps=eps)
    except ConfigError as exc:
        raise relabel(exc, FAMILY_LABEL, cfg_file) from None
    height, width = (parsed.net.options.get(k, "416") for k in ("height", "width"))
    if width != height:
        line = parsed.net.key_lines.get("width", parsed.net.line)
        raise ConfigError(
            f"{cfg_file}:{line}: [net] width={width} height={height}; yoloqat runs square inputs",
            hint="set width and height to the same multiple of the largest [yolo] stride",
        )
    classes = _classes(parsed)
    _check_num_classes(num_classes, classes, cfg_file)
    cfg = load_config(DEFAULT_CONFIG)
    cfg.pop("family", None)
    cfg["model"] = {"num_classes": classes, "backbone": preset["backbone"], "head": preset["head"]}
    loss = dict(cfg.get("loss") or {})
    cfg["loss"] = (
        {**loss, **preset["loss"]} if loss.get("name") == "yolov3_loss" else preset["loss"]
    )
    notes = [
        f"model: the .cfg's own graph ({len(parsed.layers)} layers, "
        f"{len(preset['head']['anchor_masks'])} [yolo] outputs, {classes} classes)"
    ]
    settings = {
        "data.normalize": preset["data"]["normalize"],
        "eval.letterbox": preset["eval"]["letterbox"],
        "eval.testing_shape": preset["eval"]["testing_shape"],
        **_meta_settings(meta, ()),
    }
    notes += _apply(cfg, settings)
    return apply_overrides(cfg, list(overrides)), notes


def _classes(parsed: CfgFile) -> int:
    yolo = next(s for s in parsed.layers if s.type == "yolo")
    return int(yolo.options.get("classes", 20))
