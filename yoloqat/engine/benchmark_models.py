"""The fp32 and int8 networks a benchmark compares, from a checkpoint or random weights.

- a quantized (QAT or PTQ) checkpoint: int8 is the checkpoint itself, fp32 the same weights
  with fake quantization off (as ``quant-report`` compares them);
- a float checkpoint, or no checkpoint (random weights, for latency): fp32 is the network,
  int8 a post-training-quantized twin (the ``int8_ptq`` quantizer, calibrated on training
  images, or on noise when there is no data).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yoloqat.core import events
from yoloqat.engine import pipeline

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

PTQ_NAME = "int8_ptq"


def noise_batches(count: int, size: int, batch: int = 1, seed: int = 0) -> list[np.ndarray]:
    """``count`` images of Gaussian noise in batches: calibration when there is no data."""
    rng = np.random.default_rng(seed)
    sizes = [min(batch, count - i) for i in range(0, count, batch)]
    return [rng.standard_normal((n, 3, size, size)).astype(np.float32) for n in sizes]


def _ptq_twin(
    float_net: Any,
    cfg: dict[str, Any],
    images: Iterable[np.ndarray],
    registry: ComponentRegistry | None,
) -> tuple[Any, str]:
    """A copy of ``float_net`` quantized by ``int8_ptq`` and calibrated on ``images``."""
    import mindspore as ms

    twin = pipeline.build_model(cfg, registry)
    ms.load_param_into_net(twin, {p.name: p.copy() for p in float_net.get_parameters()})
    quantizer = pipeline.registry_of(registry).create("quantizer", PTQ_NAME)
    twin = pipeline.quantize(twin, quantizer, PTQ_NAME)
    seen = quantizer.calibrate(twin, images)
    twin.set_train(False)
    return twin, f"{PTQ_NAME} calibrated on {seen} images"


def benchmark_networks(
    cfg: dict[str, Any],
    checkpoint: str | Path | None,
    *,
    explicit: bool,
    calibration: Any,
    registry: ComponentRegistry | None = None,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``({"fp32": net, "int8": net or the exception}, checkpoint meta, int8 source)``.

    ``calibration(cfg, meta)`` (the config used, the checkpoint's meta) returns the
    calibration batches; it is called only when a PTQ twin is needed. Failing to build the
    int8 network is not fatal: the exception stands in its place, and the benchmark marks
    the int8 rows ``export failed`` with the reason.
    """
    from yoloqat.core.contracts.quantizer import is_quantized, quantizer_of, set_fake_quant
    from yoloqat.engine.inference import load_detector

    meta: dict[str, Any] = {}
    if checkpoint is not None:
        net, used, meta = load_detector(
            cfg, checkpoint, explicit_config=explicit, registry=registry
        )
        if is_quantized(net):
            fp32, _, _ = load_detector(cfg, checkpoint, explicit_config=explicit, registry=registry)
            set_fake_quant(fp32, False)
            name = type(quantizer_of(net)).__name__
            return {"fp32": fp32, "int8": net}, meta, f"the checkpoint's quantizer ({name})"
        float_net = net
    else:
        used = cfg
        float_net = pipeline.build_model(cfg, registry)
        float_net.set_train(False)
    try:
        int8, source = _ptq_twin(float_net, used, calibration(used, meta), registry)
    except Exception as exc:
        events.warn(f"no int8 network: {type(exc).__name__}: {exc}")
        int8, source = exc, "none"
    return {"fp32": float_net, "int8": int8}, meta, source
