"""YOLOv8's loss: task-aligned assignment in the graph, then CIoU box loss, BCE class loss
and distribution focal loss (DFL), all from the padded ground truth with masks and static
shapes (one compile per input size).

With ``S = max(sum of target scores, 1)`` over the batch and ``w_a`` the target-score sum of
a positive anchor ``a`` (its normalised alignment):

- box: ``sum_a w_a (1 - CIoU(pred_a, target_a)) / S``;
- cls: ``sum BCE(logits, target scores) / S`` over every anchor and class;
- dfl: ``sum_a w_a mean_side CE(dist_a, two-hot(target distance)) / S``, the target
  distances (left, top, right, bottom, in grid units) clamped to ``[0, reg_max - 1.01]``
  and split between the two nearest bins;

and the loss is ``(box_gain * box + cls_gain * cls + dfl_gain * dfl) * B``. The factor ``B``
(YOLOv8's) makes the gradient a sum over images (each term is normalised by the whole
batch's target mass), so YOLOv8's SGD settings transfer unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import mindspore as ms
from mindspore import Tensor, nn, ops

from .assign import TaskAlignedAssigner, box_ciou
from .decode import anchor_points, expected_distance, flatten_levels


class YoloV8Loss(nn.Cell):
    """See the module doc and :func:`yoloqat.plugins.yolov8.yolov8_loss`.

    ``construct(outputs, gt_boxes, gt_labels, gt_valid)``: ``outputs`` the head's raw
    outputs ``[N, 4 * reg_max + C, H_l, W_l]`` in the order of ``strides``.
    """

    #: The head output format it trains (``yolov8_head``).
    accepts = ("dfl_ltrb",)

    def __init__(
        self,
        *,
        num_classes: int,
        strides: Sequence[int],
        reg_max: int,
        topk: int,
        alpha: float,
        beta: float,
        box_gain: float,
        cls_gain: float,
        dfl_gain: float,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.strides = tuple(int(s) for s in strides)
        self.num_levels = len(self.strides)
        self.reg_max = int(reg_max)
        self.gains = (float(box_gain), float(cls_gain), float(dfl_gain))
        self.assigner = TaskAlignedAssigner(num_classes, topk=topk, alpha=alpha, beta=beta)
        self.bce = ops.SigmoidCrossEntropyWithLogits()
        self.bins = Tensor([float(i) for i in range(self.reg_max)], ms.float32)
        self.limit = float(self.reg_max) - 1.01

    def _terms(self, outputs, gt_boxes, gt_labels, gt_valid):
        """``(box, cls, dfl, batch)``: the three normalised terms and the batch size."""
        r = self.reg_max
        x = ops.cast(flatten_levels(outputs, self.num_levels), ms.float32)  # [B, K, A]
        x = ops.transpose(x, (0, 2, 1))  # [B, A, K]
        b, a, _ = x.shape
        dist = ops.reshape(x[:, :, : 4 * r], (b, a, 4, r))
        logits = x[:, :, 4 * r :]
        points, stride = anchor_points(outputs, self.strides)  # grid units, [A, 2] / [A, 1]
        ltrb = expected_distance(dist, self.bins, -1)  # [B, A, 4] grid units
        pred = ops.concat((points - ltrb[:, :, 0:2], points + ltrb[:, :, 2:4]), -1)

        target_boxes, target_scores, fg, _ = self.assigner(
            ops.sigmoid(logits),
            pred * stride,
            points * stride,
            ops.cast(gt_boxes, ms.float32),
            gt_labels,
            gt_valid,
        )
        total = ops.maximum(ops.reduce_sum(target_scores), 1.0)
        cls = ops.reduce_sum(self.bce(logits, target_scores)) / total

        weight = ops.reduce_sum(target_scores, -1) * fg  # [B, A]
        target = target_boxes / stride  # grid units
        box = ops.reduce_sum((1.0 - box_ciou(pred, target)) * weight) / total

        sides = ops.concat((points - target[:, :, 0:2], target[:, :, 2:4] - points), -1)
        sides = ops.clip_by_value(sides, 0.0, self.limit)  # [B, A, 4]
        two_hot = ops.relu(1.0 - ops.abs(ops.expand_dims(sides, -1) - self.bins))
        ce = -ops.reduce_sum(two_hot * ops.log_softmax(dist, -1), -1)  # [B, A, 4]
        dfl = ops.reduce_sum(ops.reduce_mean(ce, -1) * weight) / total
        return box, cls, dfl, b

    def construct(self, outputs, gt_boxes, gt_labels, gt_valid, *extras):
        """Scalar loss: ``(box_gain * box + cls_gain * cls + dfl_gain * dfl) * batch``."""
        box, cls, dfl, b = self._terms(outputs, gt_boxes, gt_labels, gt_valid)
        g_box, g_cls, g_dfl = self.gains
        return (g_box * box + g_cls * cls + g_dfl * dfl) * b

    def terms(self, outputs, gt_boxes, gt_labels, gt_valid) -> dict[str, float]:
        """The three terms as Python floats (tests and logging, not the jitted step), each
        with its gain and the batch factor, so that they sum to ``construct``'s value."""
        box, cls, dfl, b = self._terms(outputs, gt_boxes, gt_labels, gt_valid)
        values = (box, cls, dfl)
        return {
            name: float(v.asnumpy()) * gain * b
            for name, v, gain in zip(("box", "cls", "dfl"), values, self.gains)
        }
