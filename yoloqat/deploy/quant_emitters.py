"""Int8 QDQ emitters for the cells of the bundled ``int8_qat`` quantizer.

The QDQ graph reproduces the fake-quant network's eval-mode arithmetic with ONNX operators:

- a conv's weight is an int8 initializer (per output channel, axis 0; symmetric weights have
  zero point 0) followed by ``DequantizeLinear``; the codes and scales are computed with the
  quantizer's own NumPy reference (:mod:`yoloqat.plugins.int8_qat.reference`) from the
  BN-folded weight and the stored weight range, so ``DequantizeLinear`` yields exactly the
  fake-quantized weight MindSpore uses;
- every activation fake quant becomes ``QuantizeLinear -> DequantizeLinear`` with the
  scale / zero point nudged from the trained observer's ``min_value`` / ``max_value``:
  after ReLU, before and after LeakyReLU, after residual adds (uint8 activations by default;
  ``activation_dtype='int8'`` shifts codes and zero points by -128);
- biases are float (``beta - mean * gamma / sqrt(var + eps)`` for BN-folded convs);
- the network input, the upsample / concat and the head outputs stay float, as in the
  quantized network. Resize output gets a Q/DQ pair with its input's parameters (exact:
  nearest resize only copies values already on that grid) so ONNX Runtime can keep it int8.

ONNX ``QuantizeLinear`` rounds ties to even where the fake quant rounds them up; values
exactly halfway between two codes are rare, so the two graphs agree but for rare one-step
differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yoloqat.deploy.emitters import activation_node, conv_node, register_emitter
from yoloqat.deploy.graph import GraphBuilder


def _quant_layer_type() -> type | None:
    try:
        from yoloqat.plugins.int8_qat.layers import QuantLayer
    except ImportError:  # the bundled quantizer is not importable
        return None
    return QuantLayer


def is_quantized(network: Any) -> bool:
    """Whether ``network`` holds cells of the ``int8_qat`` quantizer."""
    base = _quant_layer_type()
    if base is None:
        return False
    return any(isinstance(cell, base) for _, cell in network.cells_and_names())


def any_fake_quant_enabled(network: Any) -> bool:
    """Whether any fake-quant node of a quantized ``network`` is switched on."""
    base = _quant_layer_type()
    if base is None:
        return False
    return any(
        getattr(fq, "enabled", True)
        for _, cell in network.cells_and_names()
        if isinstance(cell, base)
        for fq in cell.fake_quants().values()
    )


# -- quantization parameters -----------------------------------------------------------------
def activation_qparams(fq: Any, dtype: str = "uint8") -> tuple[np.ndarray, np.ndarray, tuple]:
    """``(scale, zero_point, (qmin, qmax))`` of a per-tensor activation fake quant.

    ``scale`` is a float32 scalar, ``zero_point`` a uint8 (or int8) scalar, and
    ``(qmin, qmax)`` the code range of the fake quant in the same dtype's terms.
    """
    from yoloqat.plugins.int8_qat.reference import nudge, quant_range

    lo, hi = fq.min_value.asnumpy(), fq.max_value.asnumpy()
    scale, zp, _, _ = nudge(lo, hi, fq.num_bits, fq.narrow_range, fq.symmetric)
    qmin, qmax = quant_range(fq.num_bits, fq.narrow_range)
    zp_i = int(np.asarray(zp).reshape(-1)[0])
    shift = 128 if dtype == "int8" else 0
    np_dtype = np.int8 if dtype == "int8" else np.uint8
    return (
        np.float32(np.asarray(scale).reshape(-1)[0]),
        np.array(zp_i - shift, dtype=np_dtype),
        (qmin - shift, qmax - shift),
    )


def weight_qparams(fq: Any, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(int8 codes, float32 scales, int8 zero points)`` of a conv weight fake quant.

    Codes and scales come from the quantizer's reference arithmetic and the stored weight
    range, so ``(codes - zero_point) * scale`` equals the fake-quantized weight.
    """
    from yoloqat.plugins.int8_qat.reference import quantize, to_int8

    axis = 0 if fq.per_channel else None
    q_u, scale, zp = quantize(
        weight,
        fq.min_value.asnumpy(),
        fq.max_value.asnumpy(),
        fq.num_bits,
        fq.narrow_range,
        fq.symmetric,
        axis=axis,
    )
    codes, zp8 = to_int8(q_u, zp)
    if axis is None:
        return codes, np.float32(np.reshape(scale, -1)[0]), np.int8(np.reshape(zp8, -1)[0])
    return codes, np.asarray(scale, np.float32).reshape(-1), np.asarray(zp8).reshape(-1)


# -- graph pieces ----------------------------------------------------------------------------
def qdq(g: GraphBuilder, x: str, fq: Any, hint: str) -> str:
    """``QuantizeLinear -> DequantizeLinear`` of ``x`` with ``fq``'s trained parameters."""
    if not getattr(fq, "enabled", True):
        return x
    dtype = g.options.get("activation_dtype", "uint8")
    scale, zp, (qmin, qmax) = activation_qparams(fq, dtype)
    shape = g.shapes.get(x)
    s = g.const(scale, f"{hint}_scale")
    z = g.initializer(zp, f"{hint}_zero_point")
    lim = (-128, 127) if dtype == "int8" else (0, 255)
    if (qmin, qmax) != lim:  # narrow range / fewer bits: clamp to the nudged range first
        lo = np.float32((qmin - int(zp)) * scale)
        hi = np.float32((qmax - int(zp)) * scale)
        x = g.node(
            "Clip", [x, g.const(lo, f"{hint}_lo"), g.const(hi, f"{hint}_hi")], f"{hint}_clip"
        )
    q = g.node("QuantizeLinear", [x, s, z], f"{hint}_q", shape=shape)
    out = g.node("DequantizeLinear", [q, s, z], f"{hint}_dq", shape=shape)
    g.qparams[out] = (s, z)
    return out


def quant_weight(g: GraphBuilder, fq: Any, weight: np.ndarray) -> str:
    """The conv weight as int8 codes + ``DequantizeLinear`` (or float if the node is off)."""
    if not getattr(fq, "enabled", True):
        return g.initializer(np.asarray(weight, np.float32), "weight")
    codes, scale, zp = weight_qparams(fq, weight)
    w = g.initializer(codes, "weight_int8")
    s = g.initializer(np.asarray(scale, np.float32), "weight_scale")
    z = g.initializer(np.asarray(zp, np.int8), "weight_zero_point")
    attrs = {"axis": 0} if np.ndim(scale) else {}
    return g.node("DequantizeLinear", [w, s, z], "weight_dq", **attrs)


def emit_quant_conv_bn_act(g: GraphBuilder, cell: Any, x: str) -> str:
    """QuantConvBnAct: int8 folded weight, float bias, activation fake quants."""
    weight, bias = cell.folded_weight_bias()
    w = quant_weight(g, cell.weight_quant, weight)
    b = g.initializer(np.asarray(bias, np.float32), "bias")
    y = conv_node(g, x, cell.conv, w, b, weight.shape[0])
    if cell.activation == "leaky":
        y = qdq(g, y, cell.act_quant_before, "pre_act")
        y = activation_node(g, y, "leaky", cell.act.alpha)
    elif cell.activation == "relu":
        y = activation_node(g, y, "relu", 0.0)
    return qdq(g, y, cell.act_quant, "act")


def emit_quant_output_conv(g: GraphBuilder, cell: Any, x: str) -> str:
    """QuantOutputConv: int8 weight, float bias, float output."""
    weight, bias = cell.folded_weight_bias()
    w = quant_weight(g, cell.weight_quant, weight)
    b = g.initializer(np.asarray(bias, np.float32), "bias")
    return conv_node(g, x, primitive_conv_spec(cell.conv2d), w, b, weight.shape[0])


def primitive_conv_spec(prim: Any) -> Any:
    """The geometry of a ``Conv2D`` primitive in ``nn.Conv2d`` attribute terms."""
    from types import SimpleNamespace

    attrs = prim.attrs
    pad = tuple(int(v) for v in attrs.get("pad", (0, 0, 0, 0)))
    if len(set(pad)) != 1:
        from yoloqat.core.errors import PluginError

        raise PluginError(f"conv padding {pad} (per side) is not supported by the exporter")
    return SimpleNamespace(
        kernel_size=tuple(attrs["kernel_size"]),
        stride=tuple(attrs["stride"])[-2:],
        dilation=tuple(attrs["dilation"])[-2:],
        pad_mode=str(attrs["pad_mode"]).lower(),
        padding=pad[0],
        group=int(attrs.get("group", 1)),
    )


def emit_quant_add(g: GraphBuilder, cell: Any, x: str, y: str) -> str:
    """QuantAdd: Add then the fake quant."""
    return qdq(g, g.node("Add", [x, y], "add", shape=g.shapes.get(x)), cell.act_quant, "act")


def register_quant_emitters() -> None:
    """Add the ``int8_qat`` cells to the emitter table (idempotent)."""
    from yoloqat.deploy.emitters import EMITTERS
    from yoloqat.plugins.int8_qat.layers import QuantAdd, QuantConvBnAct, QuantOutputConv

    for cls, fn in (
        (QuantConvBnAct, emit_quant_conv_bn_act),
        (QuantOutputConv, emit_quant_output_conv),
        (QuantAdd, emit_quant_add),
    ):
        if cls not in EMITTERS:
            register_emitter(cls, fn)
