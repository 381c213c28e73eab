"""Exporting a loaded checkpoint: formats, default names, and what the file says about itself.

Every ONNX file yoloqat writes (``export``, ``demo``, ``quant-report``, ``benchmark``) and
every OpenVINO IR carries, besides the graph's own facts (``input_size``, ``num_classes``,
``output_format``, ``strides``, ``outputs``, ``int8``, ``nms`` and ``decode``, written by
:func:`yoloqat.deploy.onnx_export.build_onnx_model`), what it takes to use it without the
checkpoint: ``class_names``, ``normalize`` and ``letterbox`` (its input preprocessing) and
``family`` (:func:`model_metadata`); ``predict``/``eval --onnx`` and :func:`yoloqat.load`
read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yoloqat.core.errors import CheckpointError, UsageError
from yoloqat.deploy.nms import NmsSettings

FORMATS = ("onnx", "mindir", "openvino")
#: The file each format writes (OpenVINO IR: the ``.xml``, its ``.bin`` beside it).
EXTENSIONS = {"onnx": ".onnx", "mindir": ".mindir", "openvino": ".xml"}
#: The formats that can carry the NMS in the graph.
NMS_FORMATS = ("onnx", "openvino")
#: Where ``export`` writes without an explicit output file.
DEFAULT_FOLDER = Path("outputs/export")


def default_output(
    checkpoint: str | Path, file_format: str, int8: bool, size: int, nms: bool = False
) -> Path:
    """``outputs/export/<checkpoint stem>_<size>[_int8][_nms].<onnx|mindir|xml>``."""
    suffix = ("_int8" if int8 else "") + ("_nms" if nms else "")
    ext = EXTENSIONS.get(file_format, f".{file_format}")
    return DEFAULT_FOLDER / f"{Path(checkpoint).stem}_{size}{suffix}{ext}"


def check_format(file_format: str, nms: bool = False) -> str:
    """``file_format`` lower-cased; a UsageError unless it is one of :data:`FORMATS` (and
    can carry the NMS with ``nms``)."""
    fmt = str(file_format).lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {file_format!r} is not valid; expected {', '.join(FORMATS)}")
    if nms and fmt not in NMS_FORMATS:
        raise UsageError(f"--nms puts the NMS in an ONNX or OpenVINO graph, not in {fmt}")
    return fmt


def model_metadata(config: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, str]:
    """What an exported file says about the model (ONNX ``metadata_props``): its input
    preprocessing, class names and family."""
    from yoloqat.engine.inference import preprocessing

    prep = preprocessing(config)
    out = {"normalize": prep["normalize"], "letterbox": str(prep["letterbox"]).lower()}
    names = meta.get("class_names")
    if names:
        out["class_names"] = json.dumps([str(n) for n in names])
    from yoloqat.core.config import get_dotted

    family = get_dotted(config or {}, "family")
    if isinstance(family, dict):
        family = family.get("name")
    if not family:  # a config naming its parts: the head says which family it is
        family = get_dotted(config or {}, "model.head.name")
    if family:
        out["family"] = str(family)
    return out


def export_network(
    network: Any,
    path: str | Path,
    *,
    file_format: str = "onnx",
    int8: bool | None = None,
    input_size: int = 416,
    batch: int | None = 1,
    opset: int = 17,
    config: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    source: str = "the network",
    nms: NmsSettings | None = None,
) -> Path:
    """Write ``network`` (eval mode) as ONNX (float, or int8 QDQ for a quantized network;
    ``int8=None`` picks by the network), OpenVINO IR (converted from that ONNX graph) or
    MINDIR; returns the file written (the ``.xml`` for OpenVINO). ``nms`` (ONNX and
    OpenVINO): the per-class NMS in the graph, one output ``detections [N, max_det, 6]``."""
    from yoloqat.core.contracts.quantizer import is_quantized

    fmt = check_format(file_format, nms is not None)
    quantized = is_quantized(network)
    int8 = quantized if int8 is None else bool(int8)
    if int8 and not quantized:
        raise CheckpointError(
            f"int8 export (--int8) needs a quantized (QAT or PTQ) checkpoint; {source} is a "
            "float checkpoint",
            hint="fine-tune it with QAT first (yoloqat train --config "
            "configs/yolov3_darknet53_quant.yaml --resume_yolov3 CKPT), or drop --int8",
        )
    if fmt != "mindir" and quantized and not int8:
        raise UsageError(f"{source} is quantized (int8): export it with --int8 (int8=True)")
    if fmt == "mindir":
        from yoloqat.deploy.onnx_export import export_mindir

        return export_mindir(network, path, input_size, batch=batch or 1)
    from yoloqat.deploy.onnx_export import export_onnx

    options: dict[str, Any] = {
        "input_size": input_size,
        "batch": batch,
        "int8": int8,
        "opset": opset,
        "metadata": model_metadata(config, meta or {}),
        "nms": nms,
    }
    if fmt == "onnx":
        return export_onnx(network, path, **options)
    import tempfile

    from yoloqat.deploy.openvino_ir import onnx_to_ir

    with tempfile.TemporaryDirectory(prefix="yoloqat-ir-") as tmp:
        onnx_file = export_onnx(network, Path(tmp) / "model.onnx", **options)
        return onnx_to_ir(onnx_file, path)
