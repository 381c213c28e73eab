"""TEMPORARY stand-in until the runtime component kind lands (issue-12-runtime)."""

from __future__ import annotations

from typing import Any


def open_model(
    path: Any, runtime: str = "onnxruntime", *, threads: int | None = None, registry: Any = None
) -> Any:
    from yoloqat.core.errors import ConfigError
    from yoloqat.deploy.onnx_runtime import OnnxPredictor

    if runtime != "onnxruntime":
        raise ConfigError(f"unknown runtime {runtime!r}")
    return OnnxPredictor(path, threads=threads)
