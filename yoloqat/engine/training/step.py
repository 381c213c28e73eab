"""The compiled train step: forward, loss, scaled backward, (all-reduce), update.

Loss scaling is done the standard way: the backward pass starts from ``loss_scale``
(the loss is scaled) and the gradients are divided by it before the update, so results do
not depend on the scale. With ``dynamic=True`` a step whose gradients overflow is skipped
and the scale halved; after ``scale_window`` good steps it doubles.
"""

from __future__ import annotations

from typing import Any

import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops
from mindspore.amp import all_finite


class NetWithLoss(nn.Cell):
    """``network(images)`` followed by ``loss(outputs, gt_boxes, gt_labels, gt_valid,
    *extras)`` (the loss contract, :mod:`yoloqat.core.contracts.loss`)."""

    def __init__(self, network: nn.Cell, loss: nn.Cell) -> None:
        super().__init__(auto_prefix=False)
        self.network = network
        self.loss = loss

    def construct(self, images, gt_boxes, gt_labels, gt_valid, *extras):
        outputs = self.network(images)
        return self.loss(outputs, gt_boxes, gt_labels, gt_valid, *extras)


_unscale = ops.MultitypeFuncGraph("unscale")


@_unscale.register("Tensor", "Tensor")
def _unscale_grad(inv_scale, grad):
    return grad * ops.cast(inv_scale, grad.dtype)


class TrainStep(nn.Cell):
    """One optimisation step; returns ``(loss, finite, loss_scale)``.

    ``reducer`` (e.g. ``nn.DistributedGradReducer``) averages gradients across devices.
    """

    def __init__(
        self,
        net_with_loss: nn.Cell,
        optimizer: nn.Optimizer,
        *,
        loss_scale: float = 1.0,
        dynamic: bool = False,
        scale_factor: float = 2.0,
        scale_window: int = 1000,
        reducer: nn.Cell | None = None,
    ) -> None:
        super().__init__(auto_prefix=False)
        self.network = net_with_loss
        self.network.set_grad()
        self.optimizer = optimizer
        self.weights = optimizer.parameters
        self.grad = ops.GradOperation(get_by_list=True, sens_param=True)
        self.hyper_map = ops.HyperMap()
        self.loss_scale = Parameter(
            Tensor(float(loss_scale), ms.float32), name="loss_scale", requires_grad=False
        )
        self.good_steps = Parameter(
            Tensor(0, ms.int32), name="loss_scale_good_steps", requires_grad=False
        )
        self.dynamic = dynamic
        self.scale_factor = float(scale_factor)
        self.scale_window = int(scale_window)
        self.use_reducer = reducer is not None
        self.reducer = reducer if reducer is not None else nn.Identity()

    def construct(self, *inputs):
        loss = self.network(*inputs)
        scale = self.loss_scale
        sens = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(scale, loss.dtype)
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        if self.use_reducer:
            grads = self.reducer(grads)
        grads = self.hyper_map(ops.partial(_unscale, 1.0 / scale), grads)
        if not self.dynamic:
            self.optimizer(grads)
            return loss, ops.ones((), ms.bool_), scale
        finite = all_finite(grads)
        if finite:
            self.optimizer(grads)
            good = self.good_steps + 1
            if good >= self.scale_window:
                ops.assign(self.loss_scale, scale * self.scale_factor)
                good = good * 0
            ops.assign(self.good_steps, good)
        else:
            ops.assign(self.loss_scale, ops.maximum(scale / self.scale_factor, 1.0))
            ops.assign(self.good_steps, self.good_steps * 0)
        return loss, finite, scale


def spatially_dynamic(inputs: list[Tensor], other_size: list[Any]) -> list[Tensor]:
    """Placeholders for :meth:`TrainStep.set_inputs` with the input size left unknown.

    ``inputs`` are one batch of the step's inputs (image, padded ground truth, the target
    builder's extras) and ``other_size`` the same batch's inputs at another input size: each
    dimension that differs between the two (the image's height and width, the grid of
    per-cell targets) becomes ``None``, everything else keeps its shape. The step then
    compiles once for every input size of a multi-scale run instead of once per size
    (``train.dynamic_shapes``).
    """
    out = []
    for t, other in zip(inputs, other_size):
        shape = [None if a != b else a for a, b in zip(t.shape, other.shape)]
        out.append(Tensor(shape=shape, dtype=t.dtype))
    return out
