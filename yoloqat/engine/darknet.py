"""Darknet ``.weights`` files: import into and export from yoloqat checkpoints.

The file format itself (header, per-conv array layout, reading, writing, size checks) is in
:mod:`yoloqat.deploy.darknet_format`; this module maps it onto yoloqat networks and
checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.core.layers import DARKNET_BN_EPS
from yoloqat.deploy.darknet_format import (
    DARKNET_ACTIVATION,
    DEFAULT_CONFIG,
    DEFAULT_VERSION,
    ConvSpec,
    DarknetHeader,
    conv_specs,
    explain_size,
    parse_header,
    payload_floats,
    read_darknet_weights,
    write_darknet_weights,
)

__all__ = [
    "DARKNET_ACTIVATION",
    "DEFAULT_CONFIG",
    "DEFAULT_VERSION",
    "ConvSpec",
    "DarknetHeader",
    "conv_specs",
    "darknet_config",
    "export_darknet",
    "import_darknet",
    "parse_header",
    "payload_floats",
    "read_darknet_weights",
    "write_darknet_weights",
]


def _set_params(network: Any, arrays: Mapping[str, np.ndarray]) -> None:
    from mindspore import Tensor

    params = {p.name: p for p in network.get_parameters()}
    for name, value in arrays.items():
        params[name].set_data(Tensor(value))


#: What an imported model's config says so that it computes what Darknet computes.
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


def darknet_config(
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    cfg_file: str | Path | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The config of an imported network: ``config`` set to compute what Darknet computes.

    :data:`DARKNET_SETTINGS` (leaky backbone, BN eps 1e-6, RGB/255 input, letterbox), then
    what ``cfg_file`` (a ``yolov3.cfg``) says (classes, anchors, masks, width, input size),
    then ``num_classes``, then ``overrides`` (``--set``, which win over everything).
    Returns the config and notes naming each changed setting.
    """
    from yoloqat.core.config import apply_overrides, get_dotted, load_config, set_dotted

    cfg = load_config(config or DEFAULT_CONFIG)
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1
    ):
        raise ConfigError(f"--num-classes {num_classes!r} is not valid; expected an integer >= 1")
    settings = (
        dict(DARKNET_SETTINGS) if get_dotted(cfg, "model.backbone.name") == "darknet53" else {}
    )
    if cfg_file is not None:
        from_cfg = _cfg_settings(cfg_file)
        given = from_cfg["model.num_classes"]
        if num_classes is not None and num_classes != given:
            raise ConfigError(
                f"--num-classes {num_classes} but {cfg_file} says classes={given}",
                hint="drop --num-classes: the .cfg gives the class count",
            )
        settings |= from_cfg
    if num_classes is not None:
        settings["model.num_classes"] = num_classes
    notes = []
    for key, value in settings.items():
        before = get_dotted(cfg, key, None)
        if before != value:
            notes.append(f"{key} set to {value!r} (was {before!r}) to match the Darknet model")
            set_dotted(cfg, key.split("."), value)
    return apply_overrides(cfg, list(overrides)), notes


def import_darknet(
    weights: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    backbone_only: bool = False,
    cfg_file: str | Path | None = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Convert a Darknet ``.weights`` file into a weights-only yoloqat checkpoint.

    The network is built from ``config`` (default ``yolov3_darknet53``) set by
    :func:`darknet_config` to compute what Darknet computes (and to what ``cfg_file``, a
    ``yolov3.cfg``, describes; the network's layers must then match the ``.cfg``'s). The
    checkpoint stores that config, so eval, predict, export and QAT use it as it is.
    With ``backbone_only`` the file must hold the backbone convs
    (``darknet53.conv.74``) or a whole detector of this config (``yolov3.weights``), and only
    the ``backbone.*`` tensors are written. Returns a summary dict.
    """
    from yoloqat.core import events
    from yoloqat.core.limits import check_input_file
    from yoloqat.engine import pipeline
    from yoloqat.engine.training.checkpoint import save_checkpoint

    weights = Path(weights)
    check_input_file(weights, "weights", error=CheckpointError, what="Darknet weights file")
    cfg, notes = darknet_config(config, overrides, num_classes, cfg_file)
    if pipeline.build_quantizer(cfg, registry) is not None:
        raise ConfigError(
            "the config names a quantizer; Darknet weights are float",
            hint="import with a float config, then start QAT with yoloqat train --resume_yolov3",
        )
    for note in notes:
        events.info(note)
    network = pipeline.build_model(cfg, registry)
    if cfg_file is not None:
        from yoloqat.deploy.darknet_cfg import check_cfg_matches

        check_cfg_matches(cfg_file, network)
    specs = conv_specs(network, backbone_only=backbone_only)
    size = weights.stat().st_size
    with open(weights, "rb") as fh:
        header = parse_header(fh.read(20), weights)
    layout = specs
    if size != header.nbytes + 4 * payload_floats(specs):
        full = conv_specs(network) if backbone_only else None
        if full is not None and size == header.nbytes + 4 * payload_floats(full):
            layout = full  # a whole detector file: read it all, keep the backbone
        else:
            explain_size(weights, network, specs, backbone_only)
    header, arrays = read_darknet_weights(weights, layout)
    keep = {n for s in specs for n in s.names}
    _set_params(network, {n: a for n, a in arrays.items() if n in keep})
    meta = {
        "quantized": False,
        "num_classes": int(network.num_classes),
        "config": copy.deepcopy(cfg),
        "source": "darknet",
        "darknet_file": weights.name,
        "darknet_header": header.to_dict(),
        "darknet_cfg": Path(cfg_file).name if cfg_file is not None else None,
        "backbone_only": backbone_only,
    }
    save_checkpoint(network.backbone if backbone_only else network, output, meta)
    events.emit("darknet_import", weights=str(weights), output=str(output), convs=len(specs))
    return {
        "output": str(output),
        "weights": str(weights),
        "convs": len(specs),
        "tensors": len(keep),
        "floats": payload_floats(specs),
        "backbone_only": backbone_only,
        "header": header.to_dict(),
    }


def export_darknet(
    checkpoint: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    backbone_only: bool = False,
    cfg_file: str | Path | None = None,
    registry: Any = None,
) -> dict[str, Any]:
    """Write a float yoloqat checkpoint as a Darknet ``.weights`` file (header 0.2.0, seen 0).

    With ``cfg_file`` the network's Darknet ``.cfg`` (``yolov3.cfg`` layout, input size the
    checkpoint's ``eval.testing_shape``) is written there too.

    The network is rebuilt from the config stored in the checkpoint (or ``config``). A QAT
    checkpoint is refused. With ``backbone_only`` only the backbone convs are written (a
    ``darknet53.conv.74``-style file); a backbone-only checkpoint needs it.
    """
    from yoloqat.core import events
    from yoloqat.core.config import load_config
    from yoloqat.engine import pipeline
    from yoloqat.engine.inference import model_config
    from yoloqat.engine.training.checkpoint import load_weights, read_checkpoint, weights_only

    params, meta = read_checkpoint(checkpoint)
    if meta.get("quantized"):
        raise CheckpointError(
            f"{checkpoint} is a QAT (int8 fake-quant) checkpoint; Darknet weights are float",
            hint="export the float checkpoint the QAT run started from",
        )
    cfg = model_config(load_config(config or DEFAULT_CONFIG), meta, explicit=config is not None)
    if pipeline.build_quantizer(cfg, registry) is not None:
        raise CheckpointError(
            f"the config of {checkpoint} quantizes the network; Darknet weights are float",
            hint="pass a float --config",
        )
    given = weights_only(params)
    only_backbone = bool(given) and all(n.startswith("backbone.") for n in given)
    if only_backbone and not backbone_only:
        raise CheckpointError(
            f"{checkpoint} holds only backbone weights", hint="pass --backbone-only"
        )
    network = pipeline.build_model(cfg, registry)
    specs = conv_specs(network, backbone_only=backbone_only)
    if backbone_only:
        part = {n: v for n, v in given.items() if n.startswith("backbone.")}
        load_weights(network.backbone, part, source=checkpoint)
    else:
        load_weights(network, given, source=checkpoint)
    values = {p.name: p.asnumpy() for p in network.get_parameters()}
    backbone = getattr(network.backbone, "activation", DARKNET_ACTIVATION)
    if backbone != DARKNET_ACTIVATION:
        events.warn(
            f"the backbone uses {backbone}; Darknet's darknet53.cfg/yolov3.cfg say "
            f"activation=leaky, so set activation={backbone} on the backbone layers of the .cfg"
        )
    if getattr(network.backbone, "padding", "symmetric") != "symmetric":
        events.warn(
            "the backbone uses TF-style 'same' padding; Darknet pads k//2 on every side, so "
            "its outputs will differ slightly at the borders"
        )
    if cfg_file is not None:
        from yoloqat.deploy.darknet_cfg import write_cfg

        if backbone_only:
            raise ConfigError("--cfg describes a whole detector; drop --backbone-only")
        shape = int((cfg.get("eval") or {}).get("testing_shape") or 416)
        write_cfg(cfg_file, network, input_size=shape)
    eps = {float(u.bn.eps) for u in network.backbone.conv_units() if hasattr(u, "bn")}
    if eps != {DARKNET_BN_EPS}:
        events.warn(
            f"the network's BatchNorm eps is {sorted(eps)}; Darknet uses {DARKNET_BN_EPS}, "
            "so Darknet's outputs of these weights will differ slightly"
        )
    size = write_darknet_weights(output, specs, values)
    events.emit("darknet_export", checkpoint=str(checkpoint), output=str(output), bytes=size)
    return {
        "output": str(output),
        "checkpoint": str(checkpoint),
        "convs": len(specs),
        "bytes": size,
        "backbone_only": backbone_only,
        "num_classes": int(network.num_classes),
    }
