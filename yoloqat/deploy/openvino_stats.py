"""How OpenVINO executes an exported model: the precision of each layer it runs.

``int8_op_stats("int8.onnx")`` compiles the model for CPU as the ``openvino`` runtime does
(latency hint, f32 inference precision, batch 1) and reads the runtime model's per-layer
``rt_info`` (``layerType``, ``runtimePrecision``, ``execType``): how many convolutions run in
int8 (``u8``/``i8``) and which do not.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from yoloqat.core.device import uncapped_isa
from yoloqat.core.errors import CheckpointError, RuntimeFailure

INT8_PRECISIONS = ("u8", "i8")
CONV_TYPES = ("Convolution", "GroupConvolution", "Deconvolution")


def _rt(info: Any, key: str) -> str:
    return info[key].astype(str) if key in info else ""


def int8_op_stats(path: str | Path, *, threads: int | None = None) -> dict[str, Any]:
    """Per-precision layer counts of ``path`` compiled by OpenVINO for CPU.

    Returns ``{"convolutions": N, "int8_convolutions": K, "float_convolutions": [names of
    the convolutions not in u8/i8, with their precision], "layers": {layerType: {precision:
    count}}}``.
    """
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeFailure(
            "running with OpenVINO needs the 'openvino' package",
            hint='pip install "yoloqat[openvino]"',
        ) from None
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model not found: {path}")
    core = ov.Core()
    model = core.read_model(str(path))
    shape = model.inputs[0].get_partial_shape()
    if shape.is_dynamic:
        dims = [d.get_length() if d.is_static else 1 for d in shape]
        model.reshape({0: dims})
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    with uncapped_isa():  # as the openvino runtime compiles: with the CPU's full ISA
        runtime = core.compile_model(model, "CPU", config).get_runtime_model()
    layers: dict[str, Counter] = {}
    convs, int8, floats = 0, 0, []
    for op in runtime.get_ordered_ops():
        info = op.get_rt_info()
        kind, precision = _rt(info, "layerType"), _rt(info, "runtimePrecision")
        layers.setdefault(kind, Counter())[precision] += 1
        if kind in CONV_TYPES:
            convs += 1
            if precision in INT8_PRECISIONS:
                int8 += 1
            else:
                floats.append(f"{op.get_friendly_name()} ({precision}, {_rt(info, 'execType')})")
    return {
        "convolutions": convs,
        "int8_convolutions": int8,
        "float_convolutions": floats,
        "layers": {k: dict(v) for k, v in sorted(layers.items())},
    }
