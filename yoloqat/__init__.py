"""yoloqat: plugin-based object detection on MindSpore (YOLOv3-DarkNet53 + int8 QAT).

Public entry points kept import-cheap: no MindSpore import happens here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

# On AVX-512 machines MindSpore's oneDNN falls back to a reference kernel for 3x3 convs,
# about 100x slower than its AVX2 kernel (measured: one 256->256 conv at 52x52, 4.0 s vs
# 0.018 s). Capping the ISA must happen before the first conv runs, so it is the one
# process-wide default yoloqat sets at import; export ONEDNN_MAX_CPU_ISA to override it.
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")

#: Marker a plugin uses on its hook implementations: ``@yoloqat.hookimpl``.
from yoloqat.core.hookspecs import hookimpl
from yoloqat.core.version import __version__

if TYPE_CHECKING:
    from yoloqat.engine.model import Model
    from yoloqat.engine.training.trainer import TrainResult


def create(kind: str, name: str, /, **params: object) -> object:
    """Build the component ``name`` of ``kind`` through the default registry.

    ``create("backbone", "darknet53", width=0.25)`` checks the name and parameters
    (with "Did you mean" suggestions) before building anything.
    """
    from yoloqat.registry import default_registry

    return default_registry().create(kind, name, **params)


def load(path: str | os.PathLike[str], **options: Any) -> Model:
    """A detector ready to use from a checkpoint (``.ckpt``) or an exported model
    (``.onnx``): ``model.predict(source)``, ``model.val(...)``, ``model.export(...)``
    (:func:`yoloqat.engine.model.load` and its ``Model``)."""
    from yoloqat.engine.model import load as _load

    return _load(Path(path), **options)


def train(config: Any = None, **options: Any) -> TrainResult:
    """Train as ``yoloqat train`` does (:func:`yoloqat.engine.training.setup.train`):
    ``yoloqat.train("synth_tiny", data_dir="data", max_epoch=5)``."""
    from yoloqat.engine.training.setup import train as _train

    return _train(config, **options)


__all__ = ["__version__", "create", "hookimpl", "load", "train"]
