"""pluggy hook specifications: one hook per component kind.

Each hook takes no arguments and returns ``{name: factory}``. A factory is a keyword-only
callable whose signature is its config schema and whose docstring's first line is the
summary ``yoloqat list`` shows. What each factory returns is a ``typing.Protocol`` in
:mod:`yoloqat.core.contracts`, checked by the registry on every build; ``docs/plugins.md``
documents every hook and member.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("yoloqat")
#: Marker of hook implementations (re-exported as ``yoloqat.hookimpl`` for plugin authors).
hookimpl = pluggy.HookimplMarker("yoloqat")

Factories = dict[str, Callable[..., object]]

#: Component kinds, in the order ``yoloqat list`` shows them, with their hook names.
KINDS: dict[str, str] = {
    "backbone": "yoloqat_backbones",
    "head": "yoloqat_heads",
    "quantizer": "yoloqat_quantizers",
    "loss": "yoloqat_losses",
    "scheduler": "yoloqat_schedulers",
    "dataset": "yoloqat_datasets",
    "runtime": "yoloqat_runtimes",
    "callback": "yoloqat_callbacks",
    "family": "yoloqat_families",
}


@hookspec
def yoloqat_backbones() -> Factories:
    """Backbones: factories returning an ``nn.Cell`` mapping images to a tuple of feature
    maps, with their ``out_channels`` and ``strides``
    (:class:`~yoloqat.core.contracts.Backbone`)."""


@hookspec
def yoloqat_heads() -> Factories:
    """Heads: factories (given ``in_channels``, ``in_strides`` and ``num_classes`` when they
    declare them) returning a neck+head ``nn.Cell`` with ``num_classes``, ``strides``,
    ``output_format`` and its float ``decode`` (:class:`~yoloqat.core.contracts.Head`)."""


@hookspec
def yoloqat_quantizers() -> Factories:
    """Quantizers: factories returning an object with ``apply``, ``summary``,
    ``set_fake_quant``, ``eval_gates`` and ``export_plan``
    (:class:`~yoloqat.core.contracts.Quantizer`)."""


@hookspec
def yoloqat_losses() -> Factories:
    """Losses: factories (given ``num_classes``, ``strides`` and the head's ``loss_params``
    when they declare them) returning an ``nn.Cell`` with ``accepts`` (the head output
    formats it trains): (raw outputs, padded ground truth, extras) -> scalar
    (:class:`~yoloqat.core.contracts.Loss`)."""


@hookspec
def yoloqat_schedulers() -> Factories:
    """LR schedulers: factories returning an object with ``per_step(steps_per_epoch,
    max_epoch)`` -> float32 learning rates (:class:`~yoloqat.core.contracts.Scheduler`)."""


@hookspec
def yoloqat_datasets() -> Factories:
    """Datasets: factories returning the class list and train/val sources
    (:class:`~yoloqat.core.contracts.Dataset`, :class:`~yoloqat.core.contracts.DataSource`)."""


@hookspec
def yoloqat_runtimes() -> Factories:
    """Runtimes: factories taking ``path`` (an exported model file) and ``threads``,
    returning a loaded model that maps a float32 ``[B, 3, S, S]`` batch to the decoded
    ``[boxes, scores]``, with ``path``, ``input_size``, ``batch``, ``metadata`` and ``name``
    (:class:`~yoloqat.core.contracts.Runtime`)."""


@hookspec
def yoloqat_callbacks() -> Factories:
    """Training callbacks: factories returning an object with any of ``on_run_start``,
    ``on_step``, ``on_epoch_end``, ``on_validation``, ``on_checkpoint`` and ``on_run_end``
    (:class:`~yoloqat.core.contracts.Callback`); ``train.callbacks`` names them."""


@hookspec
def yoloqat_families() -> Factories:
    """Detector families: factories returning a preset that names a backbone, head and
    loss with their defaults (:mod:`yoloqat.core.contracts.family`); a config selects one
    with ``family: NAME``."""
