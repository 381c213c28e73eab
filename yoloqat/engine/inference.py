"""Loading a trained detector from a checkpoint, and predictors that run it on images.

A predictor maps a float32 batch ``[B, 3, S, S]`` (normalised as in training) to the
decoded ``[boxes [B, M, 4], scores [B, M, C]]`` as NumPy arrays, whatever runs it
(MindSpore here; an exported model through a runtime component,
:mod:`yoloqat.engine.runtimes`) and whatever the detector family, so one evaluation engine
serves all.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from yoloqat.core.config import get_dotted, read
from yoloqat.core.errors import CheckpointError
from yoloqat.engine import pipeline

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


class Predictor(Protocol):
    """Anything that turns an image batch into the decoded ``[boxes, scores]`` arrays."""

    def __call__(self, images: np.ndarray) -> list[np.ndarray]: ...


def model_config(cfg: dict[str, Any], meta: dict[str, Any], *, explicit: bool) -> dict[str, Any]:
    """The config to rebuild a checkpoint's network with.

    Without an explicit ``--config`` the model and quantizer blocks stored in the checkpoint
    win, so ``yoloqat eval --pretrained C`` just works. With one, a QAT checkpoint loaded
    into a float config (or the reverse) is an error that says so.
    """
    stored = stored_config(meta)
    out = copy.deepcopy(cfg)
    if stored is not None and not explicit:
        for key in ("family", "model", "quantizer", "loss"):
            if key in stored:
                out[key] = copy.deepcopy(stored[key])
        return out
    if "quantized" in meta:
        cfg_quant = pipeline.build_quantizer(out) is not None
        if bool(meta["quantized"]) and not cfg_quant:
            raise CheckpointError(
                "this is a QAT (int8 fake-quant) checkpoint but the config has no quantizer",
                hint="use configs/yolov3_darknet53_quant.yaml (or the config it was trained with)",
            )
        if not meta["quantized"] and cfg_quant:
            raise CheckpointError(
                "this is a float checkpoint but the config quantizes the network",
                hint="use a float config, or fine-tune it with QAT first (yoloqat train "
                "--config configs/yolov3_darknet53_quant.yaml --resume_yolov3 CKPT)",
            )
    return out


def load_detector(
    cfg: dict[str, Any],
    checkpoint: str | Path,
    *,
    explicit_config: bool = True,
    registry: ComponentRegistry | None = None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Build the network a checkpoint was trained as and load it (eval mode).

    Returns ``(network, config used, checkpoint meta)``.
    """
    from yoloqat.engine.checkpoints import load_weights, read_checkpoint

    params, meta = read_checkpoint(checkpoint)
    cfg = model_config(cfg, meta, explicit=explicit_config)
    network = pipeline.build_model(cfg, registry)
    quantizer = pipeline.build_quantizer(cfg, registry)
    if quantizer is not None:
        network = pipeline.quantize(network, quantizer, _quantizer_name(cfg))
    load_weights(network, params, source=checkpoint)
    network.set_train(False)
    return network, cfg, meta


def _quantizer_name(cfg: dict[str, Any]) -> str:
    """The quantizer block's name (the quantizer was built from it)."""
    return str(get_dotted(cfg, "quantizer.name"))


def stored_config(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The config a checkpoint was trained with (its ``meta["config"]``), if it has one."""
    config = meta.get("config")
    return config if isinstance(config, dict) else None


def effective_config(cfg: dict[str, Any], meta: dict[str, Any], *, explicit: bool) -> dict:
    """``cfg`` when the user gave ``--config``, else the checkpoint's own (or ``cfg``)."""
    stored = stored_config(meta)
    return cfg if explicit or stored is None else stored


def default_testing_shape(cfg: dict[str, Any], meta: dict[str, Any], *, explicit: bool) -> int:
    """The input size a checkpoint is meant to run at, when the user gives none.

    The ``eval.testing_shape`` of the config stored in the checkpoint (or of the explicit
    ``--config``), else the schema's default (the seed's 416).
    """
    return int(read(effective_config(cfg, meta, explicit=explicit), "eval.testing_shape"))


#: What a run that starts from a checkpoint (``--resume_yolov3``) keeps of the checkpoint's
#: config: the whole model (backbone and head blocks with every parameter, whichever plugin
#: they come from), the loss block, the family, and the input preprocessing.
INHERITED_BLOCKS = ("model.backbone", "model.head", "loss")
INHERITED_KEYS = ("family", "model.num_classes", "data.normalize", "eval.letterbox")


def _leaves(value: Any, prefix: str) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}.{k}"))
        return out
    return {prefix: value}


def inherit_network_settings(cfg: dict[str, Any], stored: dict[str, Any] | None) -> list[str]:
    """Make ``cfg`` describe the network (and loss) a checkpoint's ``stored`` config built.

    So ``train --config QUANT --resume_yolov3 CKPT`` fine-tunes the network ``CKPT`` holds
    with the loss it was trained with (e.g. a plugin head with its own settings, or an
    imported Darknet model: leaky backbone, BN eps 1e-6, RGB/255 input, letterbox), not the
    ones the QAT recipe describes. A stored block naming another component than ``cfg``'s
    replaces it; one naming the same component sets each of its parameters. Callers apply
    flags and ``--set`` afterwards, so those still win. Returns one note per changed key.
    """
    from yoloqat.core.config import lookup, set_dotted

    if not stored:
        return []
    notes = []

    def put(key: str, value: Any) -> None:
        found, before = lookup(cfg, key)
        if found and before == value:
            return
        set_dotted(cfg, key.split("."), copy.deepcopy(value))
        was = repr(before) if found else "unset"
        notes.append(f"{key}={value!r} (was {was}), as the starting checkpoint")

    for key in INHERITED_KEYS:
        found, value = lookup(stored, key)
        if found:
            put(key, value)
    for dotted in INHERITED_BLOCKS:
        block = get_dotted(stored, dotted)
        if not isinstance(block, dict):
            continue
        mine = get_dotted(cfg, dotted)
        if not isinstance(mine, dict) or mine.get("name") != block.get("name"):
            put(dotted, block)
            continue
        for key, value in _leaves(block, dotted).items():
            put(key, value)
    return notes


def preprocessing(config: dict[str, Any] | None) -> dict[str, Any]:
    """The input preprocessing a network of ``config`` expects.

    ``{"normalize": data.normalize ("imagenet" or "unit"), "letterbox": eval.letterbox}``;
    the seed's ImageNet normalisation and stretch resize when the config says nothing.
    """
    return {
        "normalize": str(read(config, "data.normalize")),
        "letterbox": bool(read(config, "eval.letterbox")),
    }


class MindSporePredictor:
    """Runs a MindSpore detector (eval mode, GRAPH_MODE unless told otherwise).

    GRAPH_MODE compiles one graph per input shape (tens of seconds for a fake-quant
    network), so a batch smaller than the first one seen is zero-padded to that size and
    larger ones are split: a dataset whose length is not a multiple of the batch size
    costs no extra compilation.
    """

    def __init__(self, network: Any, *, graph_mode: bool = True) -> None:
        import mindspore as ms

        if graph_mode:
            ms.set_context(mode=ms.GRAPH_MODE)
        self.network = network
        self.network.set_train(False)
        self.batch: int | None = None

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        from mindspore import Tensor

        outputs = self.network(Tensor(np.ascontiguousarray(images, dtype=np.float32)))
        return [o.asnumpy() for o in outputs]

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        n = images.shape[0]
        if self.batch is None:
            self.batch = n
        if n > self.batch:
            parts = [self(images[i : i + self.batch]) for i in range(0, n, self.batch)]
            return [np.concatenate(p, axis=0) for p in zip(*parts)]
        if n < self.batch:
            pad = np.zeros((self.batch - n, *images.shape[1:]), np.float32)
            return [o[:n] for o in self._run(np.concatenate([images, pad], axis=0))]
        return self._run(images)
