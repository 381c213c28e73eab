"""Opening an exported model with a runtime component (``onnxruntime``, ``openvino``, ...).

``open_model(path, "openvino", threads=2)`` builds the runtime through the registry, so a
third-party runtime plugs in by name, and checks it against the
:class:`~yoloqat.core.contracts.Runtime` contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from yoloqat.core.contracts.runtime import Runtime
from yoloqat.engine.pipeline import registry_of

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

#: The runtime ``open_model`` uses unless told otherwise.
DEFAULT_RUNTIME = "onnxruntime"


def open_model(
    path: str | Path,
    runtime: str = DEFAULT_RUNTIME,
    *,
    threads: int | None = None,
    registry: ComponentRegistry | None = None,
) -> Runtime:
    """Load the model file ``path`` with the runtime named ``runtime``.

    An unknown runtime is a ConfigError (exit 3) with a suggestion and the list of
    runtimes; a runtime that breaks its contract is a PluginError naming the plugin.
    """
    from yoloqat.core.errors import CheckpointError
    from yoloqat.core.limits import check_input_file

    if Path(path).exists():  # a missing file: the runtime's own message
        onnx = Path(path).suffix.lower() == ".onnx"
        what = "ONNX model" if onnx else "model file"
        check_input_file(path, "onnx", error=CheckpointError, what=what)
    reg = registry_of(registry)
    return reg.create("runtime", runtime, path=str(path), threads=threads)


def check_runtime(runtime: str, registry: ComponentRegistry | None = None) -> None:
    """A ConfigError (with a suggestion and the list) unless ``runtime`` is registered."""
    registry_of(registry).get("runtime", runtime)


def runtime_names(registry: ComponentRegistry | None = None) -> list[str]:
    """The names of the registered runtimes, sorted."""
    return [c.name for c in registry_of(registry).components("runtime")]
