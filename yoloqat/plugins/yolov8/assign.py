"""Task-aligned assignment (TAL, TOOD / YOLOv8) inside the graph, with masks and static
shapes: one compile per input size, no boolean indexing, no gather, no control flow on
values.

Shapes: ``B`` images, ``M`` padded ground-truth rows (``data.max_boxes``), ``A`` anchor
points (grid cells of every output), ``C`` classes. For each image:

1. candidates: anchor centres strictly inside a (valid) GT box;
2. alignment ``t = s^alpha * u^beta`` with ``s`` the predicted probability of the GT's
   class and ``u`` the CIoU of the predicted box with the GT box, clamped at 0 (YOLOv8's
   choice), on candidates only;
3. top-k per GT: the anchors whose ``t`` reaches the GT's k-th largest ``t`` (and is > 0):
   a ``[B, M, A]`` threshold test, not a one-hot of the top-k indices (ties at the k-th
   value are all kept);
4. an anchor selected by several GTs keeps the one it overlaps most (highest CIoU among
   them);
5. targets: the GT box, and the class one-hot times the normalised alignment
   ``t * max_u(gt) / max_t(gt)`` (max over the GT's positives), taking the largest over
   GTs: each GT's best-aligned anchor gets that GT's best IoU as its class target.
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn, ops


def box_ciou(b1, b2, eps: float = 1e-7):
    """Complete IoU of boxes ``b1`` and ``b2`` (``[..., 4]`` ``x1, y1, x2, y2``, broadcast
    against each other) -> ``[...]``: IoU minus the normalised centre distance and the
    aspect-ratio term (whose weight ``alpha`` gets no gradient, as in the CIoU paper)."""
    x1a, y1a, x2a, y2a = b1[..., 0], b1[..., 1], b1[..., 2], b1[..., 3]
    x1b, y1b, x2b, y2b = b2[..., 0], b2[..., 1], b2[..., 2], b2[..., 3]
    w1, h1 = x2a - x1a, y2a - y1a + eps
    w2, h2 = x2b - x1b, y2b - y1b + eps
    iw = ops.relu(ops.minimum(x2a, x2b) - ops.maximum(x1a, x1b))
    ih = ops.relu(ops.minimum(y2a, y2b) - ops.maximum(y1a, y1b))
    inter = iw * ih
    iou = inter / (w1 * h1 + w2 * h2 - inter + eps)
    cw = ops.maximum(x2a, x2b) - ops.minimum(x1a, x1b)
    ch = ops.maximum(y2a, y2b) - ops.minimum(y1a, y1b)
    c2 = cw * cw + ch * ch + eps
    rho2 = (ops.square(x1b + x2b - x1a - x2a) + ops.square(y1b + y2b - y1a - y2a)) / 4.0
    v = (4.0 / math.pi**2) * ops.square(ops.atan(w2 / h2) - ops.atan(w1 / h1))
    alpha = ops.stop_gradient(v / (v - iou + (1.0 + eps)))
    return iou - (rho2 / c2 + v * alpha)


class TaskAlignedAssigner(nn.Cell):
    """TAL from the padded ground truth (see the module doc).

    ``construct(scores, pred_boxes, points, gt_boxes, gt_labels, gt_valid)``:

    - ``scores`` float ``[B, A, C]`` predicted probabilities (sigmoid of the class logits);
    - ``pred_boxes`` float ``[B, A, 4]`` predicted ``x1, y1, x2, y2`` in input pixels;
    - ``points`` float ``[A, 2]`` anchor centres in input pixels;
    - ``gt_boxes`` ``[B, M, 4]`` pixels, ``gt_labels`` int32 ``[B, M]``, ``gt_valid``
      ``[B, M]`` (the loss contract's padded ground truth).

    Returns, all without gradient: ``target_boxes`` ``[B, A, 4]`` (pixels; zeros where not
    positive), ``target_scores`` ``[B, A, C]``, ``fg`` ``[B, A]`` (1 for a positive anchor)
    and ``mask_pos`` ``[B, M, A]`` (which GT each positive anchor was given).
    """

    def __init__(
        self,
        num_classes: int,
        topk: int = 10,
        alpha: float = 0.5,
        beta: float = 6.0,
        eps: float = 1e-9,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.topk = int(topk)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)
        self.on = ms.Tensor(1.0, ms.float32)
        self.off = ms.Tensor(0.0, ms.float32)

    def construct(self, scores, pred_boxes, points, gt_boxes, gt_labels, gt_valid):
        scores = ops.stop_gradient(scores)
        pred_boxes = ops.stop_gradient(pred_boxes)
        b, a, _ = scores.shape
        m = gt_boxes.shape[1]
        valid = ops.expand_dims(ops.cast(gt_valid, ms.float32), -1)  # [B, M, 1]
        px = ops.reshape(points[:, 0], (1, 1, a))
        py = ops.reshape(points[:, 1], (1, 1, a))
        gap = ops.minimum(
            ops.minimum(px - gt_boxes[:, :, 0:1], py - gt_boxes[:, :, 1:2]),
            ops.minimum(gt_boxes[:, :, 2:3] - px, gt_boxes[:, :, 3:4] - py),
        )
        cand = ops.cast(gap > self.eps, ms.float32) * valid  # [B, M, A]

        labels = ops.one_hot(gt_labels, self.num_classes, self.on, self.off)  # [B, M, C]
        cls_score = ops.bmm(labels, ops.transpose(scores, (0, 2, 1)))  # [B, M, A]
        iou = ops.relu(box_ciou(ops.expand_dims(gt_boxes, 2), ops.expand_dims(pred_boxes, 1)))
        overlaps = iou * cand
        metric = ops.pow(cls_score * cand, self.alpha) * ops.pow(overlaps, self.beta)

        # k zeros appended: a constant k at any anchor count (also fewer than k, and with
        # dynamic shapes); a zero k-th value keeps every candidate with a positive metric
        k = self.topk
        padded = ops.concat((metric, ops.zeros((b, m, k), ms.float32)), -1)
        kth = ops.topk(padded, k, dim=-1)[0][:, :, k - 1 : k]  # [B, M, 1]
        top = ops.cast(metric >= kth, ms.float32) * ops.cast(metric > 0, ms.float32)
        mask_pos = top * cand

        # An anchor chosen by several GTs keeps the one with the highest overlap.
        fg = ops.reduce_sum(mask_pos, 1)  # [B, A]
        ranked = ops.select(mask_pos > 0, overlaps, overlaps - 2.0)
        best = ops.one_hot(ops.argmax(ranked, 1), m, self.on, self.off)  # [B, A, M]
        multi = ops.expand_dims(ops.cast(fg > 1, ms.float32), 1)  # [B, 1, A]
        mask_pos = multi * ops.transpose(best, (0, 2, 1)) + (1.0 - multi) * mask_pos
        fg = ops.reduce_sum(mask_pos, 1)

        pos_t = ops.transpose(mask_pos, (0, 2, 1))  # [B, A, M]: one-hot GT per positive
        target_boxes = ops.bmm(pos_t, ops.cast(gt_boxes, ms.float32))
        metric = metric * mask_pos
        max_metric = ops.amax(metric, -1, True)  # [B, M, 1]
        max_iou = ops.amax(overlaps * mask_pos, -1, True)
        norm = ops.amax(metric * max_iou / (max_metric + self.eps), 1)  # [B, A]
        target_scores = ops.bmm(pos_t, labels) * ops.expand_dims(norm, -1)
        return (
            ops.stop_gradient(target_boxes),
            ops.stop_gradient(target_scores),
            ops.stop_gradient(fg),
            ops.stop_gradient(mask_pos),
        )
