"""The head contract: what a ``yoloqat_heads()`` factory returns.

A head (neck + detection heads) is a ``mindspore.nn.Cell`` reading the backbone's C3, C4,
C5 and returning three raw prediction maps. Its factory may declare ``in_channels`` (the
backbone's ``out_channels`` are passed in) and ``num_classes`` (``model.num_classes``);
values are injected only into factories that declare them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Members :func:`yoloqat.core.contracts.check_component` checks on a head.
MEMBERS: tuple[str, ...] = ("num_classes", "anchors", "anchor_masks", "construct")


@runtime_checkable
class Head(Protocol):
    """What a head factory returns: an ``nn.Cell`` with its classes and anchors."""

    #: Number of object classes ``C``; each output has ``A * (5 + C)`` channels.
    num_classes: int

    #: Anchor ``(w, h)`` pairs in network-input pixels, shape ``[K, 2]``, all > 0.
    anchors: Sequence[Sequence[float]]

    #: Anchor indices used by the stride-32, stride-16 and stride-8 outputs (3 groups of
    #: equal size ``A``); the loss and the decoder read them.
    anchor_masks: Sequence[Sequence[int]]

    def construct(self, c3: Any, c4: Any, c5: Any) -> tuple[Any, Any, Any]:
        """``(C3, C4, C5)`` -> raw maps ``(out_32, out_16, out_8)``, each ``[N, A * (5 +
        C), H / s, W / s]`` with, per anchor, ``tx, ty, tw, th, objectness, classes``
        (logits, not yet decoded). Must compile in GRAPH_MODE."""
        ...


def problems(obj: Any) -> list[str]:
    """What is wrong with the values of a head whose members are all present."""
    out = []
    n = obj.num_classes
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        out.append(f"'num_classes' must be a positive int, got {n!r}")
    try:
        anchors = np.asarray(obj.anchors, dtype=np.float64)
        ok = anchors.ndim == 2 and anchors.shape[1] == 2 and len(anchors) > 0
        ok = ok and bool(np.all(anchors > 0))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        out.append(f"'anchors' must be [K, 2] positive (w, h) pairs, got {obj.anchors!r}")
        return out
    try:
        masks = [[int(i) for i in m] for m in obj.anchor_masks]
    except (TypeError, ValueError):
        masks = []
    if (
        len(masks) != 3
        or len({len(m) for m in masks}) != 1
        or not masks[0]
        or not all(0 <= i < len(anchors) for m in masks for i in m)
    ):
        out.append(
            "'anchor_masks' must be 3 equal-size groups of anchor indices "
            f"(stride 32, 16, 8) into {len(anchors)} anchors, got {obj.anchor_masks!r}"
        )
    return out
