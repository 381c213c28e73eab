"""The runtime contract: what a ``yoloqat_runtimes()`` factory returns.

A runtime runs an exported detector file (ONNX, MINDIR, ...) outside the training graph:
a float32 image batch ``[B, 3, S, S]`` in (normalised as in training), the decoded
``[boxes, scores]`` out as NumPy arrays, whatever the detector family (the family's decode
is part of the exported graph): boxes float32 ``[B, M, 4]`` (``cx, cy, w, h`` normalised to
the input) and scores float32 ``[B, M, C]`` in [0, 1]; or, for a model exported with its
NMS in the graph (``export --nms``, metadata ``nms: "true"``), the one output
``[detections [B, max_det, 6]]`` (``x1, y1, x2, y2`` pixels of the input, score, class;
padding rows score -1). Its factory takes ``path`` and ``threads`` keyword arguments. The
helpers below are shared by the bundled runtimes and free for third-party ones:
:func:`check_threads`, :func:`check_images`, :func:`run_batches` (chunking a batch for a
fixed-batch model) and :func:`detector_outputs`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from yoloqat.core.errors import ConfigError

#: The exported graph's outputs, in order (:mod:`yoloqat.deploy.onnx_export` names them so).
OUTPUTS: tuple[str, ...] = ("boxes", "scores")
#: The output of a graph exported with NMS (:mod:`yoloqat.deploy.nms`).
NMS_OUTPUTS: tuple[str, ...] = ("detections",)
#: The columns of a ``detections`` row.
DETECTION_FIELDS: tuple[str, ...] = ("x1", "y1", "x2", "y2", "score", "class")

#: Members :func:`yoloqat.core.contracts.check_component` checks on a runtime.
MEMBERS: tuple[str, ...] = ("__call__", "path", "input_size", "batch", "metadata", "name")


@runtime_checkable
class Runtime(Protocol):
    """What a runtime factory returns: a loaded model, ready to run."""

    #: The model file it runs.
    path: Path
    #: The square input side the model was exported for.
    input_size: int
    #: The model's fixed batch size, or None for a dynamic batch dimension.
    batch: int | None
    #: The model's metadata (ONNX ``metadata_props``), str -> str; empty when it has none.
    metadata: dict[str, str]
    #: The runtime's registered name (e.g. ``"onnxruntime"``), for reports.
    name: str

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        """Run the model on a float32 ``[B, 3, S, S]`` batch (any ``B`` for a dynamic
        batch, a multiple of ``batch`` otherwise); return ``[boxes [B, M, 4], scores
        [B, M, C]]`` (``[detections [B, max_det, 6]]`` for an NMS model). A wrong shape is a
        ConfigError naming it."""
        ...


def problems(obj: Any) -> list[str]:
    """Value checks: ``input_size`` a positive int, ``batch`` a positive int or None,
    ``metadata`` a dict, ``name`` a str, ``path`` a Path."""
    out = []
    size = obj.input_size
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        out.append(f"input_size is {size!r}, not a positive int")
    batch = obj.batch
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        out.append(f"batch is {batch!r}, not a positive int or None")
    if not isinstance(obj.metadata, dict):
        out.append(f"metadata is a {type(obj.metadata).__name__}, not a dict")
    if not isinstance(obj.name, str) or not obj.name:
        out.append(f"name is {obj.name!r}, not a non-empty str")
    if not isinstance(obj.path, Path):
        out.append(f"path is a {type(obj.path).__name__}, not a pathlib.Path")
    return out


def not_a_detector(path: Path, outputs: int) -> str:
    """The message for a model file whose inputs/outputs are not a yoloqat detector's."""
    older = " (a file exported by yoloqat before 0.2 has 3 outputs: export it again)"
    return (
        f"{path} is not a yoloqat detector: expected one [B, 3, S, S] input and the outputs "
        f"{', '.join(OUTPUTS)} (or {', '.join(NMS_OUTPUTS)} with NMS in the graph); it has "
        f"{outputs} output(s)" + (older if outputs == 3 else "")
    )


def detector_outputs(names: list[str]) -> bool:
    """Whether a model's output names are a yoloqat detector's: ``boxes, scores``, or the
    one ``detections`` of an NMS model (any names when there are two: older files)."""
    return len(names) == len(OUTPUTS) or list(names) == list(NMS_OUTPUTS)


def check_threads(threads: int | None) -> int | None:
    """``threads`` itself when None or an int >= 1; a ConfigError otherwise."""
    if threads is not None and (
        isinstance(threads, bool) or not isinstance(threads, int) or threads < 1
    ):
        raise ConfigError(f"threads={threads!r} is not valid; expected an integer >= 1")
    return threads


def check_images(images: np.ndarray, input_size: int) -> np.ndarray:
    """``images`` as a contiguous float32 ``[B, 3, S, S]`` array; a ConfigError otherwise."""
    images = np.ascontiguousarray(images, dtype=np.float32)
    s = input_size
    if images.ndim != 4 or images.shape[1:] != (3, s, s):
        raise ConfigError(
            f"the model expects images [B, 3, {s}, {s}], got {list(images.shape)}",
            hint=f"use --testing_shape {s} (the size it was exported for)",
        )
    return images


def run_batches(
    run: Callable[[np.ndarray], list[np.ndarray]],
    images: np.ndarray,
    input_size: int,
    batch: int | None,
) -> list[np.ndarray]:
    """Check ``images`` and call ``run`` on it, in chunks of ``batch`` for a fixed-batch
    model (a ConfigError when the batch is not a multiple of it)."""
    images = check_images(images, input_size)
    if batch is None or images.shape[0] == batch:
        return list(run(images))
    if images.shape[0] % batch:
        raise ConfigError(f"the model has a fixed batch of {batch}; got {images.shape[0]}")
    parts = [list(run(images[i : i + batch])) for i in range(0, len(images), batch)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
