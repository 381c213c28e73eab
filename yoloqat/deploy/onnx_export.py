"""Export a trained detector to ONNX (float or int8 QDQ) and to MindSpore MINDIR.

The ONNX graph is traced by MindSpore's own exporter (``mindspore.export(...,
file_format="ONNX")``), so any network built from standard MindSpore cells and ops exports
with no per-cell code from its author; :mod:`yoloqat.deploy.onnx_graph` then folds BNs,
fuses LeakyReLU and renames the inputs and outputs. For int8, the network's quantizer (the
quantizer contract, :mod:`yoloqat.core.contracts.quantizer`) puts it in export form and
hands over an :class:`~yoloqat.core.contracts.quantizer.ExportPlan`, which
:mod:`yoloqat.deploy.qdq` writes as int8 weights and Q/DQ pairs. The two outputs are
exactly the detector's eval-mode outputs, whatever its family: ``boxes`` ``[N, M, 4]``
(``cx, cy, w, h`` normalised to the input) and ``scores`` ``[N, M, C]``, computed by the
head family's float decode, which is part of the graph and never quantized (an int8 tensor
holding both pixel boxes and 0-1 scores would round the scores away). ONNX Runtime and
MindSpore predictions are interchangeable.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.atomic import atomic_path
from yoloqat.core.contracts.runtime import OUTPUTS
from yoloqat.core.errors import PluginError, RuntimeFailure, UsageError
from yoloqat.core.version import __version__
from yoloqat.deploy.nms import NmsSettings, decode_metadata

#: Graph input and output names.
INPUT_NAME = "images"
OUTPUT_NAMES = OUTPUTS
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
    check_input_shape(input_size, input_size, network.input_multiple)
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise UsageError(f"batch={batch!r} is not valid; expected an integer >= 1 or None")
    if not 13 <= int(opset) <= 21:
        raise UsageError(f"opset={opset!r} is not supported; expected 13 to 21 (default 17)")


_UNSUPPORTED = re.compile(r"Can not find key (\w+) in convert map")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


#: MindSpore 2.10's warning on every ``mindspore.export(file_format="ONNX")``. Its
#: replacement, ``mindspore.onnx.export``, cannot export our networks yet (it fails on
#: BatchNorm: "i: 6 out of range: 6, cnode: ... PrimFunc_BatchNorm"), so the old call stays
#: and this one warning is dropped, nothing else MindSpore logs.
ONNX_DEPRECATION = "mindspore.export(file_format='ONNX') will be deleted"


class _DropRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@contextlib.contextmanager
def _quiet_deprecation() -> Any:
    """MindSpore's logger without :data:`ONNX_DEPRECATION` inside the block."""
    from mindspore import log

    logger = log._get_logger()
    drop = _DropRecord(ONNX_DEPRECATION)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def trace_onnx(network: Any, inputs: list[np.ndarray]) -> Any:
    """``mindspore.export`` of ``network`` (eval mode) on ``inputs``, loaded as a ModelProto.

    A cell MindSpore cannot convert is reported by its path and the op (found by exporting
    the failing sub-cells on the inputs they receive).
    """
    import mindspore as ms
    import onnx

    from yoloqat.core.layers import fresh_cell

    with tempfile.TemporaryDirectory(prefix="yoloqat-onnx-") as tmp:
        stem = str(Path(tmp) / "traced")
        try:
            with fresh_cell(network) as cell, _quiet_deprecation():
                ms.export(cell, *[ms.Tensor(x) for x in inputs], file_name=stem, file_format="ONNX")
        except Exception as exc:
            match = _UNSUPPORTED.search(str(exc))
            if match is None:
                raise RuntimeFailure(
                    f"MindSpore could not trace the network for ONNX: {_first_line(exc)}"
                ) from exc
            from yoloqat.deploy.locate import locate_unsupported

            where = locate_unsupported(network, inputs, match.group(1))
            raise PluginError(
                f"cannot export to ONNX: MindSpore has no ONNX mapping for the op "
                f"{match.group(1)}" + (f" used by the cell {where}" if where else ""),
                hint="use ops with an ONNX mapping (e.g. ops.ResizeNearestNeighbor instead "
                "of ops.interpolate; ReLU/LeakyReLU/SiLU instead of HSwish)",
            ) from exc
        return onnx.load(f"{stem}.onnx")


def build_onnx_model(
    network: Any,
    *,
    input_size: int = 416,
    batch: int | None = 1,
    int8: bool = False,
    opset: int = 17,
    activation_dtype: str = "uint8",
    split_concat: bool = True,
    input_quant: tuple[float, float] | None = None,
    nms: NmsSettings | None = None,
) -> Any:
    """The ``onnx.ModelProto`` of ``network`` (see :func:`export_onnx`)."""
    _require_onnx()
    _check_args(network, input_size, batch, opset)
    from onnx import version_converter

    from yoloqat.core.contracts.quantizer import quantizer_of
    from yoloqat.deploy import onnx_graph, qdq

    if activation_dtype not in ACTIVATION_DTYPES:
        raise UsageError(f"activation_dtype={activation_dtype!r}; expected uint8 or int8")
    quantizer = quantizer_of(network)
    summary = quantizer.summary(network) if quantizer is not None else None
    if input_quant is not None and not int8:
        raise UsageError("input_quant quantizes the input of an int8 export; add int8=True")
    if int8 and (summary is None or not summary.quantized):
        raise UsageError(
            "int8 export needs a quantized (QAT or PTQ) network; this one is float",
            hint="fine-tune it with the int8_qat quantizer first (configs/yolov3_darknet53_quant"
            ".yaml), calibrate it with int8_ptq, or export without int8",
        )
    network.set_train(False)
    dummy = np.zeros((batch or 1, 3, input_size, input_size), np.float32)
    with contextlib.ExitStack() as stack:
        plan = stack.enter_context(quantizer.export_plan(network)) if quantizer else None
        if plan is not None and not int8 and (plan.weights or plan.activations):
            raise UsageError(
                "this network is quantized: export it with int8=True (--int8)",
                hint="or switch its fake quantization off (set_fake_quant(network, False)) to "
                "export the float graph of its weights",
            )
        model = trace_onnx(network, [dummy])
    model = version_converter.convert_version(model, int(opset))
    g = onnx_graph.Graph(model)
    if int8:
        assert plan is not None and summary is not None
        float_convs = qdq.quantize_weights(g, plan)
        _refuse_float_convs(float_convs, summary.skipped)
        qdq.quantize_activations(g, plan, activation_dtype)
        if input_quant is not None:
            qdq.quantize_input(g, *input_quant, dtype=activation_dtype)
    onnx_graph.drop_markers(g)
    onnx_graph.fold_batchnorms(g)
    onnx_graph.fuse_leaky_relu(g)
    if int8 and split_concat:
        qdq.split_concat_convs(g)
    if batch is None:
        onnx_graph.make_batch_dynamic(g)
    g.sort()
    _name_io(model)
    if nms is not None:
        from yoloqat.deploy.nms import append_nms

        append_nms(model, nms, input_size=input_size, num_classes=network.num_classes)
    meta = {
        "yoloqat_version": __version__,
        "input_size": str(input_size),
        "num_classes": str(network.num_classes),
        "output_format": network.output_format,
        "strides": json.dumps(list(network.strides)),
        "outputs": json.dumps([o.name for o in model.graph.output]),
        "int8": str(bool(int8)).lower(),
        **decode_metadata(nms, network.num_classes),
    }
    model.graph.name = f"{network.output_format}_int8_qdq" if int8 else network.output_format
    model.producer_name = "yoloqat"
    model.doc_string = (
        "detector exported by yoloqat; outputs boxes [N, M, 4] (cx, cy, w, h normalised to "
        "the input) and scores [N, M, C] (per-class confidences in [0, 1])"
        if nms is None
        else "detector exported by yoloqat with NMS in the graph; outputs detections "
        f"[N, {nms.max_det}, 6]: x1, y1, x2, y2 (pixels of the input), score, class, best "
        "first; padding rows have score -1"
    )
    del model.metadata_props[:]
    set_metadata(model, meta)
    return model


def set_metadata(model: Any, entries: Mapping[str, str]) -> None:
    """Set ``entries`` in ``model.metadata_props`` (replacing an entry of the same key)."""
    given = {str(k): str(v) for k, v in entries.items()}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in given]
    del model.metadata_props[:]
    for key, value in [*kept, *given.items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def _refuse_float_convs(float_convs: list[str], skipped: list[str]) -> None:
    """PluginError naming the convs left float that no ``skip_layers`` pattern asked for."""
    allowed = tuple(f"{path}." for path in skipped)
    bad = [w.rsplit(".", 1)[0] for w in float_convs if not w.startswith(allowed)]
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        raise PluginError(
            f"int8 export: {len(bad)} conv(s) are not quantized and not in skip_layers: {shown}",
            hint="use cells the quantizer knows (nn.Conv2d, nn.BatchNorm2d, ReLU/LeakyReLU/SiLU), "
            "or list them in the quantizer's skip_layers to keep them float on purpose",
        )


def _name_io(model: Any) -> None:
    """Name the graph input ``images`` and the outputs ``boxes`` and ``scores``."""
    renames = {model.graph.input[0].name: INPUT_NAME}
    for out, name in zip(model.graph.output, OUTPUT_NAMES):
        renames[out.name] = name
    for value in [*model.graph.input, *model.graph.output]:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = renames.get(name, name)
        for i, name in enumerate(node.output):
            node.output[i] = renames.get(name, name)


def export_onnx(
    network: Any,
    path: str | Path,
    *,
    input_size: int = 416,
    batch: int | None = 1,
    int8: bool = False,
    opset: int = 17,
    activation_dtype: str = "uint8",
    split_concat: bool = True,
    input_quant: tuple[float, float] | None = None,
    metadata: Mapping[str, str] | None = None,
    nms: NmsSettings | None = None,
) -> Path:
    """Write ``network`` (a Detector, eval mode) as an ONNX model; return the path.

    - ``input_size``: the square input side (a multiple of 32); the grid constants of the
      decode are baked in for it.
    - ``batch``: a fixed batch size, or ``None`` for a dynamic batch dimension.
    - ``int8``: the network must be QAT-quantized; writes the QDQ form (int8 per-channel
      weights, Quantize/DequantizeLinear pairs where the quantizer has fake-quants, scales
      from the trained observers). ``activation_dtype`` picks uint8 (default, ONNX
      Runtime's fast CPU path) or int8 activations. ``split_concat`` (int8 only) splits each
      Conv over a Concat of differently scaled int8 tensors into one Conv per input plus an
      Add (exact), so that OpenVINO runs all of them in int8. ``input_quant=(mean,
      std_dev)`` (int8 only; e.g. ``qdq.SEED_INPUT_QUANT`` for ImageNet-normalised inputs)
      quantizes the image input as the seed's int8 export did, so the first Conv runs in
      int8 as well (not exact: the trained network saw float images).
    - ``opset``: the ONNX opset of the default domain (13-21).
    - ``metadata``: more metadata_props entries, e.g. the input preprocessing
      (``normalize``: imagenet/unit, ``letterbox``: true/false) that ``eval --onnx`` reads
      (:func:`yoloqat.engine.export.model_metadata` gives them for a config).
    - ``nms``: append the per-class NMS in float after the decode
      (:mod:`yoloqat.deploy.nms`); the one output is then ``detections [N, max_det, 6]``.

    Besides ``metadata``, the file records ``yoloqat_version``, ``input_size``,
    ``num_classes``, ``output_format``, ``strides``, ``outputs``, ``int8``, ``nms`` and
    ``decode`` (a JSON description of the outputs and of what the graph computes).

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
        split_concat=split_concat,
        input_quant=input_quant,
        nms=nms,
    )
    set_metadata(model, metadata or {})
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

    check_input_shape(input_size, input_size, getattr(network, "input_multiple", 32))
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
