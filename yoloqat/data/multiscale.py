"""Multi-scale schedule of docs/seed.md §4.2: one square training size per batch, redrawn every
``resize_rate`` batches, a pure function of (seed, epoch, step) so every rank agrees."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from yoloqat.core.errors import ConfigError
from yoloqat.data import MULTI_SCALE


def check_shapes(shapes: Sequence[int]) -> tuple[int, ...]:
    """Validate training sizes: non-empty, positive multiples of 32."""
    out = tuple(int(s) for s in shapes)
    if not out or any(s <= 0 or s % 32 for s in out):
        raise ConfigError(f"training sizes must be positive multiples of 32, got {list(shapes)}")
    return out


def shape_for_step(
    step: int,
    *,
    epoch: int,
    seed: int = 1,
    shapes: Sequence[int] = MULTI_SCALE,
    resize_rate: int = 1,
    training_shape: int | None = None,
) -> int:
    """Training size of batch ``step`` of ``epoch``.

    ``training_shape`` fixes the size. Otherwise the size is drawn uniformly from ``shapes``
    with a generator keyed by (seed, epoch, step // resize_rate): the same on every rank and
    on a resumed run, different for another seed.
    """
    if training_shape:
        return int(training_shape)
    if resize_rate < 1:
        raise ConfigError(f"resize_rate must be >= 1, got {resize_rate}")
    block = int(step) // int(resize_rate)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), block])
    return int(shapes[int(rng.integers(len(shapes)))])


def shape_schedule(
    steps: int,
    *,
    epoch: int,
    seed: int = 1,
    shapes: Sequence[int] = MULTI_SCALE,
    resize_rate: int = 1,
    training_shape: int | None = None,
) -> np.ndarray:
    """Sizes of batches 0..steps-1 of ``epoch`` (see :func:`shape_for_step`)."""
    return np.array(
        [
            shape_for_step(
                s,
                epoch=epoch,
                seed=seed,
                shapes=shapes,
                resize_rate=resize_rate,
                training_shape=training_shape,
            )
            for s in range(steps)
        ],
        np.int64,
    )
