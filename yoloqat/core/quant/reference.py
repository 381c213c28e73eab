"""NumPy reference of the int8 fake-quant arithmetic and of the conv + BN fold.

This module is the single definition of the numbers: the MindSpore cells in
:mod:`.fake_quant` perform the same float32 operations in the same order, the tests compare
the two, and an exporter uses these functions to turn a trained quantized network into int8
weights, scales and zero points.

Arithmetic (seed docs/seed.md §7.2 item 6, the TensorFlow/MindSpore "nudged" fake quant):

1. quant range ``[qmin, qmax] = [0, 2**bits - 1]`` (``[1, 2**bits - 1]`` with narrow range);
2. symmetric mode: ``min = -max(|min|, |max|)``, ``max = max(|min|, |max|)``;
3. ``min`` is clamped to ``<= 0`` and ``max`` to ``>= 0`` (so 0.0 is exactly representable);
4. ``scale = (max - min) / (qmax - qmin)`` (at least :data:`MIN_SCALE`);
5. zero point ``zp = floor(clamp(qmin - min / scale, qmin, qmax) + 0.5)``, an integer in range
   (symmetric ranges: the exact value, see :func:`symmetric_zero_point`);
6. nudged range ``[lo * scale, hi * scale]`` with ``lo = qmin - zp``, ``hi = qmax - zp``;
7. in quant units counted from the nudged min, ``u = x * (1 / scale) - lo``; clamp ``u`` to
   ``[0, qmax - qmin]`` (i.e. ``x`` to the nudged range) and round: ``r = floor(u + 0.5)``;
8. the fake-quantized value is ``(r + lo) * scale``.

Steps 7-8 are TensorFlow's ``FakeQuantWithMinMaxVars`` (multiply by the inverse scale, add
0.5, floor), written as ``t = clamp(x * inv_scale + (0.5 - lo), 0.5, qmax - qmin + 0.5)``,
``r = floor(t)``: the clamp bounds are then constants, which is much faster in MindSpore than
clamping to tensor bounds. ``r + qmin`` is the integer code and ``r + lo = code - zp``, so the
result is exactly the ONNX ``DequantizeLinear(QuantizeLinear(x))`` value
``(code - zp) * scale`` (ONNX rounds ties to even where we round them up).
"""

from __future__ import annotations

import numpy as np

#: Smallest scale used, so that an all-zero tensor (``min == max == 0``) stays finite.
MIN_SCALE = 1e-12


def quant_range(num_bits: int = 8, narrow_range: bool = False) -> tuple[int, int]:
    """Return ``(qmin, qmax)``: ``(0, 2**bits - 1)``, or ``(1, 2**bits - 1)`` if narrow."""
    return (1 if narrow_range else 0), 2**num_bits - 1


def symmetric_zero_point(qmin: int, qmax: int) -> int:
    """Zero point of a symmetric range: ``floor(qmin + (qmax - qmin) / 2 + 0.5)`` exactly.

    128 for 8 bits, narrow or not (0 as int8). Evaluating ``qmin - min / scale`` in float32
    gives 127.49999 or 127.50001 depending on the range, i.e. 127 or 128 at random; the
    exact value keeps symmetric weights at int8 zero point 0, as int8 kernels expect.
    """
    return (qmin + qmax + 1) // 2


def _f32(value: object) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def nudge(
    min_value: object,
    max_value: object,
    num_bits: int = 8,
    narrow_range: bool = False,
    symmetric: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(scale, zero_point, lo, hi)`` for an observed range (arrays, float32).

    ``zero_point`` is an integer in ``[qmin, qmax]`` (stored as float32); ``lo = qmin - zp``
    and ``hi = qmax - zp`` bound the integer ``q`` of :func:`fake_quant`, so the nudged range
    is ``[lo * scale, hi * scale]``. Works element-wise, so per-channel ranges are arrays.
    """
    qmin, qmax = quant_range(num_bits, narrow_range)
    lo_in, hi_in = _f32(min_value), _f32(max_value)
    if symmetric:
        hi_in = np.maximum(-lo_in, hi_in)
        lo_in = -hi_in
    lo_in = np.minimum(lo_in, np.float32(0.0))
    hi_in = np.maximum(hi_in, np.float32(0.0))
    scale = np.maximum((hi_in - lo_in) / np.float32(qmax - qmin), np.float32(MIN_SCALE))
    if symmetric:
        zero_point = np.full_like(scale, symmetric_zero_point(qmin, qmax))
    else:
        zp_from_min = np.float32(qmin) - lo_in / scale
        zp_clamped = np.clip(zp_from_min, np.float32(qmin), np.float32(qmax))
        zero_point = np.floor(zp_clamped + np.float32(0.5))
    lo = np.float32(qmin) - zero_point
    hi = np.float32(qmax) - zero_point
    return scale.astype(np.float32), zero_point.astype(np.float32), lo, hi


def _channel_shape(values: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    if axis is None or values.ndim == 0 or values.size == 1:
        return values.reshape(())
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def quantize(
    x: object,
    min_value: object,
    max_value: object,
    num_bits: int = 8,
    narrow_range: bool = False,
    symmetric: bool = False,
    axis: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantize ``x`` to integers: return ``(q_u, scale, zero_point)``.

    ``q_u`` (int32) lies in ``[qmin, qmax]``; the dequantized value is
    ``(q_u - zero_point) * scale``. ``axis`` is the channel axis of per-channel ranges (``None``
    for one range for the whole tensor).
    """
    x = _f32(x)
    scale, zero_point, lo, hi = nudge(min_value, max_value, num_bits, narrow_range, symmetric)
    r = _round_clamp(x, scale, lo, hi, axis)
    return (r + quant_range(num_bits, narrow_range)[0]).astype(np.int32), scale, zero_point


def _round_clamp(x: np.ndarray, scale, lo, hi, axis: int | None) -> np.ndarray:
    """``r = floor(clamp(x * (1 / scale) + (0.5 - lo), 0.5, hi - lo + 0.5))`` (steps 7)."""
    s, lo_b, hi_b = (_channel_shape(v, x.ndim, axis) for v in (scale, lo, hi))
    half = np.float32(0.5)
    inv = np.float32(1.0) / s
    t = np.clip(x * inv + (half - lo_b), half, hi_b - lo_b + half)
    return np.floor(t)


def fake_quant(
    x: object,
    min_value: object,
    max_value: object,
    num_bits: int = 8,
    narrow_range: bool = False,
    symmetric: bool = False,
    axis: int | None = None,
) -> np.ndarray:
    """Fake-quantize ``x`` (quantize then dequantize), float32, same shape as ``x``."""
    x = _f32(x)
    scale, _, lo, hi = nudge(min_value, max_value, num_bits, narrow_range, symmetric)
    r = _round_clamp(x, scale, lo, hi, axis)
    s, lo_b = (_channel_shape(v, x.ndim, axis) for v in (scale, lo))
    return ((r + lo_b) * s).astype(np.float32)


def to_int8(q_u: np.ndarray, zero_point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shift 8-bit unsigned codes and zero points to the signed int8 range (``- 128``).

    A symmetric range has zero point 128, i.e. 0 as int8, which is what int8 weight
    tensors of a QDQ graph use.
    """
    return (np.asarray(q_u) - 128).astype(np.int8), (np.asarray(zero_point) - 128).astype(np.int8)


def observe_min_max(x: object, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Batch min and max of ``x`` (per channel along ``axis``), as the observers compute them."""
    x = _f32(x)
    if axis is None:
        return x.min().reshape(1), x.max().reshape(1)
    others = tuple(i for i in range(x.ndim) if i != axis)
    return x.min(axis=others), x.max(axis=others)


def ema(old: object, new: object, decay: float) -> np.ndarray:
    """Exponential moving average ``decay * old + (1 - decay) * new`` in float32."""
    return (np.float32(decay) * _f32(old) + np.float32(1.0 - decay) * _f32(new)).astype(np.float32)


def bn_scale(gamma: object, variance: object, eps: float = 1e-5) -> np.ndarray:
    """Per-channel fold factor ``gamma / sqrt(variance + eps)``."""
    return (_f32(gamma) / np.sqrt(_f32(variance) + np.float32(eps))).astype(np.float32)


def fold_conv_bn(
    weight: object,
    gamma: object,
    beta: object,
    mean: object,
    variance: object,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold a BatchNorm into the preceding bias-free conv: return ``(weight, bias)``.

    ``weight * s`` (per output channel) and ``beta - mean * s`` with
    ``s = gamma / sqrt(variance + eps)``; conv with these equals conv followed by BN in
    inference mode.
    """
    s = bn_scale(gamma, variance, eps)
    w32 = _f32(weight)
    w = w32 * s.reshape(-1, *([1] * (w32.ndim - 1)))
    return w.astype(np.float32), (_f32(beta) - _f32(mean) * s).astype(np.float32)
