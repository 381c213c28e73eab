"""The backbone contract: what a ``yoloqat_backbones()`` factory returns.

A backbone is a ``mindspore.nn.Cell`` mapping an image batch ``[N, C, H, W]`` (``H``, ``W``
multiples of 32) to the three feature maps the head reads: C3, C4, C5 at strides 8, 16 and
32. It may be built from any standard MindSpore cells and ops: ``int8_qat`` quantizes its
convolutions by pattern and the ONNX exporter traces it (no export code needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

#: Members :func:`yoloqat.core.contracts.check_component` checks on a backbone.
MEMBERS: tuple[str, ...] = ("out_channels", "construct")


@runtime_checkable
class Backbone(Protocol):
    """What a backbone factory returns: an ``nn.Cell`` with ``out_channels``."""

    #: Channels of (C3, C4, C5), three positive ints; the pipeline passes them to the
    #: head factory as ``in_channels`` (when the head declares that parameter).
    out_channels: Sequence[int]

    def construct(self, x: Any) -> tuple[Any, Any, Any]:
        """``x`` float32 ``[N, C, H, W]`` -> ``(C3, C4, C5)``: ``[N, out_channels[i],
        H / s, W / s]`` for ``s`` = 8, 16, 32. Must compile in GRAPH_MODE."""
        ...


def problems(obj: Any) -> list[str]:
    """What is wrong with the values of a backbone whose members are all present."""
    out = []
    channels = getattr(obj, "out_channels", None)
    try:
        values = list(channels)  # type: ignore[arg-type]
    except TypeError:
        values = []
    if len(values) != 3 or not all(_positive_int(c) for c in values):
        out.append(f"'out_channels' must be three positive ints (C3, C4, C5), got {channels!r}")
    return out


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
