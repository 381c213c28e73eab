"""Anchor-free YOLOv8 outputs ("dfl_ltrb"), shared by the head's decode and the loss.

A raw output of stride ``s`` is ``[N, 4 * R + C, H, W]``: per grid cell, the logits of a
distribution over ``R`` (``reg_max``) bins for each of the distances left, top, right,
bottom from the cell centre to the box sides, in grid units, then ``C`` class logits. The
distance is the distribution's expectation, ``sum_r softmax(logits)_r * r`` (DFL's
integral), computed in float: a softmax and a weighted sum with ``arange(R)``, never a
conv, so no quantizer touches it.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


def flatten_levels(outputs, num_levels: int):
    """The raw outputs ``[N, K, H_l, W_l]`` as one ``[N, K, A]`` tensor, ``A = sum H_l W_l``
    (level by level, each in row-major cell order)."""
    flat: tuple = ()
    for i in range(num_levels):
        x = outputs[i]
        n, k, h, w = x.shape
        flat = flat + (ops.reshape(x, (n, k, h * w)),)  # noqa: RUF005 (GRAPH_MODE's parser)
    return ops.concat(flat, 2)


def level_grid(h: int, w: int):
    """Cell centres ``(x + 0.5, y + 0.5)`` of an ``h x w`` grid in grid units, ``[2, h * w]``
    in row-major cell order.

    Built without any reshape to a leading 1: an ONNX export with a dynamic batch turns
    a Reshape target whose first dimension is the traced batch (1) into "copy the input's
    first dimension" (``make_batch_dynamic``), which must only happen to batch tensors.
    """
    gx = ops.broadcast_to(ops.arange(w).astype(ms.float32) + 0.5, (h, w))
    gy = ops.broadcast_to(ops.arange(h).astype(ms.float32) + 0.5, (w, h))
    grid = ops.concat((gx, ops.transpose(gy, (1, 0))), 0)  # [2h, w]: x rows, then y rows
    return ops.reshape(grid, (2, h * w))


def anchor_points(outputs, strides):
    """``(points [A, 2], stride [A, 1])``: the cell centres of every output in grid units
    and each one's stride (constants of the static shapes)."""
    points: tuple = ()
    steps: tuple = ()
    for i in range(len(strides)):
        h, w = outputs[i].shape[2], outputs[i].shape[3]
        points = points + (ops.transpose(level_grid(h, w), (1, 0)),)  # noqa: RUF005
        steps = steps + (ops.ones((h * w, 1), ms.float32) * strides[i],)  # noqa: RUF005
    return ops.concat(points, 0), ops.concat(steps, 0)


def expected_distance(logits, bins, axis: int):
    """``sum_r softmax(logits)_r * bins_r`` along ``axis`` (the DFL integral)."""
    return ops.reduce_sum(ops.softmax(logits, axis) * bins, axis)


class DflDecode(nn.Cell):
    """The family's float decode (the head's ``decode`` member).

    ``construct(outputs, input_h, input_w) -> (boxes [N, M, 4], scores [N, M, C])`` with
    ``M = sum H_l W_l`` over the outputs in their order; boxes ``(cx, cy, w, h)``
    normalised to the input (the grid units divided by the grid size, which is the input
    size divided by the stride, so neither is needed), scores ``sigmoid`` of the class
    logits. No parameters: grid points come from the static shapes and are constants.
    """

    def __init__(self, reg_max: int, num_levels: int) -> None:
        super().__init__()
        self.reg_max = int(reg_max)
        self.num_levels = int(num_levels)

    def construct(self, outputs, input_h, input_w):
        r = self.reg_max
        bins = ops.reshape(ops.arange(r).astype(ms.float32), (r, 1))  # no leading 1s (above)
        boxes: tuple = ()
        scores: tuple = ()
        for i in range(self.num_levels):
            x = outputs[i]
            n, k, h, w = x.shape
            x = ops.reshape(x, (n, k, h * w))
            dist = expected_distance(ops.reshape(x[:, : 4 * r], (n, 4, r, h * w)), bins, 2)
            grid = level_grid(h, w)  # [2, hw], broadcast over the batch
            lt = dist[:, 0:2]
            rb = dist[:, 2:4]
            size = ops.reshape(ops.cast(ops.tuple_to_array((w, h)), ms.float32), (2, 1))
            centre = (grid + (rb - lt) * 0.5) / size
            box = ops.concat((centre, (lt + rb) / size), 1)
            boxes = boxes + (box,)  # noqa: RUF005
            scores = scores + (ops.sigmoid(x[:, 4 * r :]),)  # noqa: RUF005
        boxes = ops.transpose(ops.concat(boxes, 2), (0, 2, 1))
        scores = ops.transpose(ops.concat(scores, 2), (0, 2, 1))
        return boxes, scores
