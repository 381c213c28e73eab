"""An ONNX Runtime session over an exported yoloqat detector (the ``onnxruntime`` runtime)."""

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
from yoloqat.core.errors import CheckpointError, RuntimeFailure

INSTALL_HINT = "pip install 'yoloqat[deploy]'"


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise RuntimeFailure(
            "running ONNX models needs the 'onnxruntime' package", hint=INSTALL_HINT
        ) from None
    return onnxruntime


def session_options(ort: Any, threads: int | None) -> Any:
    """Session options: all graph optimisations, ``threads`` intra-op threads if given, and
    no spin-waiting of idle threads after a run.

    ONNX Runtime's threads spin by default after each call: that keeps the cores busy while
    anything else (another runtime, image decoding, NMS) wants them. Measured at 416 on 2
    cores, alternating calls: OpenVINO int8 after an ONNX Runtime call took 105.6 ms with
    spinning and 84.5 ms without, while ONNX Runtime int8 itself went 93.8 -> 96.1 ms.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if check_threads(threads) is not None:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


class OnnxPredictor:
    """An ONNX Runtime session over a yoloqat ONNX model (float or int8 QDQ, with or without
    the NMS in the graph).

    ``threads``: intra-op threads (None: ONNX Runtime's default, one per core).
    Attributes (the :class:`~yoloqat.core.contracts.Runtime` contract): ``path``,
    ``input_size`` (the square side the model was exported for), ``batch`` (fixed batch size
    or None), ``metadata`` (the model's metadata_props as a dict), ``name``; and
    ``session``, ``input_name``, ``output_names``.
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model not found: {self.path}")
        try:
            self.session = ort.InferenceSession(
                str(self.path), session_options(ort, threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise CheckpointError(
                f"{self.path} is not a valid ONNX model ({type(exc).__name__}: {first})",
                hint="export one with: yoloqat export --checkpoint C --format onnx",
            ) from exc
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.output_names = [o.name for o in outputs]
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not detector_outputs(self.output_names):
            raise CheckpointError(not_a_detector(self.path, len(outputs)))
        self.input_name = inputs[0].name
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        shape = inputs[0].shape
        self.batch = shape[0] if isinstance(shape[0], int) else None
        size = shape[2] if isinstance(shape[2], int) else self.metadata.get("input_size")
        if size is None:
            raise CheckpointError(f"{self.path}: the input size is not fixed in the model")
        self.input_size = int(size)

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        return list(self.session.run(self.output_names, {self.input_name: images}))

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """Run the model on a float32 ``[B, 3, S, S]`` batch; return ``[boxes, scores]``
        (``[detections]`` for a model with NMS in the graph)."""
        return run_batches(self._run, images, self.input_size, self.batch)
