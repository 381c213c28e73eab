"""``export-darknet``: a float yoloqat checkpoint as a Darknet ``.weights`` (and ``.cfg``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yoloqat.core.config import read
from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.core.layers import DARKNET_BN_EPS
from yoloqat.deploy.darknet_format import (
    DARKNET_ACTIVATION,
    DEFAULT_CONFIG,
    conv_specs,
    write_darknet_weights,
)

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


def _export_meta(cfg: dict[str, Any], meta: Mapping[str, Any], network: Any) -> dict[str, Any]:
    """What the ``.cfg`` cannot say, for ``import-darknet``: names, input, BN epsilon."""
    from yoloqat.engine.inference import preprocessing

    prep = preprocessing(cfg)
    names = meta.get("class_names") or [str(i) for i in range(int(network.num_classes))]
    eps = sorted({float(u.bn.eps) for u in _units(network) if hasattr(u, "bn")})
    out: dict[str, Any] = {
        "class_names": list(names),
        "normalize": prep["normalize"],
        "letterbox": prep["letterbox"],
    }
    if len(eps) == 1:
        out["bn_eps"] = eps[0]
    return out


def _units(network: Any) -> list[Any]:
    head = getattr(network.head, "conv_units", None)
    return [*network.backbone.conv_units(), *(head() if head is not None else [])]


def _warn_darknet_differs(network: Any, extra: Mapping[str, Any]) -> None:
    from yoloqat.core import events

    backbone = getattr(network.backbone, "activation", DARKNET_ACTIVATION)
    if backbone != DARKNET_ACTIVATION:
        events.warn(
            f"the backbone uses {backbone} (written as activation={backbone} in the .cfg; "
            "Darknet's published yolov3 backbone is leaky)"
        )
    if getattr(network.backbone, "padding", "symmetric") != "symmetric":
        events.warn(
            "the backbone uses TF-style 'same' padding; Darknet pads k//2 on every side, so "
            "its outputs will differ slightly at the borders"
        )
    if extra.get("bn_eps", DARKNET_BN_EPS) != DARKNET_BN_EPS:
        events.warn(
            f"the network's BatchNorm eps is {extra.get('bn_eps')}; Darknet and OpenCV use "
            f"{DARKNET_BN_EPS}, so their outputs of these weights differ slightly "
            "(import-darknet restores it from the .cfg)"
        )
    if extra.get("normalize", "unit") != "unit":
        events.warn(
            f"the network expects {extra['normalize']}-normalised input; Darknet and OpenCV "
            "feed RGB/255, so they do not reproduce its outputs (import-darknet restores it "
            "from the .cfg)"
        )


def export_darknet(
    checkpoint: str | Path,
    output: str | Path,
    *,
    config: str | Path | None = None,
    backbone_only: bool = False,
    cfg_file: str | Path | None = None,
    names: str | Path | None = None,
    registry: ComponentRegistry | None = None,
) -> dict[str, Any]:
    """Write a float yoloqat checkpoint as a Darknet ``.weights`` file (header 0.2.0, seen 0).

    With ``cfg_file`` the network's ``.cfg`` is written there too (input size the
    checkpoint's ``eval.testing_shape``): a network imported from a ``.cfg`` gives its own
    sections back, a DarkNet-53 + YOLOv3 network the ``yolov3.cfg`` layout. Its
    ``# yoloqat: {json}`` line keeps the class names, input normalisation, letterbox and BN
    epsilon, so ``import-darknet`` of the pair rebuilds the same model. ``names``: also
    write the class names as a Darknet ``.names`` file (one a line).

    The network is rebuilt from the config stored in the checkpoint (or ``config``). A QAT
    checkpoint is refused. With ``backbone_only`` only the backbone convs are written (a
    ``darknet53.conv.74``-style file); a backbone-only checkpoint needs it.
    """
    from yoloqat.core import events
    from yoloqat.core.atomic import write_text
    from yoloqat.core.config import load_config
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import load_weights, read_checkpoint, weights_only
    from yoloqat.engine.inference import model_config

    params, meta = read_checkpoint(checkpoint)
    if meta.get("quantized"):
        raise CheckpointError(
            f"{checkpoint} is a QAT (int8 fake-quant) checkpoint; Darknet weights are float",
            hint="export the float checkpoint the QAT run started from",
        )
    cfg = model_config(load_config(config or DEFAULT_CONFIG), meta, explicit=config is not None)
    if config is None and isinstance(meta.get("config"), dict):
        for key in ("data", "eval"):  # the stored preprocessing and input size
            cfg[key] = copy.deepcopy(meta["config"].get(key, cfg.get(key)))
    if pipeline.build_quantizer(cfg, registry) is not None:
        raise CheckpointError(
            f"the config of {checkpoint} quantizes the network; Darknet weights are float",
            hint="pass a float --config",
        )
    given = weights_only(params)
    network = pipeline.build_model(cfg, registry)
    head = any(p.name.startswith("head.") for p in network.get_parameters())
    only_backbone = head and bool(given) and all(n.startswith("backbone.") for n in given)
    if only_backbone and not backbone_only:
        raise CheckpointError(
            f"{checkpoint} holds only backbone weights", hint="pass --backbone-only"
        )
    specs = conv_specs(network, backbone_only=backbone_only)
    if backbone_only:
        part = {n: v for n, v in given.items() if n.startswith("backbone.")}
        load_weights(network.backbone, part, source=checkpoint)
    else:
        load_weights(network, given, source=checkpoint)
    values = {p.name: p.asnumpy() for p in network.get_parameters()}
    extra = _export_meta(cfg, meta, network)
    _warn_darknet_differs(network, extra)
    if cfg_file is not None:
        from yoloqat.deploy.darknet_cfg import write_cfg

        if backbone_only:
            raise ConfigError("--cfg describes a whole detector; drop --backbone-only")
        shape = int(read(cfg, "eval.testing_shape"))
        write_cfg(cfg_file, network, input_size=shape, meta=extra)
    if names is not None:
        write_text(Path(names), "\n".join(extra["class_names"]) + "\n")
    size = write_darknet_weights(output, specs, values)
    events.emit("darknet_export", checkpoint=str(checkpoint), output=str(output), bytes=size)
    return {
        "output": str(output),
        "checkpoint": str(checkpoint),
        "convs": len(specs),
        "bytes": size,
        "backbone_only": backbone_only,
        "num_classes": int(network.num_classes),
        "cfg": str(cfg_file) if cfg_file is not None else None,
    }
