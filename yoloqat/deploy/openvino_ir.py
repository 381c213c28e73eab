"""OpenVINO IR (``.xml`` + ``.bin``) from an exported ONNX model, float or int8 QDQ.

OpenVINO's own ONNX frontend reads the file (``Core.read_model``, the frontend
``openvino.convert_model`` uses as well) and ``openvino.save_model`` writes the IR with the
transformations of OpenVINO's conversion flow. ``convert_model`` itself is not called: it
starts OpenVINO's usage telemetry, which sends data over the network unless the user opted
out. Weights stay float32 (``compress_to_fp16=False``: the IR computes what the ONNX model
computes); an int8 QDQ model keeps its int8 weights and its quantize/dequantize steps, which
OpenVINO runs as int8 convolutions as it does for the ONNX file. The ONNX metadata (class
names, preprocessing, decode, ...) is kept in the IR's ``rt_info`` under ``framework``, where
the ``openvino`` runtime reads it for both file kinds.
"""

from __future__ import annotations

import os
from pathlib import Path

from yoloqat.core.atomic import atomic_path
from yoloqat.core.errors import RuntimeFailure

INSTALL_HINT = 'pip install "yoloqat[openvino]"'


def ir_paths(path: str | Path) -> tuple[Path, Path]:
    """``(x.xml, x.bin)`` for ``path`` (``.xml`` appended unless it ends so)."""
    path = Path(path)
    xml = path if path.suffix.lower() == ".xml" else Path(f"{path}.xml")
    return xml, xml.with_suffix(".bin")


def onnx_to_ir(onnx_path: str | Path, path: str | Path) -> Path:
    """Convert the ONNX model ``onnx_path`` to OpenVINO IR at ``path`` (``.xml``, with its
    ``.bin`` beside it); return the ``.xml`` path.

    Both files are written to temporaries and renamed into place, the ``.bin`` first: a
    failure leaves the previous pair as it was.
    """
    try:
        import openvino as ov
    except ImportError:
        raise RuntimeFailure(
            "--format openvino needs the 'openvino' package", hint=INSTALL_HINT
        ) from None
    xml, weights = ir_paths(path)
    xml.parent.mkdir(parents=True, exist_ok=True)
    try:
        model = ov.Core().read_model(str(onnx_path))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise RuntimeFailure(f"OpenVINO could not convert {onnx_path}: {first}") from exc
    # the .xml's context is left last: the .bin is in place before the .xml that reads it
    with atomic_path(xml, extra_suffixes=(".bin",)) as xml_tmp, atomic_path(weights) as bin_tmp:
        ov.save_model(model, str(xml_tmp), compress_to_fp16=False)
        os.replace(xml_tmp.with_suffix(".bin"), bin_tmp)
    return xml
