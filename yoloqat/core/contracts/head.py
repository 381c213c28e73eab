"""The head contract: what a ``yoloqat_heads()`` factory returns.

A head (neck + detection layers) is a ``mindspore.nn.Cell`` that reads some of the
backbone's feature maps and returns raw per-level prediction tensors, one per output stride,
in every mode (training and eval). Everything about what those tensors mean belongs to the
head's family, not to the core:

- its **priors** (anchors, grid points), computed for the static input size;
- its **decode**: one float cell (``decode``) that eval, predict, training-time validation,
  export and every runtime use to turn the raw outputs into boxes and scores;
- its **training targets**: a loss that accepts its ``output_format`` (see
  :mod:`yoloqat.core.contracts.loss`), with the values the loss needs published in
  ``loss_params``.

Its factory may declare ``in_channels`` and ``in_strides`` (the backbone's ``out_channels``
and ``strides``, all of them) and ``num_classes`` (``model.num_classes``); values are
injected only into factories that declare them and whose config block does not set them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Members :func:`yoloqat.core.contracts.check_component` checks on a head.
MEMBERS: tuple[str, ...] = (
    "num_classes",
    "strides",
    "output_format",
    "decode",
    "in_indices",
    "loss_params",
    "construct",
)
#: Members a head may leave out (the default is said in the Protocol).
OPTIONAL: tuple[str, ...] = ("in_indices", "loss_params")


@runtime_checkable
class Head(Protocol):
    """What a head factory returns: an ``nn.Cell`` with its classes, strides and decode."""

    #: Number of object classes ``C`` (the decode's scores have ``C`` columns).
    num_classes: int

    #: Stride of each raw output relative to the input, one per output, in the order
    #: ``construct`` returns them (e.g. ``(32, 16)`` for YOLOv3-tiny); any count >= 1.
    strides: Sequence[int]

    #: Name of what the raw outputs hold (e.g. ``"yolo_anchors"``, ``"dfl_ltrb"``): a loss
    #: lists the formats it can train in its ``accepts``; a head and a loss that do not
    #: match are a build-time PluginError naming both.
    output_format: str

    #: The family's float decode, an ``nn.Cell`` without parameters (it is part of every
    #: exported graph and is never quantized): ``decode(outputs, input_h, input_w) ->
    #: (boxes, scores)`` with ``outputs`` the tuple ``construct`` returned, ``input_h``
    #: and ``input_w`` the network input size (ints, or scalar tensors in a dynamic-shape
    #: graph); ``boxes`` float32 ``[N, M, 4]`` holding ``(cx, cy, w, h)`` normalised to
    #: [0, 1] of the input and ``scores`` float32 ``[N, M, C]`` in [0, 1] (per-class
    #: confidences: a detection's score is its class's column). ``M`` is the number of
    #: candidate boxes (e.g. grid cells x anchors, summed over the outputs).
    decode: Any

    #: Optional: indices into the backbone's maps that ``construct`` reads, in the order of
    #: its parameters. Default: all of them.
    in_indices: Sequence[int]

    #: Optional: values the pipeline passes to the loss factory, for the parameters that
    #: factory declares and its config block does not set (e.g. the family's priors or
    #: box-bin count); ``num_classes`` and ``strides`` are always offered.
    loss_params: Mapping[str, Any]

    def construct(self, *features: Any) -> tuple[Any, ...]:
        """The backbone maps named by ``in_indices`` -> a tuple of raw outputs, output ``i``
        being ``[N, K_i, H / strides[i], W / strides[i]]`` (logits before any decoding;
        ``K_i`` is the family's business). Must compile in GRAPH_MODE."""
        ...


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def problems(obj: Any) -> list[str]:
    """What is wrong with the values of a head whose members are all present."""
    from mindspore import nn

    out = []
    n = obj.num_classes
    if not _is_int(n) or n < 1:
        out.append(f"'num_classes' must be a positive int, got {n!r}")
    try:
        strides = [s for s in obj.strides]
    except TypeError:
        strides = []
    if not strides or not all(_is_int(s) and s > 0 and s & (s - 1) == 0 for s in strides):
        out.append(
            f"'strides' must be one power of two per output (e.g. (32, 16)), got {obj.strides!r}"
        )
    fmt = obj.output_format
    if not isinstance(fmt, str) or not fmt:
        out.append(f"'output_format' must be a non-empty str, got {fmt!r}")
    if not isinstance(obj.decode, nn.Cell):
        out.append(f"'decode' must be a mindspore.nn.Cell, got {type(obj.decode).__name__}")
    elif list(obj.decode.get_parameters()):
        out.append("'decode' must have no parameters (it is the float post-processing)")
    indices = getattr(obj, "in_indices", None)
    if indices is not None:
        try:
            ok = len(indices) > 0 and all(_is_int(i) and i >= 0 for i in indices)
        except TypeError:
            ok = False
        if not ok:
            out.append(f"'in_indices' must be indices of backbone maps, got {indices!r}")
    params = getattr(obj, "loss_params", None)
    if params is not None and not isinstance(params, Mapping):
        out.append(f"'loss_params' must be a mapping, got {type(params).__name__}")
    return out
