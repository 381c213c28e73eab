"""An OpenVINO compiled model over an exported yoloqat detector (the ``openvino`` runtime).

OpenVINO reads our ONNX files directly (``Core.read_model``), QDQ int8 included: its low
precision transformations turn each DequantizeLinear -> Conv into an int8 convolution. It
reads the OpenVINO IR of ``export --format openvino`` (``.xml`` + ``.bin``) as well, with
the same metadata (kept in the IR's ``rt_info``).
Floating-point layers run at f32 (``INFERENCE_PRECISION_HINT``): on CPUs with bf16 support
OpenVINO would otherwise pick bf16, which changes the outputs by ~1e-2 relative. A model with
a dynamic batch dimension is compiled once per batch size it sees, reshaped to it (static
shapes are the fast path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.contracts.runtime import (
    check_threads,
    detector_outputs,
    not_a_detector,
    run_batches,
)
from yoloqat.core.device import uncapped_isa
from yoloqat.core.errors import CheckpointError, RuntimeFailure

INSTALL_HINT = 'pip install "yoloqat[openvino]"'
DEVICE = "CPU"


def import_openvino() -> Any:
    """The ``openvino`` module; a RuntimeFailure with the install hint when it is absent."""
    try:
        import openvino
    except ImportError:
        raise RuntimeFailure(
            "running with OpenVINO needs the 'openvino' package", hint=INSTALL_HINT
        ) from None
    return openvino


def compile_config(threads: int | None) -> dict[str, Any]:
    """The CPU plugin properties: latency hint, f32 inference, no thread pinning (pinned
    threads stall when other processes share the cores), ``threads`` if given."""
    config: dict[str, Any] = {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    if check_threads(threads) is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX metadata_props, which OpenVINO keeps under rt_info ``framework`` (of the
    model read from ONNX, and in the IR converted from it)."""
    if not model.has_rt_info("framework"):
        return {}
    keys = model.get_rt_info()["framework"]
    return {str(k): model.get_rt_info(["framework", str(k)]).astype(str) for k in keys}


def _name(output: Any) -> str:
    try:
        return output.get_any_name()
    except RuntimeError:  # an output without a tensor name
        return ""


class OpenVinoModel:
    """An OpenVINO model on CPU with the :class:`~yoloqat.core.contracts.Runtime` contract.

    Attributes: ``path``, ``input_size``, ``batch`` (fixed batch or None), ``metadata``,
    ``name``; ``model`` (the ``openvino.Model`` as read) and ``config`` (the compile
    properties). :meth:`compiled` gives the compiled model for a batch size.
    """

    name = "openvino"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ov = import_openvino()
        self.path = Path(path)
        self.config = compile_config(threads)
        if not self.path.is_file():
            raise CheckpointError(f"model not found: {self.path}")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.path))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise CheckpointError(
                f"{self.path} is not a model OpenVINO can read ({type(exc).__name__}: {first})",
                hint="export one with: yoloqat export --checkpoint C --format onnx (or openvino)",
            ) from exc
        inputs = self.model.inputs
        shape = inputs[0].get_partial_shape() if len(inputs) == 1 else None
        names = [_name(o) for o in self.model.outputs]
        if shape is None or shape.rank.is_dynamic or len(shape) != 4 or not detector_outputs(names):
            raise CheckpointError(not_a_detector(self.path, len(names)))
        self.metadata = _metadata(self.model)
        self.batch = shape[0].get_length() if shape[0].is_static else None
        size = shape[2].get_length() if shape[2].is_static else self.metadata.get("input_size")
        if size is None:
            raise CheckpointError(f"{self.path}: the input size is not fixed in the model")
        self.input_size = int(size)
        self.output_names = names
        self._compiled: dict[int, Any] = {}
        self._requests: dict[int, Any] = {}

    def compiled(self, batch: int = 1) -> Any:
        """The compiled model for ``batch`` images (the fixed batch for a fixed-batch model)."""
        batch = self.batch or batch
        if batch not in self._compiled:
            model = self.model
            if self.batch is None:
                model = model.clone()
                model.reshape({0: [batch, 3, self.input_size, self.input_size]})
            try:
                with uncapped_isa():
                    self._compiled[batch] = self.core.compile_model(model, DEVICE, self.config)
            except Exception as exc:
                raise RuntimeFailure(
                    f"OpenVINO could not compile {self.path}: {type(exc).__name__}: "
                    f"{str(exc).strip()[:200]}"
                ) from exc
            self._requests[batch] = self._compiled[batch].create_infer_request()
        return self._compiled[batch]

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        batch = images.shape[0]
        self.compiled(batch)
        request = self._requests[self.batch or batch]
        request.infer({0: images})
        return [request.get_output_tensor(i).data.copy() for i in range(len(self.output_names))]

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """Run the model on a float32 ``[B, 3, S, S]`` batch; return ``[boxes, scores]``
        (``[detections]`` for a model with NMS in the graph)."""
        return run_batches(self._run, images, self.input_size, self.batch)
