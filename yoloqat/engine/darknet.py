"""Darknet ``.cfg`` + ``.weights`` models: import into and export from yoloqat checkpoints.

The file format itself (header, per-conv array layout, reading, writing, size checks) is in
:mod:`yoloqat.deploy.darknet_format`, the ``.cfg`` writer and checker in
:mod:`yoloqat.deploy.darknet_cfg`, the config of an imported model in
:mod:`yoloqat.engine.darknet_models`; this module maps files onto networks and checkpoints.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yoloqat.core.errors import CheckpointError, ConfigError, UsageError
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
from yoloqat.engine.darknet_export import export_darknet
from yoloqat.engine.darknet_models import (
    DARKNET_SETTINGS,
    FAMILY_LABEL,
    cfg_graph_config,
    check_meta,
    class_names,
    darknet_config,
    is_yolov3_layout,
    relabel,
)

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

__all__ = [
    "DARKNET_ACTIVATION",
    "DARKNET_SETTINGS",
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

#: How the ``darknet_cfg`` backbone names its ``.cfg`` text in errors.
BACKBONE_LABEL = "model.backbone.cfg"


def _set_params(network: Any, arrays: Mapping[str, np.ndarray]) -> None:
    from mindspore import Tensor

    params = {p.name: p for p in network.get_parameters()}
    for name, value in arrays.items():
        params[name].set_data(Tensor(value))


def _build(cfg: dict[str, Any], registry: ComponentRegistry | None, cfg_file: Any) -> Any:
    from yoloqat.engine import pipeline

    try:
        return pipeline.build_model(cfg, registry)
    except ConfigError as exc:
        if cfg_file is None:
            raise
        raise relabel(relabel(exc, BACKBONE_LABEL, cfg_file), FAMILY_LABEL, cfg_file) from None


def _network_config(
    cfg_file: Path | None,
    *,
    config: str | Path | None,
    overrides: Sequence[str],
    num_classes: int | None,
    backbone_only: bool,
    cfg_graph: bool,
    registry: ComponentRegistry | None,
) -> tuple[dict[str, Any], list[str], Any, dict[str, Any]]:
    """The config and network of the import, its notes and the ``.cfg``'s yoloqat metadata.

    With a ``.cfg`` and no ``--config``: the bundled YOLOv3 network when the ``.cfg`` is
    its layout (checked layer by layer), else (or with ``cfg_graph``) the ``.cfg``'s graph.
    """
    from yoloqat.core.cfgfile import read_cfg_file
    from yoloqat.deploy.darknet_cfg import check_cfg_matches

    if cfg_graph and (cfg_file is None or config is not None or backbone_only):
        raise UsageError("--cfg-graph builds the network of a --cfg file: give --cfg, no --config")
    if cfg_file is None:
        cfg, notes = darknet_config(config, overrides, num_classes)
        return cfg, notes, _build(cfg, registry, None), {}
    parsed, text = read_cfg_file(cfg_file)
    meta = check_meta(parsed.meta, str(cfg_file))
    notes = []
    if config is not None or backbone_only or (not cfg_graph and is_yolov3_layout(parsed)):
        cfg, notes = darknet_config(config, overrides, num_classes, cfg_file, meta)
        network = _build(cfg, registry, cfg_file)
        try:
            check_cfg_matches(cfg_file, network)
            return cfg, notes, network, meta
        except CheckpointError as exc:
            if config is not None or backbone_only:
                raise
            notes = [f"not the bundled YOLOv3 network ({exc.message}); building the .cfg's graph"]
    cfg, more = cfg_graph_config(
        cfg_file, text, parsed, overrides=overrides, num_classes=num_classes, registry=registry
    )
    network = _build(cfg, registry, cfg_file)
    size = int(cfg["eval"]["testing_shape"])
    if size % network.input_multiple:
        raise ConfigError(
            f"{cfg_file}:{parsed.net.key_lines.get('width', parsed.net.line)}: [net] "
            f"width={size} is not a multiple of the network's largest stride "
            f"{network.input_multiple}",
            hint="set --set eval.testing_shape=N (a multiple of it) or fix the .cfg",
        )
    return cfg, notes + more, network, meta


def import_darknet(
    weights: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    overrides: Sequence[str] = (),
    num_classes: int | None = None,
    backbone_only: bool = False,
    cfg_file: str | Path | None = None,
    names: str | Path | None = None,
    cfg_graph: bool = False,
    registry: ComponentRegistry | None = None,
) -> dict[str, Any]:
    """Convert a Darknet ``.weights`` file (and its ``.cfg``) into a ready yoloqat checkpoint.

    - With ``cfg_file`` alone: Darknet's YOLOv3 layout becomes the bundled ``darknet53`` +
      ``yolov3_head`` network; any other ``.cfg`` (or ``cfg_graph=True``) its own graph
      (:func:`~yoloqat.engine.darknet_models.cfg_graph_config`).
    - With ``config`` (default ``yolov3_darknet53`` without a ``.cfg``): that network, set
      by :func:`~yoloqat.engine.darknet_models.darknet_config` to compute what Darknet
      computes; a ``cfg_file`` is then checked against it layer by layer.
    - ``backbone_only``: the file holds the backbone convs (``darknet53.conv.74``) or a whole
      detector of this config (``yolov3.weights``); only ``backbone.*`` tensors are written.

    The checkpoint stores the config (so eval, predict, export, calibrate and QAT use the
    model as it is) and ``class_names`` (``names``, a ``.names`` file; else the ``.cfg``'s
    yoloqat metadata; else COCO's for 80 classes; else ``class0``...). Returns a summary.
    """
    from yoloqat.core import events
    from yoloqat.core.limits import check_input_file
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import save_checkpoint

    weights = Path(weights)
    check_input_file(weights, "weights", error=CheckpointError, what="Darknet weights file")
    cfg, notes, network, meta = _network_config(
        Path(cfg_file) if cfg_file is not None else None,
        config=config,
        overrides=overrides,
        num_classes=num_classes,
        backbone_only=backbone_only,
        cfg_graph=cfg_graph,
        registry=registry,
    )
    if pipeline.build_quantizer(cfg, registry) is not None:
        raise ConfigError(
            "the config names a quantizer; Darknet weights are float",
            hint="import with a float config, then start QAT with yoloqat train --resume_yolov3",
        )
    labels, origin = class_names(
        int(network.num_classes), names_file=names, stored=meta.get("class_names")
    )
    for note in [*notes, f"class names: {origin}"]:
        events.info(note)
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
    meta_out = {
        "quantized": False,
        "num_classes": int(network.num_classes),
        "class_names": labels,
        "config": copy.deepcopy(cfg),
        "source": "darknet",
        "darknet_file": weights.name,
        "darknet_header": header.to_dict(),
        "darknet_cfg": Path(cfg_file).name if cfg_file is not None else None,
        "backbone_only": backbone_only,
    }
    save_checkpoint(network.backbone if backbone_only else network, output, meta_out)
    events.emit("darknet_import", weights=str(weights), output=str(output), convs=len(specs))
    return {
        "output": str(output),
        "weights": str(weights),
        "convs": len(specs),
        "tensors": len(keep),
        "floats": payload_floats(specs),
        "backbone_only": backbone_only,
        "header": header.to_dict(),
        "network": cfg["model"]["backbone"]["name"],
        "num_classes": int(network.num_classes),
    }
