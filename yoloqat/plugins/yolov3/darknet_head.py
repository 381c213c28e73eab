"""The head of a Darknet ``.cfg`` model: its ``[yolo]`` layers, without parameters.

The ``darknet_cfg`` backbone computes every layer, up to the raw YOLO outputs (the inputs
of the ``[yolo]`` layers), and returns them finest first; :class:`DarknetYoloHead` reads
them back in the ``.cfg``'s ``[yolo]`` order (its ``in_indices``) and owns what the
``[yolo]`` layers mean: anchors, masks, ``scale_x_y``, the family's decode and loss
parameters. Its raw outputs are the ``yolo`` format the family's loss trains.
"""

from __future__ import annotations

from collections.abc import Sequence

from mindspore import nn

from yoloqat.core.errors import ConfigError

from .anchors import check_anchor_masks, check_anchors, check_scale_x_y


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_indices(strides: Sequence[int], in_strides: Sequence[int]) -> tuple[int, ...]:
    """For each output stride (in order), the index of the backbone map with that stride:
    the k-th output of a stride reads the k-th map of that stride."""
    used: dict[int, int] = {}
    out = []
    for s in strides:
        matches = [i for i, t in enumerate(in_strides) if t == s]
        k = used.get(s, 0)
        if k >= len(matches):
            raise ConfigError(
                f"head strides={list(strides)!r} do not match the backbone's maps (strides "
                f"{list(in_strides)!r}): one map per [yolo] layer, at its stride"
            )
        used[s] = k + 1
        out.append(matches[k])
    if len(set(out)) != len(in_strides):
        raise ConfigError(
            f"head strides={list(strides)!r} leave backbone maps unread (strides "
            f"{list(in_strides)!r})"
        )
    return tuple(out)


class DarknetYoloHead(nn.Cell):
    """The ``[yolo]`` layers of a ``.cfg``: the backbone's maps in ``[yolo]`` order.

    See :func:`yoloqat.plugins.yolov3.darknet_yolo_head` for the parameters.
    """

    def __init__(
        self,
        *,
        in_channels: Sequence[int],
        in_strides: Sequence[int],
        num_classes: int,
        anchors: Sequence[Sequence[float]],
        anchor_masks: Sequence[Sequence[int]],
        strides: Sequence[int],
        scale_x_y: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        from .decode import YoloPredict

        if not _is_int(num_classes) or num_classes < 1:
            raise ConfigError(f"num_classes={num_classes!r} is not valid; expected an int >= 1")
        anchor_arr = check_anchors(anchors, where="head.anchors")
        try:
            levels = [int(s) for s in strides]
        except (TypeError, ValueError):
            levels = []
        masks = check_anchor_masks(
            anchor_masks, len(anchor_arr), levels=len(levels) or None, where="head.anchor_masks",
            partial=True,
        )  # fmt: skip
        if len(levels) != len(masks):
            raise ConfigError(
                f"head.strides={strides!r} is not valid; expected the stride of each [yolo] "
                f"layer ({len(masks)}), e.g. [32, 16]"
            )
        scales = check_scale_x_y(scale_x_y, len(masks), where="head")
        self.in_indices = _in_indices(levels, [int(s) for s in in_strides])
        self.num_classes = int(num_classes)
        self.anchors = anchor_arr
        self.anchor_masks = masks
        self.scale_x_y = scales
        self.output_format = "yolo"
        self.strides = tuple(levels)
        self.out_channels = tuple(len(m) * (5 + self.num_classes) for m in masks)
        for i, (index, want) in enumerate(zip(self.in_indices, self.out_channels)):
            if int(in_channels[index]) != want:
                raise ConfigError(
                    f"[yolo] layer {i} reads a map of {in_channels[index]} channels; its "
                    f"{len(masks[i])} anchors x (5 + {self.num_classes} classes) need {want}",
                    hint="model.num_classes must be the .cfg's classes (and the filters of the "
                    "conv before each [yolo] layer len(mask) * (5 + classes))",
                )
        self.loss_params = {
            "anchors": anchor_arr.tolist(),
            "anchor_masks": [list(m) for m in masks],
            "scale_x_y": list(scales),
        }
        self.decode = YoloPredict([anchor_arr[list(m)] for m in masks], scales)

    def conv_units(self) -> list[nn.Cell]:
        """No convs: the ``.cfg``'s convs, output convs included, are the backbone's."""
        return []

    def construct(self, *maps):
        return maps
