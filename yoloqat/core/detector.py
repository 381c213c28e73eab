"""The detection network: a backbone and a head, with the head family's own decode.

``Detector(backbone, head)`` knows no family: no anchors, no level count, no strides of its
own. The backbone returns feature maps (:class:`~yoloqat.core.contracts.Backbone`), the head
reads those named by its ``in_indices`` and returns raw per-level outputs
(:class:`~yoloqat.core.contracts.Head`), and in eval mode the head's ``decode`` turns them
into ``(boxes, scores)``.
"""

from __future__ import annotations

from typing import Any

from mindspore import nn

from yoloqat.core.defaults import INPUT_MULTIPLE
from yoloqat.core.errors import ConfigError, PluginError


def check_input_shape(height: int, width: int, multiple: int = INPUT_MULTIPLE) -> None:
    """Raise a ConfigError unless ``height`` and ``width`` are positive multiples of
    ``multiple`` (the network's largest stride)."""
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value <= 0 or int(value) % multiple:
            raise ConfigError(
                f"input {name} {value} is not valid; expected a positive multiple of "
                f"{multiple} (e.g. {10 * multiple}, {13 * multiple})"
            )


def _where(component: Any) -> str:
    cls = type(component)
    return f"{cls.__module__}.{cls.__qualname__}"


def _check_arity(head: Any, count: int) -> None:
    """PluginError unless ``head.construct`` takes ``count`` feature maps."""
    import inspect

    try:
        inspect.signature(head.construct).bind(*([None] * count))
    except TypeError:
        raise PluginError(
            f"the head {_where(head)} reads {count} backbone map(s) (in_indices) but its "
            f"construct{inspect.signature(head.construct)} does not take {count} "
            "positional argument(s)",
            hint="set in_indices to the maps construct reads (Head contract, docs/plugins.md)",
        ) from None
    except ValueError:  # no signature to check
        pass


class Detector(nn.Cell):
    """A detector: image ``[N, C, H, W]`` -> the head's outputs.

    - Training mode (after ``set_train(True)``): the tuple of the head's raw outputs (what
      the loss receives).
    - Eval mode: ``(boxes, scores)`` from the head's ``decode``: boxes ``[N, M, 4]``
      ``(cx, cy, w, h)`` normalised to the input, scores ``[N, M, C]`` in [0, 1].

    ``H`` and ``W`` must be multiples of :attr:`input_multiple` (the largest stride of the
    backbone's maps and the head's outputs).

    Attributes: ``backbone``, ``head`` (parameter names start with ``backbone.`` and
    ``head.``), ``num_classes``, ``strides`` (the head's output strides),
    ``output_format``, ``in_indices`` (the backbone maps the head reads) and
    ``input_multiple``.
    """

    def __init__(self, backbone: nn.Cell, head: nn.Cell) -> None:
        super().__init__()
        levels = len(tuple(backbone.out_channels))
        indices = getattr(head, "in_indices", None)
        indices = tuple(range(levels)) if indices is None else tuple(int(i) for i in indices)
        bad = [i for i in indices if not 0 <= i < levels]
        if bad:
            raise PluginError(
                f"the head {_where(head)} reads backbone map {bad[0]} (in_indices "
                f"{list(indices)}) but the backbone {_where(backbone)} returns {levels} map(s)",
                hint="give the head a backbone with enough feature maps, or other in_indices",
            )
        _check_arity(head, len(indices))
        self.backbone = backbone
        self.head = head
        self.num_classes = int(head.num_classes)
        self.strides = tuple(int(s) for s in head.strides)
        self.output_format = str(head.output_format)
        self.in_indices = indices
        self.input_multiple = max(max(int(s) for s in backbone.strides), *self.strides)

    def check_input_shape(self, height: int, width: int) -> None:
        """Raise a ConfigError unless both sides are multiples of :attr:`input_multiple`."""
        check_input_shape(height, width, self.input_multiple)

    def __call__(self, *args, **kwargs):
        # A top-level call checks the image size in Python and gives a clear ConfigError;
        # inside a compiled graph, ``construct`` raises a ValueError for the same case.
        shape = getattr(args[0], "shape", None) if args else None
        if shape is not None and len(shape) == 4:
            self.check_input_shape(shape[2], shape[3])
        return super().__call__(*args, **kwargs)

    def construct(self, x):
        h = x.shape[2]
        w = x.shape[3]
        if h % self.input_multiple != 0 or w % self.input_multiple != 0:
            raise ValueError(
                f"Detector input {h}x{w}: sides must be multiples of {self.input_multiple}"
            )
        feats = self.backbone(x)
        selected: tuple = ()
        for i in self.in_indices:
            selected = selected + (feats[i],)  # noqa: RUF005 (GRAPH_MODE's parser)
        outs = self.head(*selected)
        if self.training:
            return outs
        return self.head.decode(outs, h, w)
