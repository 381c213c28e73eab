"""pluggy hook specifications: one hook per component kind.

Each hook takes no arguments and returns ``{name: factory}``. A factory is a keyword-only
callable whose signature is its config schema and whose docstring's first line is the
summary ``yoloqat list`` shows.
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

hookspec = pluggy.HookspecMarker("yoloqat")

Factories = dict[str, Callable[..., object]]

#: Component kinds, in the order ``yoloqat list`` shows them, with their hook names.
KINDS: dict[str, str] = {
    "backbone": "yoloqat_backbones",
    "head": "yoloqat_heads",
    "quantizer": "yoloqat_quantizers",
    "loss": "yoloqat_losses",
    "scheduler": "yoloqat_schedulers",
    "dataset": "yoloqat_datasets",
}


@hookspec
def yoloqat_backbones() -> Factories:
    """Backbones: factories returning an ``nn.Cell`` mapping images to (C3, C4, C5) with
    an ``out_channels`` attribute."""


@hookspec
def yoloqat_heads() -> Factories:
    """Heads: factories taking ``in_channels`` (and ``num_classes``) returning a neck+head cell."""


@hookspec
def yoloqat_quantizers() -> Factories:
    """Quantizers: factories returning an object with ``apply(network) -> network``."""


@hookspec
def yoloqat_losses() -> Factories:
    """Losses: factories returning an ``nn.Cell`` (network outputs, targets) -> scalar."""


@hookspec
def yoloqat_schedulers() -> Factories:
    """LR schedulers: factories returning an object with ``per_step(steps_per_epoch,
    max_epoch)``."""


@hookspec
def yoloqat_datasets() -> Factories:
    """Datasets: factories returning a detection dataset (train/val sources, class names)."""
