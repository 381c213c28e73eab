"""Per-step learning-rate schedules of the seed (docs/seed.md §6.2), in pure NumPy.

Each schedule is a small object: ``base_lr`` plus ``per_step(steps_per_epoch, max_epoch)``
returning one float32 learning rate per optimizer step. Warmup is either ``"linear"``
(``lr = base * (i + 1) / warmup_steps``, the float recipe) or ``"zero"`` (``lr = 0`` through the
warmup, the seed's QAT recipe); after the warmup the schedule resumes at its own value for that
step, not at the base LR.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from yoloqat.core.errors import ConfigError

WARMUPS = ("linear", "zero")


def _check_positive(name: str, value: float, scheduler: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"scheduler.{name} of {scheduler} must be a number > 0, got {value!r}")
    return float(value)


def _check_non_negative(name: str, value: float, scheduler: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigError(f"scheduler.{name} of {scheduler} must be a number >= 0, got {value!r}")
    return float(value)


def _check_warmup(warmup: str, scheduler: str) -> str:
    if warmup not in WARMUPS:
        raise ConfigError(
            f"scheduler.warmup of {scheduler} must be one of {', '.join(WARMUPS)}, got {warmup!r}"
        )
    return warmup


def _check_steps(steps_per_epoch: int, max_epoch: int) -> None:
    for name, value in (("steps_per_epoch", steps_per_epoch), ("max_epoch", max_epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


@dataclass(frozen=True)
class _Warmup:
    epochs: float
    kind: str

    def apply(self, lr: np.ndarray, base_lr: float, steps_per_epoch: int) -> np.ndarray:
        """Overwrite the first ``int(epochs * steps_per_epoch)`` steps of ``lr`` in place."""
        steps = min(int(self.epochs * steps_per_epoch), lr.size)
        if steps > 0:
            if self.kind == "zero":
                lr[:steps] = 0.0
            else:
                lr[:steps] = base_lr * np.arange(1, steps + 1, dtype=np.float64) / steps
        return lr


@dataclass(frozen=True)
class CosineAnnealing:
    """Per-epoch staircase cosine: ``eta_min + (base - eta_min) * (1 + cos(pi * e / T_max)) / 2``.

    ``e = floor(step / steps_per_epoch)`` counts from step 0 (warmup included); ``T_max`` is
    raised to ``max_epoch`` when training runs longer than ``T_max``.
    """

    base_lr: float
    T_max: int
    eta_min: float
    warmup_epochs: float
    warmup: str

    def per_step(self, steps_per_epoch: int, max_epoch: int) -> np.ndarray:
        """Learning rate of every step: float32 array of ``steps_per_epoch * max_epoch``."""
        _check_steps(steps_per_epoch, max_epoch)
        t_max = max_epoch if max_epoch > self.T_max else self.T_max
        epoch = np.arange(steps_per_epoch * max_epoch, dtype=np.int64) // steps_per_epoch
        cos = (1.0 + np.cos(math.pi * epoch / t_max)) / 2.0
        lr = self.eta_min + (self.base_lr - self.eta_min) * cos
        lr = _Warmup(self.warmup_epochs, self.warmup).apply(lr, self.base_lr, steps_per_epoch)
        return lr.astype(np.float32)


@dataclass(frozen=True)
class Exponential:
    """Step decay: the LR is multiplied by ``lr_gamma`` at each epoch listed in ``lr_epochs``.

    A milestone that falls inside the warmup has no effect (the seed only counts milestones
    reached after the warmup).
    """

    base_lr: float
    lr_epochs: tuple[int, ...]
    lr_gamma: float
    warmup_epochs: float
    warmup: str

    def per_step(self, steps_per_epoch: int, max_epoch: int) -> np.ndarray:
        """Learning rate of every step: float32 array of ``steps_per_epoch * max_epoch``."""
        _check_steps(steps_per_epoch, max_epoch)
        steps = np.arange(steps_per_epoch * max_epoch, dtype=np.int64)
        warmup_steps = int(self.warmup_epochs * steps_per_epoch)
        milestones = np.asarray(
            [m * steps_per_epoch for m in self.lr_epochs if m * steps_per_epoch >= warmup_steps],
            dtype=np.int64,
        )
        passed = (steps[:, None] >= milestones[None, :]).sum(axis=1)
        lr = self.base_lr * np.power(self.lr_gamma, passed, dtype=np.float64)
        lr = _Warmup(self.warmup_epochs, self.warmup).apply(lr, self.base_lr, steps_per_epoch)
        return lr.astype(np.float32)


def build_cosine_annealing(
    lr: float, T_max: int, eta_min: float, warmup_epochs: float, warmup: str
) -> CosineAnnealing:
    """Validate the parameters and build a :class:`CosineAnnealing`."""
    name = "cosine_annealing"
    base = _check_positive("lr", lr, name)
    if isinstance(T_max, bool) or not isinstance(T_max, (int, np.integer)) or T_max < 1:
        raise ConfigError(f"scheduler.T_max of {name} must be an integer >= 1, got {T_max!r}")
    eta = _check_non_negative("eta_min", eta_min, name)
    if eta > base:
        raise ConfigError(f"scheduler.eta_min of {name} must be <= lr ({base}), got {eta_min!r}")
    return CosineAnnealing(
        base_lr=base,
        T_max=int(T_max),
        eta_min=eta,
        warmup_epochs=_check_non_negative("warmup_epochs", warmup_epochs, name),
        warmup=_check_warmup(warmup, name),
    )


def build_exponential(
    lr: float, lr_epochs: Sequence[int] | str, lr_gamma: float, warmup_epochs: float, warmup: str
) -> Exponential:
    """Validate the parameters and build an :class:`Exponential`."""
    name = "exponential"
    base = _check_positive("lr", lr, name)
    if isinstance(lr_epochs, str):  # "92,105" as the seed's command line spells it
        try:
            lr_epochs = tuple(int(p) for p in lr_epochs.split(",") if p.strip())
        except ValueError:
            raise ConfigError(
                f"scheduler.lr_epochs of {name} must be a list of epochs like [92, 105], "
                f"got {lr_epochs!r}"
            ) from None
    try:
        epochs = tuple(lr_epochs)
    except TypeError:
        raise ConfigError(
            f"scheduler.lr_epochs of {name} must be a list of epochs, got {lr_epochs!r}"
        ) from None
    if any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1 for e in epochs):
        raise ConfigError(
            f"scheduler.lr_epochs of {name} must hold integers >= 1, got {list(epochs)!r}"
        )
    if list(epochs) != sorted(epochs):
        raise ConfigError(
            f"scheduler.lr_epochs of {name} must be in increasing order, got {list(epochs)!r}"
        )
    gamma = _check_positive("lr_gamma", lr_gamma, name)
    return Exponential(
        base_lr=base,
        lr_epochs=tuple(int(e) for e in epochs),
        lr_gamma=gamma,
        warmup_epochs=_check_non_negative("warmup_epochs", warmup_epochs, name),
        warmup=_check_warmup(warmup, name),
    )
