"""YOLO output decoding (spec §2), shared by the detector (inference) and the loss.

Shapes use N = batch, H x W = the grid of one output scale, A = anchors of that scale,
K = 5 + num_classes. Channels of a raw head map are anchor-major: ``[N, A*K, H, W]`` is
reshaped to ``(N, A, K, H, W)`` and transposed to ``[N, H, W, A, K]``
(:func:`to_anchor_major`). The last axis holds ``(t_x, t_y, t_w, t_h, t_obj, t_cls...)``.

Decoded boxes are normalised to [0, 1] of the network input:

- ``bxy = (sigmoid(t_xy) + (c_x, c_y)) / (W, H)``
- ``bwh = exp(t_wh) * (a_w, a_h) / (W_in, H_in)`` with anchors in input pixels.
"""

from __future__ import annotations

from mindspore import nn, ops


def to_anchor_major(x, num_anchors: int):
    """Reshape a raw head map ``[N, A*K, H, W]`` to ``[N, H, W, A, K]`` (anchor-major)."""
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


def decode_boxes(raw, grid, anchors, input_w, input_h):
    """``(bxy, bwh)`` of ``raw`` ``[N, H, W, A, K]`` given its ``grid`` (:func:`make_grid`)."""
    grid_h, grid_w = raw.shape[1], raw.shape[2]
    bxy = _divide_xy(ops.sigmoid(raw[..., 0:2]) + grid, grid_w, grid_h)
    anchors_norm = _divide_xy(anchors.astype(raw.dtype), input_w, input_h)
    bwh = ops.exp(raw[..., 2:4]) * anchors_norm
    return bxy, bwh


class YoloDecode(nn.Cell):
    """Decode the boxes of one output scale.

    ``construct(raw, anchors, input_w, input_h) -> (grid, bxy, bwh)``

    - ``raw``: ``[N, H, W, A, K]`` raw predictions (see :func:`to_anchor_major`).
    - ``anchors``: float tensor ``[A, 2]``, the (w, h) of this scale's anchors in
      network-input pixels (e.g. ``anchors[list(mask)]`` of the detector).
    - ``input_w``, ``input_h``: network input width / height in pixels (ints or scalars).

    Returns ``grid`` ``[1, H, W, 1, 2]`` holding the cell offsets ``(c_x, c_y)``, and
    ``bxy``, ``bwh`` ``[N, H, W, A, 2]``, normalised to [0, 1] of the input. The loss uses
    ``grid`` for the xy target (``y_true_xy * (W, H) - grid``) and ``bxy``/``bwh`` for the
    ignore mask (IoU of the predicted boxes with the ground truth).
    """

    def construct(self, raw, anchors, input_w, input_h):
        grid = make_grid(raw.shape[1], raw.shape[2], raw.dtype)
        bxy, bwh = decode_boxes(raw, grid, anchors, input_w, input_h)
        return grid, bxy, bwh


class YoloPredict(nn.Cell):
    """Inference decode of one scale: ``[N, H, W, A, K]`` raw -> same shape, decoded.

    ``construct(raw, anchors, input_w, input_h)`` (arguments as :class:`YoloDecode`)
    returns the concatenation ``[bxy, bwh, sigmoid(t_obj), sigmoid(t_cls)]`` on the last
    axis: box centre and size normalised to the input, objectness and independent
    per-class probabilities (no softmax).
    """

    def construct(self, raw, anchors, input_w, input_h):
        # The grid is built here rather than taken from YoloDecode: discarding a returned
        # ``arange`` output makes GRAPH_MODE warn about eliminated side-effect nodes.
        grid = make_grid(raw.shape[1], raw.shape[2], raw.dtype)
        bxy, bwh = decode_boxes(raw, grid, anchors, input_w, input_h)
        return ops.concat((bxy, bwh, ops.sigmoid(raw[..., 4:])), -1)


__all__ = ["YoloDecode", "YoloPredict", "decode_boxes", "make_grid", "to_anchor_major"]
