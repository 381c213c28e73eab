"""Runtime plugin: OpenVINO (CPU) running an exported yoloqat model (ONNX or OpenVINO IR, float
or int8).

Manifest only; ``openvino`` (the optional extra ``pip install "yoloqat[openvino]"``) is
imported when a model is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import OpenVinoModel


def openvino(*, path: str, threads: int | None = None) -> OpenVinoModel:
    """OpenVINO on CPU (latency hint, f32 precision; int8 QDQ runs as int8 convolutions).

    Parameters:
        path: the ONNX model (``yoloqat export --format onnx [--int8] [--nms]``) or OpenVINO
            IR ``.xml`` (``--format openvino``).
        threads: inference threads (``INFERENCE_NUM_THREADS``; None: OpenVINO's default).
    """
    from .model import OpenVinoModel

    return OpenVinoModel(path, threads=threads)


@hookimpl
def yoloqat_runtimes() -> dict:
    """Register the OpenVINO runtime."""
    return {"openvino": openvino}
