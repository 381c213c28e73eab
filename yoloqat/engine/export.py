"""Exporting a loaded checkpoint: formats, default names, and what the file says about itself.

Every ONNX file yoloqat writes carries, besides the graph's own facts (input size, class
count, output format, strides), what it takes to use it without the checkpoint:
``class_names``, ``normalize`` and ``letterbox`` (its input preprocessing) and ``family``
(:func:`model_metadata`); ``predict``/``eval --onnx`` and :func:`yoloqat.load` read them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from yoloqat.core.errors import CheckpointError, UsageError

FORMATS = ("onnx", "mindir")
#: Where ``export`` writes without an explicit output file.
DEFAULT_FOLDER = Path("outputs/export")


def default_output(checkpoint: str | Path, file_format: str, int8: bool, size: int) -> Path:
    """``outputs/export/<checkpoint stem>_<size>[_int8].<format>``."""
    suffix = "_int8" if int8 else ""
    return DEFAULT_FOLDER / f"{Path(checkpoint).stem}_{size}{suffix}.{file_format}"


def model_metadata(config: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, str]:
    """What an exported file says about the model (ONNX ``metadata_props``): its input
    preprocessing, class names and family."""
    from yoloqat.engine.inference import preprocessing

    prep = preprocessing(config)
    out = {"normalize": prep["normalize"], "letterbox": str(prep["letterbox"]).lower()}
    names = meta.get("class_names")
    if names:
        out["class_names"] = json.dumps([str(n) for n in names])
    family = (config or {}).get("family")
    if isinstance(family, dict):
        family = family.get("name")
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
) -> Path:
    """Write ``network`` (eval mode) as ONNX (float, or int8 QDQ for a quantized network;
    ``int8=None`` picks by the network) or MINDIR; returns the file written."""
    from yoloqat.core.contracts.quantizer import is_quantized

    fmt = file_format.lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format {file_format!r} is not valid; expected {' or '.join(FORMATS)}")
    quantized = is_quantized(network)
    int8 = quantized if int8 is None else bool(int8)
    if int8 and not quantized:
        raise CheckpointError(
            f"int8 export needs a quantized (QAT or PTQ) checkpoint; {source} is float",
            hint="fine-tune it with QAT first (yoloqat train --config "
            "configs/yolov3_darknet53_quant.yaml --resume_yolov3 CKPT), or drop --int8",
        )
    if fmt == "onnx" and quantized and not int8:
        raise UsageError(f"{source} is quantized (int8): export it with --int8 (int8=True)")
    if fmt == "mindir":
        from yoloqat.deploy.onnx_export import export_mindir

        return export_mindir(network, path, input_size, batch=batch or 1)
    from yoloqat.deploy.onnx_export import export_onnx

    return export_onnx(
        network,
        path,
        input_size=input_size,
        batch=batch,
        int8=int8,
        opset=opset,
        metadata=model_metadata(config, meta or {}),
    )
