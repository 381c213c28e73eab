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


def darknet_config(
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """The config of an imported network: ``config`` with the Darknet backbone activation.

    Returns the config and notes (e.g. that the activation was changed to leaky).
    """
    from yoloqat.core.config import get_dotted, load_config, set_dotted

    cfg = load_config(config or DEFAULT_CONFIG, overrides)
    notes = []
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(
                f"--num-classes {num_classes!r} is not valid; expected an integer >= 1"
            )
        set_dotted(cfg, ["model", "num_classes"], num_classes)
    if get_dotted(cfg, "model.backbone.name") == "darknet53":
        act = get_dotted(cfg, "model.backbone.activation", "relu")
        if act != DARKNET_ACTIVATION:
            notes.append(
                f"model.backbone.activation set to {DARKNET_ACTIVATION} (was {act}): Darknet "
                "trained these weights with LeakyReLU(0.1)"
            )
            set_dotted(cfg, ["model", "backbone", "activation"], DARKNET_ACTIVATION)
    return cfg, notes


def import_darknet(
    weights: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    backbone_only: bool = False,
    registry: Any = None,
) -> dict[str, Any]:
    """Convert a Darknet ``.weights`` file into a weights-only yoloqat checkpoint.

    The network is built from ``config`` (default ``yolov3_darknet53``) with the backbone
    activation set to leaky. With ``backbone_only`` the file must hold the backbone convs
    (``darknet53.conv.74``) or a whole detector of this config (``yolov3.weights``), and only
    the ``backbone.*`` tensors are written. Returns a summary dict.
    """
    from yoloqat.core import events
    from yoloqat.engine import pipeline
    from yoloqat.engine.training.checkpoint import save_checkpoint

    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"Darknet weights file not found: {weights}")
    cfg, notes = darknet_config(config, overrides, num_classes)
    if pipeline.build_quantizer(cfg, registry) is not None:
        raise ConfigError(
            "the config names a quantizer; Darknet weights are float",
            hint="import with a float config, then start QAT with yoloqat train --resume_yolov3",
        )
    for note in notes:
        events.info(note)
    network = pipeline.build_model(cfg, registry)
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
    registry: Any = None,
) -> dict[str, Any]:
    """Write a float yoloqat checkpoint as a Darknet ``.weights`` file (header 0.2.0, seen 0).

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
