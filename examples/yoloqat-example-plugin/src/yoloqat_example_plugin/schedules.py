"""The ``constant`` learning-rate schedule (pure NumPy)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from yoloqat.core.errors import ConfigError


def _number(name: str, value: object, *, positive: bool) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"scheduler.{name} of constant must be a number {bound}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Constant:
    """``lr`` at every step, after ``warmup_epochs`` of a linear ramp from 0."""

    base_lr: float
    warmup_epochs: float

    @classmethod
    def build(cls, *, lr: float, warmup_epochs: float) -> Constant:
        """Validate the config values (a ConfigError names the bad one) and build."""
        return cls(
            _number("lr", lr, positive=True),
            _number("warmup_epochs", warmup_epochs, positive=False),
        )

    def per_step(self, steps_per_epoch: int, max_epoch: int) -> np.ndarray:
        """The scheduler contract: one float32 learning rate per optimizer step."""
        for name, value in (("steps_per_epoch", steps_per_epoch), ("max_epoch", max_epoch)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        lr = np.full(steps_per_epoch * max_epoch, self.base_lr, dtype=np.float64)
        warm = min(int(self.warmup_epochs * steps_per_epoch), lr.size)
        if warm > 0:
            lr[:warm] = self.base_lr * np.arange(1, warm + 1) / warm
        return lr.astype(np.float32)
