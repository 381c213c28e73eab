"""YOLO output decoding (docs/seed.md §2), shared by the family's head (inference) and loss.

Shapes use N = batch, H x W = the grid of one output, A = anchors of that output,
K = 5 + num_classes. Channels of a raw output are anchor-major: ``[N, A*K, H, W]`` is
reshaped to ``(N, A, K, H, W)`` and transposed to ``[N, H, W, A, K]``
(:func:`to_anchor_major`). The last axis holds ``(t_x, t_y, t_w, t_h, t_obj, t_cls...)``.

Decoded boxes are normalised to [0, 1] of the network input:

- ``bxy = (sigmoid(t_xy) + (c_x, c_y)) / (W, H)``
- ``bwh = exp(t_wh) * (a_w, a_h) / (W_in, H_in)`` with anchors in input pixels.

An output with Darknet's ``scale_x_y = s`` != 1 (YOLOv4) widens the centre's range to
``sigmoid(t_xy) * s - (s - 1) / 2`` (Darknet's ``x * s - 0.5 * (s - 1)``); with ``s = 1`` the
graph is the formula above, op for op.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mindspore import Tensor, nn, ops


def to_anchor_major(x, num_anchors: int):
    """Reshape a raw output ``[N, A*K, H, W]`` to ``[N, H, W, A, K]`` (anchor-major)."""
    n, c, h, w = x.shape
    x = ops.reshape(x, (n, num_anchors, c // num_anchors, h, w))
    return ops.transpose(x, (0, 3, 4, 1, 2))


def _divide_xy(xy, div_x, div_y):
    """``xy[..., 0] / div_x`` and ``xy[..., 1] / div_y`` (ints or scalar tensors)."""
    return ops.concat((xy[..., 0:1] / div_x, xy[..., 1:2] / div_y), -1)


def make_grid(grid_h: int, grid_w: int, dtype):
    """Cell offsets ``(c_x, c_y)`` of an ``grid_h x grid_w`` grid, shape ``[1, H, W, 1, 2]``."""
    gx = ops.arange(grid_w).astype(dtype).reshape((1, 1, grid_w, 1, 1))
    gy = ops.arange(grid_h).astype(dtype).reshape((1, grid_h, 1, 1, 1))
    gx = ops.broadcast_to(gx, (1, grid_h, grid_w, 1, 1))
    gy = ops.broadcast_to(gy, (1, grid_h, grid_w, 1, 1))
    return ops.concat((gx, gy), -1)


def decode_boxes(raw, grid, anchors, input_w, input_h, scale_xy: float = 1.0):
    """``(bxy, bwh)`` of ``raw`` ``[N, H, W, A, K]`` given its ``grid`` (:func:`make_grid`);
    ``scale_xy`` is the output's ``scale_x_y`` (a Python float: 1.0 adds no op)."""
    grid_h, grid_w = raw.shape[1], raw.shape[2]
    xy = ops.sigmoid(raw[..., 0:2])
    if scale_xy != 1.0:
        xy = xy * scale_xy - (scale_xy - 1.0) / 2.0
    bxy = _divide_xy(xy + grid, grid_w, grid_h)
    anchors_norm = _divide_xy(anchors.astype(raw.dtype), input_w, input_h)
    bwh = ops.exp(raw[..., 2:4]) * anchors_norm
    return bxy, bwh


class YoloDecode(nn.Cell):
    """Decode the boxes of one output (the loss's ignore mask).

    ``construct(raw, anchors, input_w, input_h) -> (grid, bxy, bwh)``: ``raw`` ``[N, H, W,
    A, K]``, ``anchors`` float ``[A, 2]`` pixels of the network input. Returns ``grid``
    ``[1, H, W, 1, 2]`` and ``bxy``, ``bwh`` ``[N, H, W, A, 2]`` normalised to the input.
    ``scale_xy``: the output's ``scale_x_y``.
    """

    def __init__(self, scale_xy: float = 1.0) -> None:
        super().__init__()
        self.scale_xy = float(scale_xy)

    def construct(self, raw, anchors, input_w, input_h):
        grid = make_grid(raw.shape[1], raw.shape[2], raw.dtype)
        bxy, bwh = decode_boxes(raw, grid, anchors, input_w, input_h, self.scale_xy)
        return grid, bxy, bwh


class YoloPredict(nn.Cell):
    """The family's decode (the head's ``decode`` member): raw outputs -> boxes, scores.

    ``construct(outputs, input_h, input_w) -> (boxes [N, M, 4], scores [N, M, C])`` with
    ``M = sum(H_l * W_l * A_l)`` over the outputs in their order, each output's candidates
    in ``(row, column, anchor)`` order; boxes ``(cx, cy, w, h)`` normalised to the input,
    scores ``sigmoid(t_obj) * sigmoid(t_cls)`` (independent per-class probabilities times
    the objectness, no softmax).

    Parameters: ``anchors``: one float ``[A_l, 2]`` array of input-pixel (w, h) per output;
    ``scale_xy``: Darknet's ``scale_x_y`` per output (default 1.0 for each).
    """

    def __init__(
        self, anchors: Sequence[np.ndarray], scale_xy: Sequence[float] | None = None
    ) -> None:
        super().__init__()
        self.num_anchors = tuple(len(a) for a in anchors)
        scales = [1.0] * len(anchors) if scale_xy is None else [float(s) for s in scale_xy]
        if len(scales) != len(anchors):
            raise ValueError(f"scale_xy has {len(scales)} values for {len(anchors)} outputs")
        self.scale_xy = tuple(scales)
        # Constant tensors (not Parameters): out of checkpoints and parameter counts.
        self.anchors = tuple(Tensor(np.asarray(a, np.float32).reshape(-1, 2)) for a in anchors)

    def construct(self, outputs, input_h, input_w):
        boxes: tuple = ()
        scores: tuple = ()
        for i in range(len(self.num_anchors)):
            raw = to_anchor_major(outputs[i], self.num_anchors[i])
            n, h, w, a, k = raw.shape
            # The grid is built here rather than taken from YoloDecode: discarding a returned
            # ``arange`` output makes GRAPH_MODE warn about eliminated side-effect nodes.
            grid = make_grid(h, w, raw.dtype)
            bxy, bwh = decode_boxes(raw, grid, self.anchors[i], input_w, input_h, self.scale_xy[i])
            prob = ops.sigmoid(raw[..., 4:])
            score = prob[..., 0:1] * prob[..., 1:]
            # tuple + tuple: GRAPH_MODE's parser does not take (*boxes, x) here
            boxes = boxes + (ops.reshape(ops.concat((bxy, bwh), -1), (n, h * w * a, 4)),)  # noqa: RUF005
            scores = scores + (ops.reshape(score, (n, h * w * a, k - 5)),)  # noqa: RUF005
        return ops.concat(boxes, 1), ops.concat(scores, 1)
