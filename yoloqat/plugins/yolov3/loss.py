"""YOLO loss of the seed (docs/seed.md §3.2): per-output xy/wh/objectness/class terms, summed.

Works for any number of outputs (YOLOv3: 3, YOLOv3-tiny: 2), in PYNATIVE and GRAPH_MODE:
each output's grid and the input size come from the static tensor shapes (one compiled
graph per input size, as for the network). Its targets are built on the host by
:meth:`YoloV3Loss.build_targets` (best-anchor matching, :mod:`.targets`).
"""

from __future__ import annotations

from collections.abc import Sequence

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn, ops

from .decode import YoloDecode, to_anchor_major
from .targets import build_targets_batch, padded_to_boxes


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
        scale_xy: float = 1.0,
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
        self.scale_xy = float(scale_xy)
        self.decode = YoloDecode(self.scale_xy)

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
        if self.scale_xy != 1.0:  # the sigmoid that decodes to the centre (Darknet scale_x_y)
            true_xy = (true_xy + (self.scale_xy - 1.0) / 2.0) / self.scale_xy
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
    """Sum of the per-output YOLO losses (outputs in the head's order, coarsest first).

    ``construct(outputs, gt_boxes, gt_labels, gt_valid, *extras)``: ``outputs`` the raw head
    outputs ``[N, A_l * (5 + C), H_l, W_l]``; ``extras`` what :meth:`build_targets` made:
    ``y_true_0 .. y_true_{L-1}`` then ``gt_0 .. gt_{L-1}`` (the padded ground truth itself is
    not read: the targets hold it).
    """

    #: The head output format it trains (``yolov3_head``, ``yolov3_tiny_head``).
    accepts = ("yolo",)

    def __init__(
        self,
        *,
        num_classes: int,
        anchors: np.ndarray,
        anchor_masks: tuple,
        strides: Sequence[int],
        ignore_threshold: float,
        label_smooth: bool,
        label_smooth_factor: float,
        scale_x_y: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.anchors = np.asarray(anchors, np.float32)
        self.anchor_masks = tuple(tuple(int(i) for i in m) for m in anchor_masks)
        self.strides = tuple(int(s) for s in strides)
        self.num_levels = len(self.anchor_masks)
        self.num_anchors = tuple(len(m) for m in self.anchor_masks)
        scales = (1.0,) * self.num_levels if scale_x_y is None else tuple(scale_x_y)
        self.scale_x_y = tuple(float(s) for s in scales)
        self.blocks = nn.CellList(
            [
                YoloLossBlock(
                    self.anchors[list(mask)],
                    stride,
                    ignore_threshold,
                    label_smooth,
                    label_smooth_factor,
                    num_classes,
                    scale,
                )
                for mask, stride, scale in zip(self.anchor_masks, self.strides, self.scale_x_y)
            ]
        )

    def build_targets(
        self,
        gt_boxes: np.ndarray,
        gt_labels: np.ndarray,
        gt_valid: np.ndarray,
        input_hw: tuple[int, int],
    ) -> tuple[np.ndarray, ...]:
        """Host-side targets of a batch (run by the data loader): ``(y_true_0, ...,
        y_true_{L-1}, gt_0, ..., gt_{L-1})`` (:func:`.targets.build_targets_batch`)."""
        height, width = int(input_hw[0]), int(input_hw[1])
        return build_targets_batch(
            padded_to_boxes(gt_boxes, gt_labels, gt_valid),
            (width, height),
            self.anchors,
            self.anchor_masks,
            self.num_classes,
            int(np.shape(gt_boxes)[1]),
            strides=self.strides,
        )

    def _level(self, i: int, outputs, extras):
        raw = to_anchor_major(outputs[i], self.num_anchors[i])
        return self.blocks[i](raw, extras[i], extras[self.num_levels + i])

    def construct(self, outputs, gt_boxes, gt_labels, gt_valid, *extras):
        """Scalar loss: Σ over outputs of (xy + wh + conf + cls) / batch size."""
        xy, wh, conf, cls = self._level(0, outputs, extras)
        total = xy + wh + conf + cls
        for i in range(1, self.num_levels):
            xy, wh, conf, cls = self._level(i, outputs, extras)
            total = total + (xy + wh + conf + cls)
        return total

    def terms(self, outputs, gt_boxes, gt_labels, gt_valid, *extras) -> list[tuple[float, ...]]:
        """Each term per output, for tests and logging (not for the jitted train step):
        ``[(xy, wh, conf, cls), ...]`` as Python floats in the outputs' order, each already
        divided by the batch size, so their total equals ``construct``'s value."""
        return [
            tuple(float(t.asnumpy()) for t in self._level(i, outputs, extras))
            for i in range(self.num_levels)
        ]
