"""Export a trained :class:`~yoloqat.core.detector.Detector` to ONNX (float or int8 QDQ)
and to MindSpore MINDIR.

``mindspore.export(..., file_format="ONNX")`` cannot convert this network (no ONNX mapping
for ResizeNearestNeighborV2), so the ONNX graph is written directly: the exporter walks the
architecture with one emitter per cell type (:mod:`yoloqat.deploy.emitters`). Its three
outputs are exactly the detector's eval-mode outputs ``[N, H, W, A, 5 + C]`` (decoded,
boxes normalised to the input), so ONNX Runtime and MindSpore predictions are
interchangeable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat import __version__
from yoloqat.core.atomic import atomic_path
from yoloqat.core.errors import RuntimeFailure, UsageError

#: Graph input and output names.
INPUT_NAME = "images"
OUTPUT_NAMES = ("pred_stride32", "pred_stride16", "pred_stride8")
ACTIVATION_DTYPES = ("uint8", "int8")


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise RuntimeFailure(
            "ONNX export needs the 'onnx' package", hint="pip install 'yoloqat[deploy]'"
        ) from None


def _check_args(network: Any, input_size: int, batch: int | None, opset: int) -> None:
    from yoloqat.core.detector import Detector, check_input_shape

    if not isinstance(network, Detector):
        raise UsageError(f"export_onnx needs a Detector, got {type(network).__name__}")
    check_input_shape(input_size, input_size)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UsageError(f"batch={batch!r} is not valid; expected an integer >= 1 or None")
    if not 13 <= int(opset) <= 21:
        raise UsageError(f"opset={opset!r} is not supported; expected 13 to 21 (default 17)")


def build_onnx_model(
    network: Any,
    *,
    input_size: int = 416,
    batch: int | None = 1,
    int8: bool = False,
    opset: int = 17,
    activation_dtype: str = "uint8",
) -> Any:
    """The ``onnx.ModelProto`` of ``network`` (see :func:`export_onnx`)."""
    _require_onnx()
    _check_args(network, input_size, batch, opset)
    from yoloqat.deploy import quant_emitters
    from yoloqat.deploy.emitters import decode_output, emit, register_builtin_emitters
    from yoloqat.deploy.graph import GraphBuilder

    if activation_dtype not in ACTIVATION_DTYPES:
        raise UsageError(f"activation_dtype={activation_dtype!r}; expected uint8 or int8")
    register_builtin_emitters()
    quantized = quant_emitters.is_quantized(network)
    if int8 and not quantized:
        raise UsageError(
            "int8 export needs a quantization-aware-trained (QAT) network; this one is float",
            hint="fine-tune it with the int8_qat quantizer first (configs/yolov3_darknet53_quant"
            ".yaml), or export without int8",
        )
    if quantized and not int8 and quant_emitters.any_fake_quant_enabled(network):
        raise UsageError(
            "this network is quantized (int8 QAT): export it with int8=True (--int8)",
            hint="or switch its fake quantization off (set_fake_quant(network, False)) to "
            "export the float graph of its weights",
        )
    if quantized:
        quant_emitters.register_quant_emitters()

    g = GraphBuilder(int8=int8, opset=opset, activation_dtype=activation_dtype)
    x = g.reserve(INPUT_NAME)
    g.shapes[x] = (3, input_size, input_size)
    c3, c4, c5 = emit(g, network.backbone, x, name="backbone")
    raws = emit(g, network.head, c3, c4, c5, name="head")
    outputs = []
    for raw, anchors, out_name, stride in zip(
        raws, network.scale_anchors, OUTPUT_NAMES, network.strides
    ):
        g.scope.append(f"decode{stride}")
        decode_output(g, raw, np.asarray(anchors), (input_size, input_size), out_name)
        g.scope.pop()
        grid = input_size // stride
        outputs.append(
            (out_name, (batch or "batch", grid, grid, len(anchors), 5 + network.num_classes))
        )
    meta = {
        "yoloqat_version": __version__,
        "input_size": str(input_size),
        "num_classes": str(network.num_classes),
        "anchors": json.dumps(np.asarray(network.anchors).tolist()),
        "anchor_masks": json.dumps([list(m) for m in network.anchor_masks]),
        "strides": json.dumps(list(network.strides)),
        "int8": str(bool(int8)).lower(),
    }
    return g.model(
        [(INPUT_NAME, (batch or "batch", 3, input_size, input_size))],
        outputs,
        graph_name="yolov3_int8_qdq" if int8 else "yolov3",
        doc="YOLOv3 detector exported by yoloqat; outputs [N, H, W, A, 5+C] decoded "
        "(bx, by, bw, bh normalised to the input, objectness, class probabilities)",
        metadata=meta,
    )


def export_onnx(
    network: Any,
    path: str | Path,
    *,
    input_size: int = 416,
    batch: int | None = 1,
    int8: bool = False,
    opset: int = 17,
    activation_dtype: str = "uint8",
) -> Path:
    """Write ``network`` (a Detector, eval mode) as an ONNX model; return the path.

    - ``input_size``: the square input side (a multiple of 32); the grid constants of the
      decode are baked in for it.
    - ``batch``: a fixed batch size, or ``None`` for a dynamic batch dimension.
    - ``int8``: the network must be QAT-quantized; writes the QDQ form (int8 per-channel
      weights, Quantize/DequantizeLinear pairs where the quantizer has fake-quants, scales
      from the trained observers). ``activation_dtype`` picks uint8 (default, ONNX
      Runtime's fast CPU path) or int8 activations.
    - ``opset``: the ONNX opset of the default domain (13-21).

    The graph is checked with ``onnx.checker`` before it is written.
    """
    import onnx

    model = build_onnx_model(
        network,
        input_size=input_size,
        batch=batch,
        int8=int8,
        opset=opset,
        activation_dtype=activation_dtype,
    )
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # a bug in an emitter: say so plainly
        raise RuntimeFailure(f"the exported ONNX graph is invalid: {exc}") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # a full disk leaves the previous model intact
        onnx.save(model, str(tmp))
    return path


def export_mindir(network: Any, path: str | Path, input_size: int = 416, *, batch: int = 1) -> Path:
    """Write ``network`` (eval mode) as MindSpore MINDIR for a ``[batch, 3, S, S]`` input.

    MindSpore appends ``.mindir`` to the file name when missing; the returned path is the
    file actually written.
    """
    import mindspore as ms

    from yoloqat.core.detector import check_input_shape

    check_input_shape(input_size, input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = path if path.suffix == ".mindir" else Path(f"{path}.mindir")
    network.set_train(False)
    dummy = ms.Tensor(np.zeros((batch, 3, input_size, input_size), dtype=np.float32))
    with atomic_path(written) as tmp:  # MindSpore appends ".mindir" to the stem it is given
        try:
            ms.export(network, dummy, file_name=str(tmp.with_suffix("")), file_format="MINDIR")
        except OSError:
            raise
        except Exception as exc:
            raise RuntimeFailure(
                f"MindSpore could not export MINDIR to {written}: {type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''}"
            ) from exc
        if not tmp.is_file():
            raise RuntimeFailure(f"MindSpore reported success but {written} was not written")
    return written
