"""The backbone contract: what a ``yoloqat_backbones()`` factory returns.

A backbone is a ``mindspore.nn.Cell`` mapping an image batch ``[N, C, H, W]`` to a tuple of
feature maps (any number >= 1), finest first, and declaring each map's channels
(``out_channels``) and stride relative to the input (``strides``). The head reads the maps
it declares (:attr:`yoloqat.core.contracts.Head.in_indices`). It may be built from any
standard MindSpore cells and ops: ``int8_qat`` quantizes its convolutions by pattern and the
ONNX exporter traces it (no export code needed).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

#: Members :func:`yoloqat.core.contracts.check_component` checks on a backbone.
MEMBERS: tuple[str, ...] = ("out_channels", "strides", "construct")


@runtime_checkable
class Backbone(Protocol):
    """What a backbone factory returns: an ``nn.Cell`` with ``out_channels`` and ``strides``."""

    #: Channels of each returned feature map, one positive int per map; the pipeline passes
    #: them to the head factory as ``in_channels`` (when the head declares that parameter).
    out_channels: Sequence[int]

    #: Stride of each returned map relative to the input (e.g. ``(8, 16, 32)``): positive
    #: powers of two, non-decreasing, one per map; passed to the head factory as
    #: ``in_strides``. Input sides must be multiples of the largest.
    strides: Sequence[int]

    def construct(self, x: Any) -> tuple[Any, ...]:
        """``x`` float32 ``[N, C, H, W]`` -> a tuple of maps, map ``i`` being
        ``[N, out_channels[i], H / strides[i], W / strides[i]]``. Must compile in
        GRAPH_MODE."""
        ...


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _ints(values: object) -> list[Any]:
    try:
        return list(values) if isinstance(values, Iterable) else []
    except TypeError:
        return []


def problems(obj: Any) -> list[str]:
    """What is wrong with the values of a backbone whose members are all present."""
    out = []
    channels = _ints(obj.out_channels)
    strides = _ints(obj.strides)
    if not channels or not all(_positive_int(c) for c in channels):
        out.append(
            f"'out_channels' must be one positive int per feature map, got {obj.out_channels!r}"
        )
    if (
        not strides
        or not all(_positive_int(s) and s & (s - 1) == 0 for s in strides)
        or strides != sorted(strides)
    ):
        out.append(
            "'strides' must be one power of two per feature map, finest first "
            f"(e.g. (8, 16, 32)), got {obj.strides!r}"
        )
    elif channels and len(strides) != len(channels):
        out.append(
            f"'strides' has {len(strides)} entries but 'out_channels' has {len(channels)}: "
            "one of each per feature map"
        )
    return out
