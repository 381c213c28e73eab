"""Min/max observers: the range state of a fake-quant node, kept as MindSpore Parameters.

Two flavours, as in the seed (spec §7.2):

- ``ema=False`` ("batch"): the stored range is the current min/max of the observed tensor
  (ReLU activation fake-quants; weights, where the tensor is the folded weight, per channel).
- ``ema=True``: ``range = decay * range + (1 - decay) * batch range``, starting at ``±6``
  (fake-quants around LeakyReLU and after residual adds).

In both cases the new range is clamped to ``min <= 0 <= max`` before it is stored. The state
is only updated in training mode (``cell.set_train(True)``); evaluation reads the stored
values. The Parameters (``min_value``, ``max_value``, ``requires_grad=False``) are saved in
checkpoints and restored on resume.
"""

from __future__ import annotations

import numpy as np
from mindspore import Parameter, Tensor, nn, ops

#: Initial range of activation observers (the seed's ``FakeQuantWithMinMaxObserver`` default).
ACT_INIT_RANGE = (-6.0, 6.0)


class MinMaxObserver(nn.Cell):
    """Tracks the range of a tensor, one range per tensor or one per channel.

    Args:
        channels: number of ranges (1 for a per-tensor observer).
        per_channel: one range per index of ``channel_axis`` (then ``channels`` must match).
        channel_axis: channel axis of the observed tensor (0 for conv weights).
        ndim: rank of the observed tensor (needed for per-channel reductions).
        ema: moving-average update (True) or the batch range (False).
        ema_decay: the moving-average decay.
        init_min, init_max: initial range, scalars or per-channel arrays.
    """

    def __init__(
        self,
        channels: int = 1,
        *,
        per_channel: bool = False,
        channel_axis: int = 0,
        ndim: int = 4,
        ema: bool = False,
        ema_decay: float = 0.999,
        init_min: float | np.ndarray = ACT_INIT_RANGE[0],
        init_max: float | np.ndarray = ACT_INIT_RANGE[1],
    ) -> None:
        super().__init__()
        size = channels if per_channel else 1
        lo = np.minimum(np.broadcast_to(np.asarray(init_min, np.float32), (size,)), 0.0)
        hi = np.maximum(np.broadcast_to(np.asarray(init_max, np.float32), (size,)), 0.0)
        self.min_value = Parameter(Tensor(lo), name="min_value", requires_grad=False)
        self.max_value = Parameter(Tensor(hi), name="max_value", requires_grad=False)
        self.per_channel = per_channel
        self.reduce_axes = tuple(i for i in range(ndim) if i != channel_axis)
        self.ema = ema
        self.ema_decay = float(ema_decay)
        self.zero = Tensor(0.0, self.min_value.dtype)

    def observe(self, x):
        """Update the stored range from ``x`` (training) and return ``(min, max)`` tensors."""
        xs = ops.stop_gradient(x)
        if self.per_channel:
            lo = ops.amin(xs, self.reduce_axes)
            hi = ops.amax(xs, self.reduce_axes)
        else:
            lo = ops.reshape(ops.amin(xs), (1,))
            hi = ops.reshape(ops.amax(xs), (1,))
        if self.ema:
            d = self.ema_decay
            lo = d * self.min_value + (1.0 - d) * lo
            hi = d * self.max_value + (1.0 - d) * hi
        lo = ops.minimum(lo, self.zero)
        hi = ops.maximum(hi, self.zero)
        ops.assign(self.min_value, lo)
        ops.assign(self.max_value, hi)
        return lo, hi

    def construct(self, x):
        if self.training:
            return self.observe(x)
        return self.min_value, self.max_value
