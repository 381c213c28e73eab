"""Build components from a config: names resolved and parameters checked before building."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from yoloqat.core.config import (
    check_config,
    component_blocks,
    get_dotted,
    plain,
    resolve_family,
)
from yoloqat.core.errors import ConfigError
from yoloqat.core.schema import Config, default

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


def registry_of(registry: ComponentRegistry | None = None) -> ComponentRegistry:
    """``registry``, or the process-wide default registry when it is None."""
    if registry is not None:
        return registry
    from yoloqat.registry import default_registry

    return default_registry()


def _block(
    cfg: Config | Mapping[str, Any], dotted: str, registry: ComponentRegistry | None = None
) -> tuple[str, dict[str, Any]]:
    cfg = plain(cfg)
    if cfg.get("family") is not None:  # blocks the family preset fills in
        cfg = resolve_family(cfg, registry_of(registry))
    for path, _kind, name, params in component_blocks(cfg):
        if path == dotted:
            return name, params
    raise ConfigError(f"the config has no '{dotted}' block (a mapping with a 'name')")


def validate(cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None) -> None:
    """Check every component of ``cfg`` (names and parameters) without building anything."""
    reg = registry_of(registry)
    check_config(resolve_family(cfg, reg), reg)


def num_classes_of(cfg: Config | Mapping[str, Any]) -> int:
    if isinstance(cfg, Config):
        return cfg.model.num_classes
    value = get_dotted(cfg, "model.num_classes")
    if value is None:
        value = default("model.num_classes")
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.num_classes={value!r} must be a positive integer")
    return value


def injected(comp: Any, params: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus those of ``values`` that ``comp``'s factory declares and ``params``
    does not set: the pipeline's values go only to factories that ask for them."""
    extra = {k: v for k, v in values.items() if k in comp.parameters and k not in params}
    return {**params, **extra}


def build_model(cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None) -> Any:
    """The float :class:`~yoloqat.core.detector.Detector` described by ``cfg['model']``
    (a ``family`` preset filled in first: :func:`~yoloqat.core.config.resolve_family`).

    The head factory gets ``in_channels`` and ``in_strides`` (the backbone's
    ``out_channels`` and ``strides``) and ``num_classes`` (``model.num_classes``) when it
    declares them. Both components are checked against their contracts when built (a
    PluginError naming the member).
    """
    from yoloqat.core.detector import Detector

    reg = registry_of(registry)
    cfg = resolve_family(cfg, reg)
    bname, bparams = _block(cfg, "model.backbone", registry)
    hname, hparams = _block(cfg, "model.head", registry)
    backbone = reg.create("backbone", bname, **bparams)
    provided = {
        "in_channels": tuple(backbone.out_channels),
        "in_strides": tuple(backbone.strides),
        "num_classes": num_classes_of(cfg),
    }
    head = reg.create("head", hname, **injected(reg.get("head", hname), hparams, provided))
    return Detector(backbone, head)


def build_quantizer(
    cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None
) -> Any | None:
    """The quantizer object, or None for ``quantizer: {name: none}`` (or no block)."""
    cfg = plain(cfg)
    if get_dotted(cfg, "quantizer") is None:
        return None
    name, params = _block(cfg, "quantizer", registry)
    if name == "none":
        return None
    return registry_of(registry).create("quantizer", name, **params)


def quantize(network: Any, quantizer: Any, name: str = "quantizer") -> Any:
    """Apply ``quantizer`` to ``network``, record it on the network (the quantizer contract's
    :func:`~yoloqat.core.contracts.quantizer.attach`) and return the network.

    When some convs stay float without being asked to (``skip_layers``), a warning says how
    many of how many convs were quantized and names the float ones.
    """
    from yoloqat.core import events
    from yoloqat.core.contracts.quantizer import attach

    network = quantizer.apply(network)
    attach(network, quantizer)
    summary = quantizer.summary(network)
    if summary.unsupported:
        shown = ", ".join(summary.unsupported[:6])
        more = f" and {len(summary.unsupported) - 6} more" if len(summary.unsupported) > 6 else ""
        events.warn(
            f"{name} quantized {summary.quantized_convs}/{summary.total_convs} convs; "
            f"left float (no pattern it knows): {shown}{more}"
        )
    return network


def loss_inputs(detector: Any) -> dict[str, Any]:
    """What the pipeline offers a loss factory: the head's ``num_classes``, ``strides`` and
    its ``loss_params`` (e.g. anchors)."""
    head = detector.head
    return {
        "num_classes": detector.num_classes,
        "strides": list(detector.strides),
        **dict(getattr(head, "loss_params", None) or {}),
    }


def build_loss(
    cfg: Config | Mapping[str, Any], detector: Any, registry: ComponentRegistry | None = None
) -> Any:
    """The loss cell for ``detector``: the head's :func:`loss_inputs` go to a factory that
    declares them (and whose block does not set them). A loss that does not accept the
    head's ``output_format`` is a PluginError naming both components (exit 4)."""
    reg = registry_of(registry)
    cfg = resolve_family(cfg, reg)
    name, params = _block(cfg, "loss", registry)
    comp = reg.get("loss", name)
    loss = reg.create("loss", name, **injected(comp, params, loss_inputs(detector)))
    check_pair(cfg, detector, loss, reg)
    return loss


def check_pair(
    cfg: Config | Mapping[str, Any],
    detector: Any,
    loss: Any,
    registry: ComponentRegistry | None = None,
) -> None:
    """PluginError (exit 4) unless ``loss`` trains the output format of ``detector``'s head."""
    from yoloqat.core.errors import PluginError

    fmt = detector.output_format
    accepts = tuple(loss.accepts)
    if fmt in accepts:
        return
    reg = registry_of(registry)
    hname, _ = _block(cfg, "model.head", registry)
    lname, _ = _block(cfg, "loss", registry)
    hplugin, lplugin = reg.get("head", hname).plugin, reg.get("loss", lname).plugin
    raise PluginError(
        f"the loss '{lname}' (plugin '{lplugin}') cannot train the head '{hname}' (plugin "
        f"'{hplugin}'): the head's outputs are '{fmt}', the loss accepts "
        f"{', '.join(repr(a) for a in accepts)}",
        hint="pick the loss of the head's family (`yoloqat list family` shows which head "
        "goes with which loss), or select a whole family with `family: NAME`",
    )


def build_scheduler(
    cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None
) -> Any:
    name, params = _block(cfg, "scheduler", registry)
    return registry_of(registry).create("scheduler", name, **params)


def build_dataset(
    cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None
) -> Any:
    """The dataset of ``cfg['dataset']``, checked against the dataset contract by the
    registry: a :class:`~yoloqat.core.contracts.dataset.CheckedDataset`, so a plugin
    missing a member fails with a PluginError naming it (its sources when first used)."""
    name, params = _block(cfg, "dataset", registry)
    return registry_of(registry).create("dataset", name, **params)


def describe(
    cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None
) -> dict[str, Any]:
    """Build what ``cfg`` trains, without data (CPU, PYNATIVE: nothing compiled): the
    network, its quantizer if any, and the loss, each checked against its contract and the
    head/loss pair against each other, exactly as ``train`` builds them. Returns a summary:
    family, output format, strides, input multiple, parameter counts."""
    import mindspore as ms
    import numpy as np

    from yoloqat.core.device import init_device

    reg = registry_of(registry)
    cfg = resolve_family(cfg, reg)  # a plain dict
    init_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    network = build_model(cfg, reg)
    params = sum(int(np.prod(p.shape)) for p in network.trainable_params())
    backbone = sum(int(np.prod(p.shape)) for p in network.backbone.trainable_params())
    quantizer = build_quantizer(cfg, reg)
    if quantizer is not None:
        network = quantize(network, quantizer, str(get_dotted(cfg, "quantizer.name")))
    loss = build_loss(cfg, network, reg)
    family = cfg.get("family")
    return {
        "family": family.get("name") if isinstance(family, Mapping) else family,
        "output_format": network.output_format,
        "strides": list(network.strides),
        "backbone_strides": list(network.backbone.strides),
        "in_indices": list(network.in_indices),
        "input_multiple": network.input_multiple,
        "num_classes": network.num_classes,
        "parameters": params,
        "backbone_parameters": backbone,
        "quantized": quantizer is not None,
        "targets": "host builder" if callable(getattr(loss, "build_targets", None)) else "in loss",
    }
