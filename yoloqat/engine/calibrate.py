"""Post-training quantization: a float checkpoint calibrated into a quantized one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yoloqat.core import events
from yoloqat.core.config import get_dotted
from yoloqat.core.errors import CheckpointError, PluginError
from yoloqat.engine import pipeline

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


def calibrate_checkpoint(
    cfg: dict[str, Any],
    checkpoint: str | Path,
    output: str | Path,
    *,
    images: int = 64,
    testing_shape: int = 416,
    batch_size: int = 8,
    registry: ComponentRegistry | None = None,
) -> dict[str, Any]:
    """Quantize the float ``checkpoint`` with ``cfg``'s quantizer (one that has
    ``calibrate``, e.g. ``int8_ptq``), calibrate it on the first ``images`` training
    images (eval transforms at ``testing_shape``) and write the result to ``output``.

    The written checkpoint stores ``cfg`` (the quantizer block included), so ``eval``,
    ``export --int8`` and ``quant-report`` use it like a QAT checkpoint. Returns a summary.
    """
    from yoloqat.engine.checkpoints import (
        load_weights,
        read_checkpoint,
        save_checkpoint,
        weights_only,
    )
    from yoloqat.engine.evaluate import Subset, load_batches
    from yoloqat.engine.inference import preprocessing

    params, meta = read_checkpoint(checkpoint)
    if meta.get("quantized"):
        raise CheckpointError(
            f"{checkpoint} is already quantized; calibrate a float checkpoint",
            hint="post-training quantization starts from float weights",
        )
    network = pipeline.build_model(cfg, registry)
    load_weights(network, weights_only(params), source=checkpoint)
    quantizer = pipeline.build_quantizer(cfg, registry)
    name = str(get_dotted(cfg, "quantizer.name"))  # set by the caller (--quantizer)
    if quantizer is None or not callable(getattr(quantizer, "calibrate", None)):
        raise PluginError(
            f"quantizer '{name}' has no calibrate(network, images) method",
            hint="use a post-training quantizer such as int8_ptq",
        )
    network = pipeline.quantize(network, quantizer, name)
    dataset = pipeline.build_dataset(cfg, registry)
    source = Subset(dataset.train_source(), images)
    events.info(f"calibrating {name} on {len(source)} training images at {testing_shape} px")
    batches = load_batches(
        source, testing_shape=testing_shape, batch_size=batch_size, **preprocessing(cfg)
    )
    seen = quantizer.calibrate(network, (b["image"] for b in batches))
    summary = quantizer.summary(network)
    from yoloqat.engine.training.datasets import with_absolute_data

    stored = with_absolute_data(copy.deepcopy(cfg))  # its data found from any folder
    stored.setdefault("eval", {})["testing_shape"] = testing_shape
    out = save_checkpoint(
        network,
        output,
        {
            # the float model's classes (their names for predict and export) carry over
            **{k: meta[k] for k in ("num_classes", "class_names", "category_ids") if k in meta},
            "quantized": True,
            "config": stored,
            "calibrated_from": str(checkpoint),
            "calibration_images": int(seen),
        },
    )
    return {
        "checkpoint": str(out),
        "images": int(seen),
        "quantized_convs": summary.quantized_convs,
        "total_convs": summary.total_convs,
    }
