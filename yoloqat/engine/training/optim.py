"""Momentum optimizer: the seed's parameter groups and loss-scale semantics (docs/seed.md §6.1)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from mindspore import Parameter, Tensor, nn

from yoloqat.core.errors import ConfigError

NO_DECAY_SUFFIXES = (".bias", ".gamma", ".beta")
LOSS_SCALE_SEMANTICS = ("standard", "seed")


def param_groups(params: Iterable[Parameter], weight_decay: float) -> list[dict]:
    """Split trainable parameters: biases and BN gamma/beta get no weight decay."""
    decay: list[Parameter] = []
    no_decay: list[Parameter] = []
    for p in params:
        (no_decay if p.name.endswith(NO_DECAY_SUFFIXES) else decay).append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": float(weight_decay)})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def effective_lr(lr_per_step: np.ndarray, loss_scale: float, semantics: str) -> np.ndarray:
    """The learning rates actually applied per step.

    ``standard``: the loss is scaled and the gradients unscaled, so ``lr`` is the step size.
    ``seed``: the seed divided gradients by ``loss_scale`` without scaling the loss (backward
    seed 1), so every update was ``lr / loss_scale * (g + wd * w)``; dividing the learning
    rate by ``loss_scale`` reproduces that exactly, momentum included.
    """
    if semantics not in LOSS_SCALE_SEMANTICS:
        raise ConfigError(
            f"train.loss_scale_semantics={semantics!r} is not valid; expected one of "
            f"{', '.join(LOSS_SCALE_SEMANTICS)}"
        )
    if loss_scale <= 0:
        raise ConfigError(f"train.loss_scale={loss_scale} must be > 0")
    lr = np.asarray(lr_per_step, dtype=np.float32)
    return lr / np.float32(loss_scale) if semantics == "seed" else lr


def build_optimizer(
    network: nn.Cell,
    lr_per_step: np.ndarray,
    *,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
) -> nn.Momentum:
    """nn.Momentum over the trainable parameters with a per-step learning-rate array."""
    if not 0 <= momentum < 1:
        raise ConfigError(f"train.momentum={momentum} must be in [0, 1)")
    if weight_decay < 0:
        raise ConfigError(f"train.weight_decay={weight_decay} must be >= 0")
    groups = param_groups(network.trainable_params(), weight_decay)
    return nn.Momentum(groups, Tensor(np.asarray(lr_per_step, np.float32)), momentum=momentum)
