"""YOLO anchors: the seed's defaults and the checks shared by the family's head and loss.

Pure NumPy (imported by the plugin's manifest, so it stays cheap).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from yoloqat.core.errors import ConfigError

#: The 9 YOLOv3 anchors (w, h) in network-input pixels (docs/seed.md §1.4).
ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (59, 119),
    (116, 90),
    (156, 198),
    (373, 326),
)
#: Anchor indices of the YOLOv3 outputs in order stride 32, 16, 8.
ANCHOR_MASKS: tuple[tuple[int, ...], ...] = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
#: Darknet's yolov3-tiny.cfg anchors and masks (outputs at strides 32, 16).
TINY_ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 14),
    (23, 27),
    (37, 58),
    (81, 82),
    (135, 169),
    (344, 319),
)
TINY_ANCHOR_MASKS: tuple[tuple[int, ...], ...] = ((3, 4, 5), (0, 1, 2))


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _iterable(value: object) -> Iterable[Any]:
    """``value`` itself if it is iterable; else a TypeError (the callers turn it into a
    ConfigError naming the parameter)."""
    if not isinstance(value, Iterable):
        raise TypeError(f"{value!r} is not iterable")
    return value


def check_anchors(anchors: object, where: str = "anchors") -> np.ndarray:
    """Return ``anchors`` as a float32 [K, 2] array or raise a ConfigError naming ``where``."""
    expected = "expected a list of [w, h] pairs of positive pixel sizes, e.g. [[10, 13], ...]"
    try:
        rows = [list(pair) for pair in _iterable(anchors)]
    except TypeError:
        raise ConfigError(f"{where}={anchors!r} is not valid; {expected}") from None
    if not rows or any(len(r) != 2 or not all(_is_number(v) for v in r) for r in rows):
        raise ConfigError(f"{where}={anchors!r} is not valid; {expected}")
    arr = np.asarray(rows, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ConfigError(f"{where}={anchors!r} is not valid; {expected}")
    return arr.astype(np.float32)


def check_anchor_masks(
    anchor_masks: object,
    num_anchors: int,
    levels: int | None = None,
    where: str = "anchor_masks",
    *,
    partial: bool = False,
) -> tuple[tuple[int, ...], ...]:
    """Validate the anchor-index groups, one per output (``levels`` of them when given);
    together they must use each anchor exactly once, or with ``partial`` (Darknet's masks,
    e.g. YOLOv4-tiny's [[3, 4, 5], [1, 2, 3]]) any anchors, each at most once per output."""
    count = f"{levels} lists" if levels else "one list per output"
    expected = (
        f"expected {count} of anchor indices that together use each of "
        f"0..{num_anchors - 1} exactly once, e.g. [[6, 7, 8], [3, 4, 5], [0, 1, 2]]"
    )
    if partial:
        expected = (
            f"expected {count} of distinct anchor indices in 0..{num_anchors - 1}, "
            "e.g. [[3, 4, 5], [1, 2, 3]]"
        )
    try:
        masks = tuple(tuple(m) for m in _iterable(anchor_masks))
    except TypeError:
        raise ConfigError(f"{where}={anchor_masks!r} is not valid; {expected}") from None
    flat = [i for m in masks for i in m]
    if (
        not masks
        or (levels is not None and len(masks) != levels)
        or any(len(m) == 0 for m in masks)
        or not all(_is_int(i) for i in flat)
        or (not partial and sorted(int(i) for i in flat) != list(range(num_anchors)))
        or (
            partial
            and any(len(set(m)) != len(m) or not 0 <= min(m) <= max(m) < num_anchors for m in masks)
        )
    ):
        raise ConfigError(f"{where}={anchor_masks!r} is not valid; {expected}")
    return tuple(tuple(int(i) for i in m) for m in masks)


def check_scale_x_y(scale_x_y: object, levels: int, where: str = "loss") -> tuple[float, ...]:
    """One ``scale_x_y`` in [1, 4] per output (None: 1.0 each)."""
    if scale_x_y is None:
        return (1.0,) * levels
    try:
        values = tuple(float(v) for v in _iterable(scale_x_y))
    except (TypeError, ValueError):
        values = ()
    if len(values) != levels or not all(1.0 <= v <= 4.0 for v in values):
        raise ConfigError(
            f"{where}.scale_x_y={scale_x_y!r} is not valid; expected one number in [1, 4] per "
            f"output ({levels}), e.g. [1.05, 1.05]"
        )
    return values
