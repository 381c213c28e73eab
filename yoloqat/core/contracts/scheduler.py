"""The scheduler contract: what a ``yoloqat_schedulers()`` factory returns.

A scheduler is a plain Python object (no MindSpore needed) that gives the learning rate of
every optimizer step up front; the trainer hands the array to the optimizer (scaled by the
loss-scale semantics) and logs it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Members :func:`yoloqat.core.contracts.check_component` checks on a scheduler.
MEMBERS: tuple[str, ...] = ("per_step",)


@runtime_checkable
class Scheduler(Protocol):
    """What a scheduler factory returns."""

    def per_step(self, steps_per_epoch: int, max_epoch: int) -> np.ndarray:
        """The learning rate of every step: float32 ``[steps_per_epoch * max_epoch]``,
        finite and ``>= 0`` (step ``i`` of epoch ``e`` at ``e * steps_per_epoch + i``).
        Raise a ConfigError naming the value when an argument is not a positive int."""
        ...


def problems(obj: Any) -> list[str]:
    """Nothing beyond the members: ``per_step`` is checked where the trainer calls it."""
    return []
