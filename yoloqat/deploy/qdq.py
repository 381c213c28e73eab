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
- A nearest ``Resize``, a ``MaxPool`` or a ``Slice`` of a (per-tensor) dequantized tensor
  gets a Q/DQ pair with its input's parameters (exact: it only copies or selects values on
  that grid), so int8 engines keep it, and the convs after it, in int8.
- A Conv reading a ``Concat`` of dequantized tensors with different scales (the head's
  route layers) is split into one Conv per concatenated input, with the matching slice of
  the int8 weight, summed by ``Add`` (:func:`split_concat_convs`). The sum is exact, and each
  part has a single-scale int8 input: OpenVINO runs every part as an int8 convolution (the
  Concat's per-channel scales would make it fall back to a float convolution).
- Optionally the image input itself gets a Q/DQ pair (:func:`quantize_input`), as the seed's
  int8 export did (``mean=0, std_dev=48.106``: an int8 grid over the ImageNet-normalised
  input), so the first Conv runs in int8 too. The fake-quant network sees float images, so
  this is the one step of the export that is not exact (at most half a grid step,
  ``0.5 / std_dev``, per input value); it is off unless asked for.
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
    params = bn_params(g, bn)
    if params is None:
        return None
    gamma, beta, mean, var, eps = params
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
    """Write the plan's int8 weights; return the weight names of Convs left float.

    A weight used by several Conv nodes (a conv shared by several levels) is written once:
    its nodes read the same int8 codes through one DequantizeLinear.
    """
    float_convs = []
    written: dict[str, str] = {}  # float weight name -> its DequantizeLinear output
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        name = conv.input[1]
        wq = plan.weights.get(name)
        if wq is None:
            float_convs.append(name)
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
        if wq is plan.weights[name] and name in written:  # the same codes as before
            conv.input[1] = written[name]
            continue
        _dequantized_weight(g, conv, wq)
        if wq is plan.weights[name]:
            written[name] = conv.input[1]
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


#: The seed's input quantization (``export(..., quant_mode='QUANT', mean=0., std_dev=48.106)``):
#: int8 codes ``round(x * 48.106)``; 127 / 48.106 = 2.640 is the largest ImageNet-normalised
#: pixel value.
SEED_INPUT_QUANT = (0.0, 48.106)


def quantize_input(g: Graph, mean: float, std_dev: float, dtype: str = "uint8") -> str:
    """Q/DQ on the graph input: int8 codes ``round(x * std_dev + mean)`` (the seed's
    ``mean``/``std_dev`` convention), i.e. scale ``1 / std_dev`` and int8 zero point
    ``mean`` (``mean + 128`` as uint8). Returns the dequantized tensor's name."""
    if not std_dev > 0 or not -128 <= mean <= 127 or mean != round(mean):
        raise ValueError(f"input quantization needs std_dev > 0 and an int8 mean, got "
                         f"mean={mean}, std_dev={std_dev}")  # fmt: skip
    name = g.graph.input[0].name
    readers = list(g.consumers.get(name, []))
    zp = np.array(mean, np.int8) if dtype == "int8" else np.array(mean + 128, np.uint8)
    scale = g.add_init(np.float32(1.0 / std_dev), "input_scale")
    zero = g.add_init(zp, "input_zero_point")
    q = g.node("QuantizeLinear", [name, scale, zero], "input_q")
    dq = g.node("DequantizeLinear", [q, scale, zero], "input_dq")
    for node in readers:
        for i, inp in enumerate(node.input):
            if inp == name:
                node.input[i] = dq
    g.reindex()
    return dq


#: Ops that only move or select the values of their input: applied to a per-tensor
#: dequantized tensor, their output lies on the same int8 grid, so a Q/DQ pair with the
#: input's parameters after them is exact, and it lets int8 engines keep what follows them
#: (a Conv over a Concat of them, the next pool) in int8.
GRID_PRESERVING = ("Resize", "MaxPool", "Slice")


def quantize_activations(g: Graph, plan: ExportPlan, dtype: str = "uint8") -> int:
    """Replace each marker multiplication by Q/DQ; add Q/DQ after nearest Resizes, max
    pools and slices of dequantized tensors (:data:`GRID_PRESERVING`)."""
    pairs = marker_muls(g, set(plan.activations))
    for node, name in pairs:
        x = node.input[0] if node.input[1] == name else node.input[1]
        out = node.output[0]
        hint = name[: -len(".export_marker")] if name.endswith(".export_marker") else name
        g.remove(node)
        dq = _qdq(g, x, plan.activations[name], hint, dtype)
        g.rewire(out, dq)
    g.reindex()
    for op in [n for n in g.graph.node if n.op_type in GRID_PRESERVING]:  # graph order
        src = g.producer.get(op.input[0])
        if src is None or src.op_type != "DequantizeLinear":
            continue
        src_scale = g.const(src.input[1])
        if src_scale is None or src_scale.ndim:  # per-tensor constant scales only
            continue
        out = op.output[0]
        op.output[0] = g.unique(f"{out}_float")  # the Q reads it; readers of out get DQ
        q = g.node("QuantizeLinear", [op.output[0], src.input[1], src.input[2]], f"{out}_q")
        g.rewire(out, g.node("DequantizeLinear", [q, src.input[1], src.input[2]], f"{out}_dq"))
    g.reindex()
    return len(pairs)


def _channels(model: Any) -> dict[str, int]:
    """Channel counts (dim 1) of the graph's tensors, from ONNX shape inference."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    out = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if len(dims) > 1 and dims[1].HasField("dim_value"):
            out[vi.name] = dims[1].dim_value
    return out


def _concat_parts(g: Graph, conv: Any) -> list[str] | None:
    """The inputs of the Concat (channel axis) feeding ``conv``, if all are per-tensor DQs."""
    src = g.producer.get(conv.input[0])
    if src is None or src.op_type != "Concat":
        return None
    axis = next((a.i for a in src.attribute if a.name == "axis"), None)
    if axis not in (1, -3):
        return None
    for part in src.input:
        dq = g.producer.get(part)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        dq_scale = g.const(dq.input[1])
        if dq_scale is None or dq_scale.ndim != 0:
            return None
    return list(src.input)


def split_concat_convs(g: Graph) -> int:
    """Split each int8 Conv over a Concat of dequantized tensors into per-input Convs + Add.

    ``conv(concat(a, b), W) + bias == conv(a, W[:, :ca]) + conv(b, W[:, ca:]) + bias``; the
    weight slices keep the per-output-channel scales. Returns the number of Convs split.
    """
    from onnx import helper

    g.sort()  # shape inference below follows the nodes in order; Q/DQ pairs were appended
    channels: dict[str, int] | None = None
    split = 0
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        parts = _concat_parts(g, conv)
        wdq = g.producer.get(conv.input[1])
        attrs = {a.name: helper.get_attribute_value(a) for a in conv.attribute}
        if parts is None or wdq is None or wdq.op_type != "DequantizeLinear":
            continue
        codes = g.const(wdq.input[0])
        if codes is None or attrs.get("group", 1) != 1:
            continue
        channels = channels if channels is not None else _channels(g.model)
        sizes = [channels.get(p) for p in parts]
        if sizes.count(None) == 1:  # e.g. a Resize whose sizes shape inference cannot follow
            sizes[sizes.index(None)] = codes.shape[1] - sum(n for n in sizes if n is not None)
        known = [n for n in sizes if n is not None]
        if len(known) != len(sizes) or min(known) < 1 or sum(known) != codes.shape[1]:
            continue
        hint = conv.input[1]
        dq_attrs = {a.name: helper.get_attribute_value(a) for a in wdq.attribute}
        outs, start = [], 0
        for i, (part, size) in enumerate(zip(parts, known)):
            part_codes = codes[:, start : start + size]
            w = g.add_init(part_codes, f"{wdq.input[0]}_part{i}")
            start += size
            dq = g.node("DequantizeLinear", [w, *wdq.input[1:]], f"{hint}_part{i}_dq", **dq_attrs)
            inputs = [part, dq, *(conv.input[2:3] if i == 0 else [])]
            outs.append(g.node("Conv", inputs, f"{conv.output[0]}_part{i}", **attrs))
        total = outs[0]
        for i, other in enumerate(outs[1:], 1):
            total = g.node("Add", [total, other], f"{conv.output[0]}_sum{i}")
        g.remove(conv)
        g.rewire(conv.output[0], total)
        split += 1
    if split:
        g.sort()
    return split
