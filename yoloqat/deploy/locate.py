"""Find the cell that uses an op MindSpore's ONNX exporter cannot convert."""

from __future__ import annotations

import re
from typing import Any

import numpy as np


def _record_inputs(network: Any, inputs: list[np.ndarray]) -> dict[str, tuple]:
    """Run ``network`` once in PyNative mode and record every cell's positional inputs."""
    import mindspore as ms

    seen: dict[str, tuple] = {}
    handles = []
    for path, cell in network.cells_and_names():
        if not path:
            continue

        def hook(cell_: Any, args: tuple, path: str = path) -> None:
            seen.setdefault(path, tuple(a.asnumpy() if hasattr(a, "asnumpy") else a for a in args))

        handles.append(cell.register_forward_pre_hook(hook))
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        network(*[ms.Tensor(x) for x in inputs])
    finally:
        ms.set_context(mode=mode)
        for handle in handles:
            handle.remove()
    return seen


def _exports(cell: Any, args: tuple, op: str) -> bool:
    """Whether ``cell`` exports on ``args`` without the ``op`` conversion error."""
    import tempfile
    from pathlib import Path

    import mindspore as ms

    tensors = [ms.Tensor(a) if isinstance(a, np.ndarray) else a for a in args]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            ms.export(cell, *tensors, file_name=str(Path(tmp) / "c"), file_format="ONNX")
        except Exception as exc:
            return not re.search(rf"\b{re.escape(op)}\b", str(exc))
    return True


def locate_unsupported(network: Any, inputs: list[np.ndarray], op: str) -> str | None:
    """The deepest cell path whose export fails on ``op`` (None if it cannot be told)."""
    try:
        seen = _record_inputs(network, inputs)
    except Exception:
        return None
    children = {p: c for p, c in network.cells_and_names() if p}
    path = ""
    while True:
        prefix = f"{path}." if path else ""
        subs = [p for p in children if p.startswith(prefix) and "." not in p[len(prefix) :]]
        failing = next(
            (p for p in subs if p in seen and not _exports(children[p], seen[p], op)), None
        )
        if failing is None:
            return path or None
        path = failing
