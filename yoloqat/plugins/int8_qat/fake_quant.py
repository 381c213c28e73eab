"""Fake quantization from ordinary MindSpore ops (runs on CPU, GPU and Ascend).

MindSpore 2.x has no CPU kernel for its ``FakeQuantPerLayer``/``PerChannel`` primitives, so the
arithmetic of :mod:`.reference` is written with ``div``, ``clamp``, ``floor`` and ``mul``.

Gradient: a straight-through estimator restricted to the range. :class:`RoundClampSTE` has a
custom ``bprop`` (compiled in GRAPH_MODE like any other cell): ``dL/dx = dL/dy`` where
``x`` lies in the nudged range ``[lo * scale, hi * scale]`` and 0 outside; the range inputs
get no gradient (observers set them, they are not learned). A custom bprop is cheaper than the
``x + stop_gradient(q - x)`` trick: the forward pass stays 5 element-wise ops and the backward
pass is one mask and one select, with nothing kept for the clamp's own gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mindspore import Tensor, nn, ops

from .observers import ACT_INIT_RANGE, MinMaxObserver
from .reference import MIN_SCALE, quant_range, symmetric_zero_point

#: ``freeze_bn`` at or above this (the seed's default, 10M steps) means "never freeze": the
#: layers are then compiled without the freeze switch, which saves ~8 element-wise ops per
#: layer and step.
FREEZE_BN_NEVER = 10_000_000


def nudge_scale_symmetric(min_value, max_value, qmin: float, qmax: float):
    """Scale of a symmetric range (its ``lo``/``hi`` are constants); twin of ``reference.nudge``."""
    m = ops.maximum(ops.maximum(-min_value, max_value), 0.0)
    return ops.maximum((m + m) / (qmax - qmin), MIN_SCALE)


def nudge_asymmetric(min_value, max_value, qmin: float, qmax: float):
    """Return ``(scale, lo, hi)`` of an asymmetric range; twin of ``reference.nudge``.

    The reference's clamp of the zero point to ``[qmin, qmax]`` is left out: with
    ``min <= 0 <= max`` it cannot change the rounded result.
    """
    min_value = ops.minimum(min_value, 0.0)
    max_value = ops.maximum(max_value, 0.0)
    scale = ops.maximum((max_value - min_value) / (qmax - qmin), MIN_SCALE)
    zero_point = ops.floor(qmin - min_value / scale + 0.5)
    return scale, qmin - zero_point, qmax - zero_point


class RoundClampSTE(nn.Cell):
    """``floor(clamp(x / scale, lo, hi) + 0.5) * scale`` with a straight-through gradient.

    ``scale``, ``lo`` and ``hi`` broadcast against ``x`` (shape ``(1,)`` or ``(C, 1, 1, 1)``).
    """

    def construct(self, x, scale, lo, hi):
        return ops.floor(ops.clamp(x / scale, lo, hi) + 0.5) * scale

    def bprop(self, x, scale, lo, hi, out, dout):
        # (ops.clamp here fails to compile inside a bprop in GRAPH_MODE, MindSpore 2.10)
        inside = ops.logical_and(x >= lo * scale, x <= hi * scale)
        dx = ops.select(inside, dout, 0.0)
        return dx, ops.zeros_like(scale), ops.zeros_like(lo), ops.zeros_like(hi)


class GatedRoundClampSTE(nn.Cell):
    """:class:`RoundClampSTE` switched by ``on`` (1.0 or 0.0, shape (1,)): ``x`` when off.

    Used while ``quant_delay`` steps pass; a blend rather than a tensor ``if``, because graph
    control flow makes MindSpore compile and run the network far slower.
    """

    def construct(self, x, scale, lo, hi, on):
        q = ops.floor(ops.clamp(x / scale, lo, hi) + 0.5) * scale
        return x + on * (q - x)

    def bprop(self, x, scale, lo, hi, on, out, dout):
        inside = ops.logical_and(x >= lo * scale, x <= hi * scale)
        dx = ops.select(ops.logical_or(inside, on < 0.5), dout, 0.0)
        zeros = ops.zeros_like
        return dx, zeros(scale), zeros(lo), zeros(hi), zeros(on)


@dataclass(frozen=True)
class QuantConfig:
    """Settings shared by every fake-quant node of a quantized network."""

    num_bits: int = 8
    narrow_range: bool = False
    per_channel_weights: bool = True
    symmetric_weights: bool = True
    symmetric_acts: bool = False
    quant_delay: int = 0
    freeze_bn: int = 10_000_000
    ema_decay: float = 0.999

    @property
    def bn_freezes(self) -> bool:
        """Whether ``freeze_bn`` is a real step (below :data:`FREEZE_BN_NEVER`)."""
        return self.freeze_bn < FREEZE_BN_NEVER

    def weight_quant(self, weight: np.ndarray) -> FakeQuant:
        """Fake-quant node for a conv weight (axis 0 = output channels), range from ``weight``."""
        weight = np.asarray(weight, np.float32)
        per_channel = self.per_channel_weights
        axes = tuple(range(1, weight.ndim)) if per_channel else None
        return FakeQuant(
            self,
            channels=weight.shape[0],
            per_channel=per_channel,
            ndim=weight.ndim,
            symmetric=self.symmetric_weights,
            ema=False,
            init_min=weight.min(axis=axes),
            init_max=weight.max(axis=axes),
        )

    def act_quant(self, *, ema: bool) -> FakeQuant:
        """Per-tensor fake-quant node for an activation, initial range ``±6``."""
        return FakeQuant(self, symmetric=self.symmetric_acts, ema=ema)


class FakeQuant(MinMaxObserver):
    """A fake-quant node: observer state (``min_value``/``max_value``) plus the arithmetic.

    ``construct(x, step)``: in training the observer is updated first and the new range is
    used; in eval the stored range is used. ``step`` is the owning layer's training-step
    counter: while ``step < quant_delay`` training passes ``x`` through unchanged (the
    observer still updates); evaluation always fake-quantizes. Set :attr:`enabled` to
    False (before the graph is compiled) to pass everything through, e.g. to check the BN
    fold or to measure one layer's quantization error.
    """

    def __init__(
        self,
        config: QuantConfig,
        *,
        channels: int = 1,
        per_channel: bool = False,
        ndim: int = 4,
        symmetric: bool = False,
        ema: bool = False,
        init_min: float | np.ndarray = ACT_INIT_RANGE[0],
        init_max: float | np.ndarray = ACT_INIT_RANGE[1],
    ) -> None:
        super().__init__(
            channels,
            per_channel=per_channel,
            ndim=ndim,
            ema=ema,
            ema_decay=config.ema_decay,
            init_min=init_min,
            init_max=init_max,
        )
        qmin, qmax = quant_range(config.num_bits, config.narrow_range)
        self.num_bits = config.num_bits
        self.narrow_range = config.narrow_range
        self.qmin = float(qmin)
        self.qmax = float(qmax)
        self.symmetric = symmetric
        zp = symmetric_zero_point(qmin, qmax)
        self.sym_lo = Tensor(np.float32(qmin - zp))
        self.sym_hi = Tensor(np.float32(qmax - zp))
        self.quant_delay = int(config.quant_delay)
        self.range_shape = (-1,) + (1,) * (ndim - 1) if per_channel else (1,)
        self.enabled = True
        self.ste = RoundClampSTE()
        self.gated_ste = GatedRoundClampSTE()

    def construct(self, x, step):
        if self.training:
            lo, hi = self.observe(x)
        else:
            lo, hi = self.min_value, self.max_value
        if not self.enabled:
            return x
        if self.symmetric:
            scale = nudge_scale_symmetric(lo, hi, self.qmin, self.qmax)
            q_lo, q_hi = self.sym_lo, self.sym_hi
        else:
            scale, q_lo, q_hi = nudge_asymmetric(lo, hi, self.qmin, self.qmax)
        if self.per_channel:
            scale = ops.reshape(scale, self.range_shape)
            if not self.symmetric:
                q_lo = ops.reshape(q_lo, self.range_shape)
                q_hi = ops.reshape(q_hi, self.range_shape)
        if self.training and self.quant_delay > 0:
            on = ops.cast(step >= self.quant_delay, x.dtype)
            return self.gated_ste(x, scale, q_lo, q_hi, on)
        return self.ste(x, scale, q_lo, q_hi)

    def quant_params(self) -> dict[str, np.ndarray | int | bool]:
        """Stored range and the derived scale / zero point (NumPy), for export and reports."""
        from .reference import nudge as np_nudge

        lo, hi = self.min_value.asnumpy(), self.max_value.asnumpy()
        scale, zero_point, _, _ = np_nudge(lo, hi, self.num_bits, self.narrow_range, self.symmetric)
        return {
            "min": lo,
            "max": hi,
            "scale": scale,
            "zero_point": zero_point.astype(np.int32),
            "num_bits": self.num_bits,
            "narrow_range": self.narrow_range,
            "symmetric": self.symmetric,
            "per_channel": self.per_channel,
        }
