"""Learning-rate scheduler plugins: the seed's cosine annealing and exponential step decay.

Manifest only; the schedules are pure NumPy (no MindSpore import).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .schedules import CosineAnnealing, Exponential


def cosine_annealing(
    *,
    lr: float = 0.012,
    T_max: int = 135,
    eta_min: float = 0.0,
    warmup_epochs: float = 0,
    warmup: str = "linear",
) -> CosineAnnealing:
    """Per-epoch staircase cosine annealing from lr to eta_min (the seed's schedule).

    ``lr(step) = eta_min + (lr - eta_min) * (1 + cos(pi * e / T_max)) / 2`` with
    ``e = step // steps_per_epoch`` counted from step 0.

    Parameters:
        lr: base (peak) learning rate; the seed's 8-device QAT recipe uses 0.012.
        T_max: cosine half-period in epochs; raised to ``max_epoch`` when training is longer.
        eta_min: final learning rate.
        warmup_epochs: epochs of warmup at the start (0: none).
        warmup: "linear" ramps ``lr * (i + 1) / warmup_steps`` (float recipe); "zero" holds
            the LR at 0 (the seed's QAT recipe). Afterwards the cosine resumes at its value
            for that epoch.
    """
    from .schedules import build_cosine_annealing

    return build_cosine_annealing(lr, T_max, eta_min, warmup_epochs, warmup)


def exponential(
    *,
    lr: float = 0.012,
    lr_epochs: Sequence[int] = (92, 105),
    lr_gamma: float = 0.1,
    warmup_epochs: float = 0,
    warmup: str = "linear",
) -> Exponential:
    """Step decay: multiply the LR by lr_gamma at each milestone epoch (the seed's default).

    Parameters:
        lr: base learning rate.
        lr_epochs: milestone epochs, increasing (quant default 92,105; float 220,250).
        lr_gamma: factor applied at each milestone.
        warmup_epochs: epochs of warmup at the start (0: none).
        warmup: "linear" (ramp from 0) or "zero" (LR held at 0 during warmup).
    """
    from .schedules import build_exponential

    return build_exponential(lr, lr_epochs, lr_gamma, warmup_epochs, warmup)


@hookimpl
def yoloqat_schedulers() -> dict:
    """Register the bundled LR schedulers."""
    return {"cosine_annealing": cosine_annealing, "exponential": exponential}
