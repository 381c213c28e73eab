"""Runtime plugin: ONNX Runtime (CPU) running an exported yoloqat ONNX model (float or int8 QDQ).

Manifest only; ``onnxruntime`` is imported when a model is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .session import OnnxPredictor


def onnxruntime(*, path: str, threads: int | None = None) -> OnnxPredictor:
    """ONNX Runtime on CPU (all graph optimisations; int8 QDQ runs as QLinearConv).

    Parameters:
        path: the ONNX model (``yoloqat export --format onnx [--int8]``).
        threads: intra-op threads (None: ONNX Runtime's default, one per core).
    """
    from .session import OnnxPredictor

    return OnnxPredictor(path, threads=threads)


@hookimpl
def yoloqat_runtimes() -> dict:
    """Register the ONNX Runtime runtime."""
    return {"onnxruntime": onnxruntime}
