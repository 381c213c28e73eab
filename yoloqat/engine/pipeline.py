"""Build components from a config: names resolved and parameters checked before building."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yoloqat.core.config import check_config, component_blocks, get_dotted
from yoloqat.core.errors import ConfigError


def registry_of(registry: Any = None) -> Any:
    """``registry``, or the process-wide default registry when it is None."""
    if registry is not None:
        return registry
    from yoloqat.registry import default_registry

    return default_registry()


def _block(cfg: Mapping[str, Any], dotted: str) -> tuple[str, dict[str, Any]]:
    for path, _kind, name, params in component_blocks(cfg):
        if path == dotted:
            return name, params
    raise ConfigError(f"the config has no '{dotted}' block (a mapping with a 'name')")


def validate(cfg: Mapping[str, Any], registry: Any = None) -> None:
    """Check every component of ``cfg`` (names and parameters) without building anything."""
    check_config(cfg, registry_of(registry))


def num_classes_of(cfg: Mapping[str, Any]) -> int:
    value = get_dotted(cfg, "model.num_classes", 80)
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"model.num_classes={value!r} must be a positive integer")
    return value


def injected(comp: Any, params: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` plus those of ``values`` that ``comp``'s factory declares and ``params``
    does not set: the pipeline's values go only to factories that ask for them."""
    extra = {k: v for k, v in values.items() if k in comp.parameters and k not in params}
    return {**params, **extra}


def build_model(cfg: Mapping[str, Any], registry: Any = None) -> Any:
    """The float :class:`~yoloqat.core.detector.Detector` described by ``cfg['model']``.

    The head factory gets ``in_channels`` (the backbone's ``out_channels``) and
    ``num_classes`` (``model.num_classes``) when it declares them. Both components are
    checked against their contracts when built (a PluginError naming the member).
    """
    from yoloqat.core.detector import Detector

    reg = registry_of(registry)
    bname, bparams = _block(cfg, "model.backbone")
    hname, hparams = _block(cfg, "model.head")
    backbone = reg.create("backbone", bname, **bparams)
    provided = {"in_channels": tuple(backbone.out_channels), "num_classes": num_classes_of(cfg)}
    head = reg.create("head", hname, **injected(reg.get("head", hname), hparams, provided))
    return Detector(backbone, head)


def build_quantizer(cfg: Mapping[str, Any], registry: Any = None) -> Any | None:
    """The quantizer object, or None for ``quantizer: {name: none}`` (or no block)."""
    if get_dotted(cfg, "quantizer") is None:
        return None
    name, params = _block(cfg, "quantizer")
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


def build_loss(cfg: Mapping[str, Any], detector: Any, registry: Any = None) -> Any:
    """The loss cell; ``num_classes``, ``anchors`` and ``anchor_masks`` come from the model
    (for a factory that declares them and whose block does not set them)."""
    name, params = _block(cfg, "loss")
    reg = registry_of(registry)
    provided = {
        "num_classes": detector.num_classes,
        "anchors": [list(map(float, a)) for a in detector.anchors],
        "anchor_masks": [list(m) for m in detector.anchor_masks],
    }
    return reg.create("loss", name, **injected(reg.get("loss", name), params, provided))


def build_scheduler(cfg: Mapping[str, Any], registry: Any = None) -> Any:
    name, params = _block(cfg, "scheduler")
    return registry_of(registry).create("scheduler", name, **params)


def build_dataset(cfg: Mapping[str, Any], registry: Any = None) -> Any:
    """The dataset of ``cfg['dataset']``, checked against the dataset contract by the
    registry: a :class:`~yoloqat.core.contracts.dataset.CheckedDataset`, so a plugin
    missing a member fails with a PluginError naming it (its sources when first used)."""
    name, params = _block(cfg, "dataset")
    return registry_of(registry).create("dataset", name, **params)
