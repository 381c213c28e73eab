"""Deployment: ONNX export (float and int8 QDQ), MINDIR export.

Import-cheap: ``onnx`` and MindSpore are imported when used. The runtimes that run the
exported files are components (``yoloqat_runtimes``: the ``onnxruntime`` and ``openvino``
plugins), opened with :func:`yoloqat.engine.runtimes.open_model`.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "export_onnx": "yoloqat.deploy.onnx_export",
    "export_mindir": "yoloqat.deploy.onnx_export",
    "build_onnx_model": "yoloqat.deploy.onnx_export",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'yoloqat.deploy' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
