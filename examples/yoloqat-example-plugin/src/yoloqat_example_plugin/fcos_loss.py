"""The FCOS loss: centre-sampling assignment inside the loss, focal + GIoU + centerness.

Assignment, from the padded ground truth (``gt_boxes`` ``[N, M, 4]`` x1, y1, x2, y2 input
pixels, ``gt_labels`` ``[N, M]``, ``gt_valid`` ``[N, M]``) and each level's points (cell
centres, :func:`~.fcos.level_points`), for every (point, box) pair at once:

- **centre sampling**: the point lies strictly inside the box's centre region, the square
  of ``center_radius`` strides around the box centre clipped to the box. So it lies
  strictly inside the box: its regression targets ``l, t, r, b`` (distances to the sides)
  are all > 0, and the head's ``exp`` distances can reach them;
- **scale range**: the largest of ``l, t, r, b`` is in the point's level range
  ``(bounds[i - 1], bounds[i]]`` (the first from 0, the last unbounded);
- the box is real (``gt_valid``); padding rows are never candidates.

A point with candidates is positive and takes the one of smallest area (the first of equal
ones); every other point is a negative. Then, normalised by the number of positives ``P``
of the batch (at least 1): sigmoid focal loss over all points and classes (one-hot targets
of the positives), the GIoU loss of the positives' boxes weighted by their centerness
targets (normalised by their sum, as FCOS), and BCE of the centerness logit against
``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` on the positives.

Everything is masks over ``[N, P, M]`` tensors of static shape (``P`` the points of all
levels, ``M`` = ``data.max_boxes``): no boolean indexing and no Python control on tensor
values, so the loss compiles once per input size in GRAPH_MODE.
"""

from __future__ import annotations

from collections.abc import Sequence

import mindspore as ms
from mindspore import nn, ops

from .fcos import distances, flatten_level, level_points

#: Stands for an unbounded scale range and an impossible area (finite: no inf arithmetic).
FAR = 1e8
#: Raw box outputs are clipped to this before ``exp`` in the loss (exp(20) * 32 px: any box).
MAX_LOG_DISTANCE = 20.0


def default_bounds(strides: Sequence[int]) -> tuple[float, ...]:
    """FCOS's level boundaries: 8 strides of every level but the last (64, 128 for strides
    8, 16, 32: stride 8 takes boxes reaching up to 64 px from the point, stride 16 up to
    128, stride 32 the rest)."""
    return tuple(8.0 * s for s in list(strides)[:-1])


class FcosLoss(nn.Cell):
    """FCOS loss over the raw outputs of an "fcos_ltrb" head (any number of levels).

    ``construct(outputs, gt_boxes, gt_labels, gt_valid) -> scalar``; :meth:`targets` is the
    assignment, :meth:`terms` each term as floats. See ``yoloqat_example_plugin.fcos_loss``
    for the parameters.
    """

    #: The head output format it trains (``fcos_lite``).
    accepts = ("fcos_ltrb",)

    def __init__(
        self,
        *,
        num_classes: int,
        strides: Sequence[int],
        bounds: Sequence[float],
        center_radius: float,
        focal_alpha: float,
        focal_gamma: float,
        box_loss: str,
        box_weight: float,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        self.num_levels = len(self.strides)
        edges = (0.0, *(float(b) for b in bounds), FAR)
        self.ranges = tuple((edges[i], edges[i + 1]) for i in range(self.num_levels))
        self.center_radius = float(center_radius)
        self.alpha = float(focal_alpha)
        self.gamma = float(focal_gamma)
        self.giou = box_loss == "giou"
        self.box_weight = float(box_weight)
        self.bce = ops.SigmoidCrossEntropyWithLogits()
        self.argmin = ops.ArgMinWithValue(axis=-1)

    def _points(self, outputs):
        """Raw outputs of every level ``[N, P, K]``; points ``px, py`` ``[P, 1]``; each
        point's stride and scale range ``[P, 1]``."""
        xs = ()
        pxs = ()
        pys = ()
        strides = ()
        lows = ()
        highs = ()
        for i in range(self.num_levels):
            stride = self.strides[i]
            raw = ops.cast(outputs[i], ms.float32)
            h, w = raw.shape[2], raw.shape[3]
            px, py = level_points(h, w, stride, ms.float32)
            ones = ops.ones_like(px)
            xs = xs + (flatten_level(raw),)  # noqa: RUF005 (GRAPH_MODE's parser)
            pxs = pxs + (px,)  # noqa: RUF005
            pys = pys + (py,)  # noqa: RUF005
            strides = strides + (ones * stride,)  # noqa: RUF005
            lows = lows + (ones * self.ranges[i][0],)  # noqa: RUF005
            highs = highs + (ones * self.ranges[i][1],)  # noqa: RUF005
        return (
            ops.concat(xs, 1),
            ops.concat(pxs, 0),
            ops.concat(pys, 0),
            ops.concat(strides, 0),
            ops.concat(lows, 0),
            ops.concat(highs, 0),
        )

    def targets(self, outputs, gt_boxes, gt_labels, gt_valid):
        """The assignment (no gradient): ``(positive [N, P], labels [N, P] int32, ltrb
        [N, P, 4] pixels)`` over the points of every level in output order (each level
        row-major); ``labels`` and ``ltrb`` are 0 at negatives."""
        _, px, py, stride, low, high = self._points(outputs)
        return self._assign(px, py, stride, low, high, gt_boxes, gt_labels, gt_valid)

    def _assign(self, px, py, stride, low, high, gt_boxes, gt_labels, gt_valid):
        gt = ops.expand_dims(ops.cast(gt_boxes, ms.float32), 1)  # [N, 1, M, 4]
        x1, y1, x2, y2 = gt[..., 0], gt[..., 1], gt[..., 2], gt[..., 3]
        left, top = px - x1, py - y1  # [N, P, M]
        right, bottom = x2 - px, y2 - py
        ltrb = ops.stack((left, top, right, bottom), -1)  # [N, P, M, 4]
        radius = stride * self.center_radius
        cx, cy = (x1 + x2) * 0.5, (y1 + y2) * 0.5
        inside = ops.logical_and(
            ops.logical_and(px > ops.maximum(cx - radius, x1), px < ops.minimum(cx + radius, x2)),
            ops.logical_and(py > ops.maximum(cy - radius, y1), py < ops.minimum(cy + radius, y2)),
        )
        reach = ops.amax(ltrb, -1)
        in_range = ops.logical_and(reach > low, reach <= high)
        valid = ops.expand_dims(ops.cast(gt_valid, ms.float32), 1) > 0.5
        candidate = ops.logical_and(ops.logical_and(inside, in_range), valid)
        area = (x2 - x1) * (y2 - y1)
        areas = ops.broadcast_to(area, candidate.shape)
        masked = ops.select(candidate, areas, ops.ones_like(areas) * FAR)
        index, smallest = self.argmin(masked)  # [N, P]
        positive = ops.cast(smallest < FAR, ms.float32)
        m = gt_boxes.shape[1]
        pick = ops.one_hot(index, m, ops.ones((), ms.float32), ops.zeros((), ms.float32))
        pick = pick * ops.expand_dims(positive, -1)  # [N, P, M]
        target = ops.reduce_sum(ops.expand_dims(pick, -1) * ltrb, 2)  # [N, P, 4]
        labels = ops.reduce_sum(pick * ops.cast(ops.expand_dims(gt_labels, 1), ms.float32), -1)
        # (no unused outputs: GRAPH_MODE warns about side-effect nodes dropped with them)
        return (
            ops.stop_gradient(positive),
            ops.stop_gradient(ops.cast(labels + 0.5, ms.int32)),
            ops.stop_gradient(target),
        )

    def _terms(self, outputs, gt_boxes, gt_labels, gt_valid):
        x, px, py, stride, low, high = self._points(outputs)
        positive, labels, target = self._assign(
            px, py, stride, low, high, gt_boxes, gt_labels, gt_valid
        )
        num_pos = ops.maximum(ops.reduce_sum(positive), 1.0)
        pos = ops.expand_dims(positive, -1)  # [N, P, 1]

        # classes: sigmoid focal loss over every point, one-hot targets at the positives
        on, off = ops.ones((), ms.float32), ops.zeros((), ms.float32)
        t_cls = ops.one_hot(labels, self.num_classes, on, off) * pos
        logits = x[..., 5:]
        p = ops.sigmoid(logits)
        p_t = p * t_cls + (1.0 - p) * (1.0 - t_cls)
        alpha_t = self.alpha * t_cls + (1.0 - self.alpha) * (1.0 - t_cls)
        focal = alpha_t * ops.pow(1.0 - p_t, self.gamma) * self.bce(logits, t_cls)
        cls_loss = ops.reduce_sum(focal) / num_pos

        # boxes: (G)IoU of the distances, on the positives (safe targets elsewhere: no 0/0)
        safe = target * pos + (1.0 - pos)
        pred = distances(ops.minimum(x[..., 0:4], MAX_LOG_DISTANCE), stride)
        iou, enclosed = self._iou(pred, safe)
        lr, tb = safe[..., 0::2], safe[..., 1::2]
        ratio = (ops.amin(lr, -1) / ops.amax(lr, -1)) * (ops.amin(tb, -1) / ops.amax(tb, -1))
        t_ctr = ops.stop_gradient(ops.sqrt(ratio) * positive)  # [N, P]
        box = 1.0 - (iou - enclosed if self.giou else iou)
        box_loss = ops.reduce_sum(box * t_ctr) / ops.maximum(ops.reduce_sum(t_ctr), 1e-6)

        # centerness: BCE against the targets' centerness, on the positives
        ctr = self.bce(x[..., 4], t_ctr) * positive
        ctr_loss = ops.reduce_sum(ctr) / num_pos
        return cls_loss, self.box_weight * box_loss, ctr_loss

    def _iou(self, pred, target):
        """IoU of boxes given as distances from the same point, and GIoU's penalty
        ``(enclosing - union) / enclosing``."""
        p_area = (pred[..., 0] + pred[..., 2]) * (pred[..., 1] + pred[..., 3])
        t_area = (target[..., 0] + target[..., 2]) * (target[..., 1] + target[..., 3])
        low = ops.minimum(pred, target)
        high = ops.maximum(pred, target)
        inter = (low[..., 0] + low[..., 2]) * (low[..., 1] + low[..., 3])
        union = p_area + t_area - inter
        enclosing = (high[..., 0] + high[..., 2]) * (high[..., 1] + high[..., 3])
        return inter / union, (enclosing - union) / enclosing

    def construct(self, outputs, gt_boxes, gt_labels, gt_valid):
        """Scalar loss: focal (classes) + box_weight x GIoU (boxes) + BCE (centerness)."""
        cls_loss, box_loss, ctr_loss = self._terms(outputs, gt_boxes, gt_labels, gt_valid)
        return cls_loss + box_loss + ctr_loss

    def terms(self, outputs, gt_boxes, gt_labels, gt_valid) -> dict[str, float]:
        """Each term as a float (tests and logging; not for the compiled train step):
        ``{"cls", "box", "ctr"}`` (``box`` already times ``box_weight``), summing to
        ``construct``'s value."""
        values = self._terms(outputs, gt_boxes, gt_labels, gt_valid)
        return {k: float(v.asnumpy()) for k, v in zip(("cls", "box", "ctr"), values)}
