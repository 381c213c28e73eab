"""Fake-quant nodes built from ordinary MindSpore ops (runs on CPU, GPU and Ascend).

MindSpore 2.x has no CPU kernel for its ``FakeQuantPerLayer``/``PerChannel`` primitives, so
the arithmetic of :mod:`.reference` is written with ``mul``, ``add``, ``clamp`` and ``trunc``
(:mod:`.ste` holds the element-wise core and its straight-through gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mindspore import Tensor, ops

from yoloqat.core.contracts.quantizer import ActivationQuant, WeightQuant

from .observers import ACT_INIT_RANGE, MinMaxObserver, batch_min_max
from .reference import MIN_SCALE, quant_range, symmetric_zero_point
from .ste import (
    FoldedRoundClampSTE,
    GatedFoldedRoundClampSTE,
    GatedRoundClampSTE,
    RoundClampSTE,
    round_clamp_infer,
)

#: ``freeze_bn`` at or above this (the seed's default, 10M steps) means "never freeze": the
#: layers are then compiled without the freeze switch, which saves ~8 element-wise ops per
#: layer and step.
FREEZE_BN_NEVER = 10_000_000


def nudge_scale_symmetric(min_value, max_value, qmin: float, qmax: float):
    """Scale of a symmetric range (its ``lo`` is a constant); twin of ``reference.nudge``."""
    m = ops.maximum(ops.maximum(-min_value, max_value), 0.0)
    return ops.maximum((m + m) / (qmax - qmin), MIN_SCALE)


def nudge_asymmetric(min_value, max_value, qmin: float, qmax: float):
    """Return ``(scale, lo)`` of an asymmetric range (``hi = lo + qmax - qmin``).

    Graph-mode twin of ``reference.nudge``. The reference's clamp of the zero point to
    ``[qmin, qmax]`` is left out: with ``min <= 0 <= max`` it cannot change the rounded result.
    """
    min_value = ops.minimum(min_value, 0.0)
    max_value = ops.maximum(max_value, 0.0)
    scale = ops.maximum((max_value - min_value) / (qmax - qmin), MIN_SCALE)
    zero_point = ops.floor(qmin - min_value / scale + 0.5)
    return scale, qmin - zero_point


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
    ema_init: str = "fixed"

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

    def act_quant(self, *, ema: bool, nonnegative: bool = False) -> FakeQuant:
        """Per-tensor fake-quant node for an activation, initial range ``±6``."""
        return FakeQuant(self, symmetric=self.symmetric_acts, ema=ema, nonnegative=nonnegative)


class FakeQuant(MinMaxObserver):
    """A fake-quant node: observer state (``min_value``/``max_value``) plus the arithmetic.

    ``construct(x, step)``: in training the observer is updated first and the new range is
    used; in eval the stored range is used. ``step`` is the owning layer's training-step
    counter: while ``step < quant_delay`` training passes ``x`` through unchanged (the
    observer still updates); evaluation always fake-quantizes. The straight-through
    gradient is defined in training mode (evaluation rounds without gradient bookkeeping).
    Set :attr:`enabled` to False (before the graph is compiled) to pass everything through,
    e.g. to check the BN fold or to measure one layer's quantization error.
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
        nonnegative: bool = False,
    ) -> None:
        super().__init__(
            channels,
            per_channel=per_channel,
            ema=ema,
            ema_decay=config.ema_decay,
            init_min=init_min,
            init_max=init_max,
            nonnegative=nonnegative,
            ema_init=config.ema_init,
        )
        qmin, qmax = quant_range(config.num_bits, config.narrow_range)
        self.num_bits = config.num_bits
        self.narrow_range = config.narrow_range
        self.qmin = float(qmin)
        self.qmax = float(qmax)
        self.symmetric = symmetric
        sym_lo = float(qmin - symmetric_zero_point(qmin, qmax))
        self.sym_lo = Tensor(np.float32(sym_lo))
        self.sym_offset = Tensor(np.float32(0.5 - sym_lo))
        self.one = Tensor(np.float32(1.0))
        self.quant_delay = int(config.quant_delay)
        self.range_shape = (-1,) + (1,) * (ndim - 1) if per_channel else ()
        self.enabled = True
        self.gated = False  # see FakeQuantizer.eval_gates (yoloqat.core.quant.rewrite)
        self.exporting = False  # see FakeQuantizer.export_plan: x * marker instead
        self.top = qmax - qmin + 0.5
        top = self.top
        self.ste = GatedRoundClampSTE(top) if self.quant_delay > 0 else RoundClampSTE(top)
        if per_channel:
            gated = self.quant_delay > 0
            self.folded_ste = GatedFoldedRoundClampSTE(top) if gated else FoldedRoundClampSTE(top)

    def _nudge(self, lo, hi):
        """``(scale, q_lo, offset)``: 0-d per tensor, ``(C, 1, 1, 1)`` per channel."""
        lo = ops.reshape(lo, self.range_shape)
        hi = ops.reshape(hi, self.range_shape)
        if self.symmetric:
            scale = nudge_scale_symmetric(lo, hi, self.qmin, self.qmax)
            return scale, self.sym_lo, self.sym_offset
        scale, q_lo = nudge_asymmetric(lo, hi, self.qmin, self.qmax)
        return scale, q_lo, 0.5 - q_lo

    def construct(self, x, step):  # type: ignore[override]  # needs the step: not a plain observer
        if self.exporting:  # export form: a named identity the ONNX exporter replaces by Q/DQ
            return x * self.marker
        if self.training:
            lo, hi = self.observe(x, step)
        else:
            lo, hi = self.min_value, self.max_value
        if not self.enabled:
            return x
        scale, q_lo, offset = self._nudge(lo, hi)
        inv_scale = self.one / scale
        if not self.training:
            y = round_clamp_infer(x, inv_scale, offset, q_lo, scale, self.top)
            if self.gated:  # eval gate: 1 quantizes, 0 passes x through (no recompilation)
                return x + self.gate * (y - x)
            return y
        if self.quant_delay > 0:
            on = ops.cast(ops.reshape(step, ()) >= self.quant_delay, x.dtype)
            return self.ste(x, inv_scale, offset, q_lo, scale, on)[0]
        return self.ste(x, inv_scale, offset, q_lo, scale)[0]

    def fold_quant(self, w, s, step):
        """Training fast path of a per-channel node: ``conv(x, fq(w * s)) = conv(x, W) * c``.

        Returns ``(W, c)``: the integer-valued weight ``W`` (codes minus zero point) and the
        per-channel factor ``c`` (shape (C,)) that the conv output must be multiplied by.
        ``s`` (shape (C,), no gradient) is the BN fold factor. The range of ``w * s`` is
        derived from the per-channel min/max of ``w`` (rounding is monotonic, so this is
        exactly the min/max of the float32 product) and ``w * s / scale`` is computed as
        ``w * (s / scale)``: two fewer passes over the weight than forming ``w * s`` and the
        fake-quantized weight. The gradient is ``s`` inside the range, 0 outside.
        Equal to the generic path up to float rounding (rare one-step differences at ties).
        """
        lo_w, hi_w = batch_min_max(w, True)
        a = s * lo_w
        b = s * hi_w
        lo, hi = self.update(ops.minimum(a, b), ops.maximum(a, b))
        if not self.enabled:
            return w * ops.reshape(s, self.range_shape), ops.ones_like(s)
        scale, q_lo, offset = self._nudge(lo, hi)
        k = ops.stop_gradient(ops.reshape(s, self.range_shape) * (self.one / scale))
        u = w * k + offset
        if self.quant_delay > 0:
            on = ops.cast(ops.reshape(step, ()) >= self.quant_delay, w.dtype)
            w_int = self.folded_ste(u, offset, q_lo, on)[0]
        else:
            w_int = self.folded_ste(u, q_lo)[0]
        return w_int, ops.reshape(scale, (-1,))

    def activation_quant(self) -> ActivationQuant:
        """This (per-tensor) node's scale and zero point for an int8 QDQ graph."""
        p = self.quant_params()
        qmin, qmax = quant_range(self.num_bits, self.narrow_range)
        return ActivationQuant(
            scale=float(np.asarray(p["scale"]).reshape(-1)[0]),
            zero_point=int(np.asarray(p["zero_point"]).reshape(-1)[0]),
            qmin=qmin,
            qmax=qmax,
        )

    def weight_quant(self, weight: np.ndarray, *, folds_bn: bool, bias=None) -> WeightQuant:
        """The int8 codes of ``weight`` (the tensor this node quantizes) with the stored range.

        ``(codes - zero_point) * scale`` equals this node's fake-quantized ``weight``.
        """
        from .reference import quantize, to_int8

        axis = 0 if self.per_channel else None
        q_u, scale, zp = quantize(
            weight,
            self.min_value.asnumpy(),
            self.max_value.asnumpy(),
            self.num_bits,
            self.narrow_range,
            self.symmetric,
            axis=axis,
        )
        codes, zp8 = to_int8(q_u, zp)
        if axis is None:
            scale_out = np.asarray(np.reshape(scale, -1)[0], np.float32)
            zp_out = np.asarray(np.reshape(zp8, -1)[0], np.int8)
        else:
            scale_out = np.asarray(scale, np.float32).reshape(-1)
            zp_out = np.asarray(zp8, np.int8).reshape(-1)
        return WeightQuant(
            codes=codes,
            scale=scale_out,
            zero_point=zp_out,
            folds_bn=folds_bn,
            bias=None if bias is None else np.asarray(bias, np.float32),
        )

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
