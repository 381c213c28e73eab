"""Turn a traced float ONNX graph into int8 QDQ form from a quantizer's :class:`ExportPlan`.

- Each Conv whose weight initializer is named in ``plan.weights`` gets the plan's int8
  codes + ``DequantizeLinear`` (per output channel, axis 0). A plan weight with
  ``folds_bn`` replaces the Conv's bias and the BatchNormalization after it by the plan's
  folded bias (the quantizer folded the BN itself, so the codes are exactly its own). A weight
  quantized unfolded absorbs the BN too when it is per-channel symmetric: the fold then only
  rescales each channel (``scale * |s|``, codes times ``sign(s)``), which is exact; otherwise
  the BN stays a float operator.
- Each marker ``x * m`` (``m`` named in ``plan.activations``) becomes
  ``QuantizeLinear -> DequantizeLinear`` with the plan's scale and zero point (uint8, or int8
  with codes and zero points shifted by -128), with a Clip first when the code range is
  narrower than the dtype's.
- A nearest ``Resize`` of a dequantized tensor gets a Q/DQ pair with its input's parameters
  (exact: it only copies values on that grid), so int8 engines keep it in int8.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yoloqat.core.contracts.quantizer import ActivationQuant, ExportPlan, WeightQuant
from yoloqat.deploy.onnx_graph import Graph, absorb_bn, bn_params, following_bn, marker_muls


def _dequantized_weight(g: Graph, conv: Any, wq: WeightQuant) -> None:
    hint = conv.input[1]
    codes = g.add_init(np.asarray(wq.codes, np.int8), f"{hint}_int8")
    scale = g.add_init(np.asarray(wq.scale, np.float32), f"{hint}_scale")
    zp = g.add_init(np.asarray(wq.zero_point, np.int8), f"{hint}_zero_point")
    attrs = {"axis": 0} if np.ndim(wq.scale) else {}
    conv.input[1] = g.node("DequantizeLinear", [codes, scale, zp], f"{hint}_dq", **attrs)


def _fold_unfolded(g: Graph, conv: Any, bn: Any, wq: WeightQuant) -> WeightQuant | None:
    """Absorb ``bn`` into a per-channel symmetric unfolded weight (None if not exact)."""
    zp = np.asarray(wq.zero_point)
    if np.ndim(wq.scale) != 1 or np.any(zp != 0):
        return None
    gamma, beta, mean, var, eps = bn_params(g, bn)  # type: ignore[misc]
    s = gamma / np.sqrt(var + eps)
    sign = np.where(s < 0, -1, 1).astype(np.int16)
    codes = wq.codes.astype(np.int16) * sign.reshape(-1, *([1] * (wq.codes.ndim - 1)))
    if codes.max() > 127:  # -128 * -1 does not fit: keep the BN as it is
        return None
    bias = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    b = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
    return WeightQuant(
        codes=codes.astype(np.int8),
        scale=(np.asarray(wq.scale, np.float64) * np.abs(s)).astype(np.float32),
        zero_point=zp.astype(np.int8),
        folds_bn=True,
        bias=((b - mean) * s + beta).astype(np.float32),
    )


def quantize_weights(g: Graph, plan: ExportPlan) -> list[str]:
    """Write the plan's int8 weights; return the weight names of Convs left float."""
    float_convs = []
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        wq = plan.weights.get(conv.input[1])
        if wq is None:
            float_convs.append(conv.input[1])
            continue
        bn = following_bn(g, conv)
        if wq.folds_bn:
            if wq.bias is None:
                raise ValueError(f"weight {conv.input[1]} folds a BN but has no folded bias")
            if bn is not None:
                absorb_bn(g, conv, bn, np.asarray(wq.bias, np.float64))
            else:
                bias = g.add_init(np.asarray(wq.bias, np.float32), f"{conv.input[1]}_bias")
                conv.input[2:] = [bias]
        elif bn is not None:
            folded = _fold_unfolded(g, conv, bn, wq)
            if folded is not None:
                absorb_bn(g, conv, bn, np.asarray(folded.bias, np.float64))
                wq = folded
        _dequantized_weight(g, conv, wq)
    g.reindex()
    return float_convs


def _qdq(g: Graph, x: str, aq: ActivationQuant, hint: str, dtype: str) -> str:
    shift = 128 if dtype == "int8" else 0
    np_dtype = np.int8 if dtype == "int8" else np.uint8
    scale = g.add_init(np.float32(aq.scale), f"{hint}_scale")
    zp = g.add_init(np.array(aq.zero_point - shift, dtype=np_dtype), f"{hint}_zero_point")
    if (aq.qmin, aq.qmax) != (0, 255):  # narrow range / fewer bits: clamp to the nudged range
        lo = g.add_init(np.float32((aq.qmin - aq.zero_point) * aq.scale), f"{hint}_lo")
        hi = g.add_init(np.float32((aq.qmax - aq.zero_point) * aq.scale), f"{hint}_hi")
        x = g.node("Clip", [x, lo, hi], f"{hint}_clip")
    q = g.node("QuantizeLinear", [x, scale, zp], f"{hint}_q")
    return g.node("DequantizeLinear", [q, scale, zp], f"{hint}_dq")


def quantize_activations(g: Graph, plan: ExportPlan, dtype: str = "uint8") -> int:
    """Replace each marker multiplication by Q/DQ; add Q/DQ after nearest Resizes."""
    pairs = marker_muls(g, set(plan.activations))
    for node, name in pairs:
        x = node.input[0] if node.input[1] == name else node.input[1]
        out = node.output[0]
        hint = name[: -len(".export_marker")] if name.endswith(".export_marker") else name
        g.remove(node)
        dq = _qdq(g, x, plan.activations[name], hint, dtype)
        g.rewire(out, dq)
    g.reindex()
    for resize in [n for n in g.graph.node if n.op_type == "Resize"]:
        src = g.producer.get(resize.input[0])
        if src is None or src.op_type != "DequantizeLinear":
            continue
        out = resize.output[0]
        resize.output[0] = g.unique(f"{out}_float")  # the Q reads it; readers of out get DQ
        q = g.node("QuantizeLinear", [resize.output[0], src.input[1], src.input[2]], f"{out}_q")
        g.rewire(out, g.node("DequantizeLinear", [q, src.input[1], src.input[2]], f"{out}_dq"))
    g.reindex()
    return len(pairs)
