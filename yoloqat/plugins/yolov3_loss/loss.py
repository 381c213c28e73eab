"""YOLOv3 loss of the seed (spec §3.2): per-scale xy/wh/objectness/class terms, summed.

Works in PYNATIVE and GRAPH_MODE: the per-scale grid and input size come from the static
tensor shapes (one compiled graph per input size, as for the network).
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from yoloqat.core.decode import YoloDecode

#: Strides of the three outputs, in the network's order (stride 32, 16, 8).
STRIDES = (32, 16, 8)


class YoloLossBlock(nn.Cell):
    """Loss of one output scale; returns ``(xy, wh, conf, cls)``, each summed and / batch."""

    def __init__(
        self,
        anchors: np.ndarray,
        stride: int,
        ignore_threshold: float,
        label_smooth: bool,
        label_smooth_factor: float,
        num_classes: int,
    ) -> None:
        super().__init__()
        # Anchor (w, h) in pixels of the network input, shaped [1, 1, 1, A, 2].
        self.anchors = Tensor(np.asarray(anchors, dtype=np.float32).reshape(1, 1, 1, -1, 2))
        self.stride = float(stride)
        self.ignore_threshold = float(ignore_threshold)
        self.label_smooth = bool(label_smooth)
        self.smooth_on = 1.0 - float(label_smooth_factor)
        self.smooth_off = float(label_smooth_factor) / max(num_classes - 1, 1)
        self.bce = ops.SigmoidCrossEntropyWithLogits()
        self.decode = YoloDecode()

    def _best_iou(self, pred_xy: Tensor, pred_wh: Tensor, gt: Tensor) -> Tensor:
        """Max IoU of each predicted box against the GT list: [N, H, W, A, 1]."""
        n = ops.shape(gt)[0]
        gt = gt.reshape(n, 1, 1, 1, -1, 4)
        p_xy = ops.expand_dims(pred_xy, -2)  # [N, H, W, A, 1, 2]
        p_wh = ops.expand_dims(pred_wh, -2)
        g_xy = gt[..., 0:2]
        g_wh = gt[..., 2:4]
        mins = ops.maximum(p_xy - p_wh / 2.0, g_xy - g_wh / 2.0)
        maxs = ops.minimum(p_xy + p_wh / 2.0, g_xy + g_wh / 2.0)
        inter_wh = ops.maximum(maxs - mins, 0.0)
        inter = inter_wh[..., 0] * inter_wh[..., 1]
        p_area = p_wh[..., 0] * p_wh[..., 1]
        g_area = g_wh[..., 0] * g_wh[..., 1]
        iou = inter / (p_area + g_area - inter)
        return ops.amax(iou, -1, True)

    def construct(self, prediction: Tensor, y_true: Tensor, gt_box: Tensor) -> tuple:
        """``prediction`` raw [N,H,W,A,5+C]; ``y_true`` [N,H,W,A,5+C]; ``gt_box`` [N,50,4]."""
        prediction = ops.cast(prediction, ms.float32)
        y_true = ops.cast(y_true, ms.float32)
        gt_box = ops.cast(gt_box, ms.float32)
        n, h, w, _, _ = ops.shape(prediction)
        # Input size from the grid; the decoded boxes feed the ignore mask.
        grid, pred_xy, pred_wh = self.decode(
            prediction, self.anchors, w * self.stride, h * self.stride
        )
        grid_wh = ops.cast(ops.tuple_to_array((w, h)), ms.float32)
        input_wh = grid_wh * self.stride
        batch = ops.cast(n, ms.float32)

        t_xy = prediction[..., 0:2]
        t_wh = prediction[..., 2:4]
        t_obj = prediction[..., 4:5]
        t_cls = prediction[..., 5:]

        object_mask = y_true[..., 4:5]
        class_probs = y_true[..., 5:]
        if self.label_smooth:
            on = ops.ones_like(class_probs) * self.smooth_on
            off = ops.ones_like(class_probs) * self.smooth_off
            class_probs = ops.select(
                class_probs == 1.0, on, ops.select(class_probs == 0.0, off, class_probs)
            )

        true_xy = y_true[..., 0:2] * grid_wh - grid
        true_wh = y_true[..., 2:4]
        true_wh = ops.select(true_wh == 0.0, ops.ones_like(true_wh), true_wh)
        true_wh = ops.log(true_wh / self.anchors * input_wh)
        box_loss_scale = 2.0 - y_true[..., 2:3] * y_true[..., 3:4]

        # Ignore mask: decoded predictions against this scale's GT list; no gradient through it.
        best_iou = self._best_iou(pred_xy, pred_wh, gt_box)
        ignore_mask = ops.stop_gradient(ops.cast(best_iou < self.ignore_threshold, ms.float32))

        xy_loss = object_mask * box_loss_scale * self.bce(t_xy, true_xy)
        wh_loss = object_mask * box_loss_scale * 0.5 * ops.square(true_wh - t_wh)
        obj_bce = self.bce(t_obj, object_mask)
        conf_loss = object_mask * obj_bce + (1.0 - object_mask) * obj_bce * ignore_mask
        cls_loss = object_mask * self.bce(t_cls, class_probs)

        return (
            ops.reduce_sum(xy_loss) / batch,
            ops.reduce_sum(wh_loss) / batch,
            ops.reduce_sum(conf_loss) / batch,
            ops.reduce_sum(cls_loss) / batch,
        )


class YoloV3Loss(nn.Cell):
    """Sum of the three per-scale YOLOv3 losses (outputs in order stride 32, 16, 8)."""

    def __init__(
        self,
        *,
        num_classes: int,
        anchors: np.ndarray,
        anchor_masks: tuple,
        ignore_threshold: float,
        label_smooth: bool,
        label_smooth_factor: float,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        blocks = [
            YoloLossBlock(
                anchors[list(mask)],
                stride,
                ignore_threshold,
                label_smooth,
                label_smooth_factor,
                num_classes,
            )
            for mask, stride in zip(anchor_masks, STRIDES)
        ]
        self.loss_l, self.loss_m, self.loss_s = blocks

    def construct(
        self,
        out_l: Tensor,
        out_m: Tensor,
        out_s: Tensor,
        y_true_l: Tensor,
        y_true_m: Tensor,
        y_true_s: Tensor,
        gt_l: Tensor,
        gt_m: Tensor,
        gt_s: Tensor,
    ) -> Tensor:
        """Scalar loss: Σ over scales of (xy + wh + conf + cls) / batch size."""
        xy_l, wh_l, conf_l, cls_l = self.loss_l(out_l, y_true_l, gt_l)
        xy_m, wh_m, conf_m, cls_m = self.loss_m(out_m, y_true_m, gt_m)
        xy_s, wh_s, conf_s, cls_s = self.loss_s(out_s, y_true_s, gt_s)
        loss_l = xy_l + wh_l + conf_l + cls_l
        loss_m = xy_m + wh_m + conf_m + cls_m
        loss_s = xy_s + wh_s + conf_s + cls_s
        return loss_l + loss_m + loss_s

    def terms(
        self,
        out_l: Tensor,
        out_m: Tensor,
        out_s: Tensor,
        y_true_l: Tensor,
        y_true_m: Tensor,
        y_true_s: Tensor,
        gt_l: Tensor,
        gt_m: Tensor,
        gt_s: Tensor,
    ) -> dict[str, tuple[float, float, float, float]]:
        """Each term per scale, for tests and logging (not for the jitted train step).

        Returns ``{"l": (xy, wh, conf, cls), "m": ..., "s": ...}`` as Python floats, each
        already divided by the batch size, so their total equals ``construct``'s value.
        """
        result = {}
        for key, block, out, y_true, gt in (
            ("l", self.loss_l, out_l, y_true_l, gt_l),
            ("m", self.loss_m, out_m, y_true_m, gt_m),
            ("s", self.loss_s, out_s, y_true_s, gt_s),
        ):
            result[key] = tuple(float(t.asnumpy()) for t in block(out, y_true, gt))
        return result
