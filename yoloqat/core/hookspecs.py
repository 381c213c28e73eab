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
}


@hookspec
def yoloqat_backbones() -> Factories:
    """Backbones: factories returning an ``nn.Cell`` mapping images to (C3, C4, C5) at
    strides 8, 16, 32, with ``out_channels`` (:class:`~yoloqat.core.contracts.Backbone`)."""


@hookspec
def yoloqat_heads() -> Factories:
    """Heads: factories (given ``in_channels`` and ``num_classes`` when they declare them)
    returning a neck+head ``nn.Cell`` with ``num_classes``, ``anchors`` and ``anchor_masks``
    (:class:`~yoloqat.core.contracts.Head`)."""


@hookspec
def yoloqat_quantizers() -> Factories:
    """Quantizers: factories returning an object with ``apply``, ``summary``,
    ``set_fake_quant``, ``eval_gates`` and ``export_plan``
    (:class:`~yoloqat.core.contracts.Quantizer`)."""


@hookspec
def yoloqat_losses() -> Factories:
    """Losses: factories (given ``num_classes``, ``anchors``, ``anchor_masks`` when they
    declare them) returning an ``nn.Cell`` (3 raw outputs, 3 y_true, 3 gt) -> scalar
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
    returning a loaded model that maps a float32 ``[B, 3, S, S]`` batch to the 3 decoded
    outputs, with ``path``, ``input_size``, ``batch``, ``metadata`` and ``name``
    (:class:`~yoloqat.core.contracts.Runtime`)."""


@hookspec
def yoloqat_callbacks() -> Factories:
    """Training callbacks: factories returning an object with any of ``on_run_start``,
    ``on_step``, ``on_epoch_end``, ``on_validation``, ``on_checkpoint`` and ``on_run_end``
    (:class:`~yoloqat.core.contracts.Callback`); ``train.callbacks`` names them."""
