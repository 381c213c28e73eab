"""The Darknet ``.cfg`` parts of the YOLO family: factories of the ``darknet_cfg`` backbone,
the ``darknet_yolo_head`` head and the ``darknet`` family preset (a cheap module: MindSpore
code is imported by the factories)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from yoloqat.core.errors import ConfigError

if TYPE_CHECKING:
    from .darknet_graph import DarknetGraph
    from .darknet_head import DarknetYoloHead


def darknet_cfg(*, cfg: str, bn_eps: float = 1e-6, bn_momentum: float = 0.9) -> DarknetGraph:
    """Any Darknet YOLO .cfg as a backbone: its layers up to the [yolo] inputs, finest first.

    Builds ``[convolutional]`` (batch_normalize, filters, size, stride, pad, padding,
    groups; activation linear, leaky, relu, mish, logistic), ``[maxpool]`` (size, stride,
    padding, Darknet's padding), ``[route]`` (layers, groups, group_id), ``[shortcut]``
    (from, activation) and ``[upsample]`` sections in order; a section or key it does not
    support is a ConfigError naming the line, section index, key and value. Pair it with
    ``darknet_yolo_head`` (the ``[yolo]`` layers); ``yoloqat import-darknet`` writes both
    blocks from a ``.cfg``.

    Parameters:
        cfg: the text of the ``.cfg`` file (stored in the config, so that a checkpoint
            rebuilds the network anywhere).
        bn_eps: BatchNorm epsilon; 1e-6 is Darknet's (its weights reproduce Darknet's
            outputs only with it).
        bn_momentum: BatchNorm momentum in MindSpore semantics
            (``running = m * running + (1 - m) * batch``).
    """
    if not isinstance(cfg, str) or "[" not in cfg:
        raise ConfigError(
            "model.backbone.cfg must be the text of a Darknet .cfg file",
            hint="yoloqat import-darknet X.weights --cfg X.cfg writes it into a checkpoint",
        )
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)):
        raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= m < 1")
    if not 0 <= bn_momentum < 1:
        raise ConfigError(f"bn_momentum={bn_momentum!r} is not valid; expected 0 <= m < 1")
    from .darknet_graph import build_graph

    return build_graph(cfg, bn_eps=bn_eps, bn_momentum=float(bn_momentum))


def darknet_yolo_head(
    *,
    in_channels: Sequence[int],
    in_strides: Sequence[int],
    num_classes: int = 80,
    anchors: Sequence[Sequence[float]],
    anchor_masks: Sequence[Sequence[int]],
    strides: Sequence[int],
    scale_x_y: Sequence[float] | None = None,
) -> DarknetYoloHead:
    """The [yolo] layers of a Darknet .cfg (for ``darknet_cfg``): no parameters, YOLO decode.

    Returns the backbone's raw outputs in the ``.cfg``'s ``[yolo]`` order; its decode is the
    family's (``scale_x_y`` included) and its loss ``yolov3_loss``.

    Parameters:
        in_channels: the backbone's map channels (injected).
        in_strides: the backbone's map strides (injected).
        num_classes: the ``.cfg``'s ``classes``.
        anchors: the ``[yolo]`` anchors (w, h) in input pixels.
        anchor_masks: each ``[yolo]`` layer's ``mask``, in file order (any anchors, e.g.
            YOLOv4-tiny's [[3, 4, 5], [1, 2, 3]]).
        strides: the stride of each ``[yolo]`` layer's input, in file order.
        scale_x_y: each ``[yolo]`` layer's ``scale_x_y`` (default 1).
    """
    from .darknet_head import DarknetYoloHead

    return DarknetYoloHead(
        in_channels=in_channels,
        in_strides=in_strides,
        num_classes=num_classes,
        anchors=anchors,
        anchor_masks=anchor_masks,
        strides=strides,
        scale_x_y=scale_x_y,
    )


def darknet(*, cfg: str, bn_eps: float = 1e-6) -> dict[str, Any]:
    """Any Darknet YOLO .cfg: its graph (darknet_cfg), [yolo] layers (darknet_yolo_head), YOLO loss.

    The preset reads the ``.cfg`` text (checking every section, see ``darknet_cfg``) and
    fills in the head's anchors, masks, strides and ``scale_x_y``, the loss's
    ``ignore_threshold`` (the first ``[yolo]`` layer's ``ignore_thresh``), Darknet's input
    (RGB/255: ``data.normalize: unit``; letterbox unless ``[net] letter_box=0``) and the
    ``[net]`` size as ``eval.testing_shape``. ``model.num_classes`` must be the ``.cfg``'s
    ``classes``. ``yoloqat import-darknet`` builds the same blocks from a file.

    Parameters:
        cfg: the text of the ``.cfg`` file (a YAML block string, ``cfg: |``).
        bn_eps: BatchNorm epsilon (1e-6: Darknet's).
    """
    if not isinstance(cfg, str) or "[" not in cfg:
        raise ConfigError("family.cfg must be the text of a Darknet .cfg file")
    from yoloqat.core.cfgfile import parse_cfg

    from .darknet_spec import build_spec

    spec = build_spec(parse_cfg(cfg, "family.cfg"))
    yolos = spec.yolos
    return {
        "backbone": {"name": "darknet_cfg", "cfg": cfg, "bn_eps": bn_eps},
        "head": {
            "name": "darknet_yolo_head",
            "anchors": [list(a) for a in yolos[0].params["anchors"]],
            "anchor_masks": [list(y.params["mask"]) for y in yolos],
            "strides": [int(y.stride) for y in yolos],
            "scale_x_y": [y.params["scale_x_y"] for y in yolos],
        },
        "loss": {"name": "yolov3_loss", "ignore_threshold": yolos[0].params["ignore_thresh"]},
        "data": {"normalize": "unit"},
        "eval": {
            "letterbox": spec.letterbox is not False,
            "testing_shape": spec.width,
        },
    }
