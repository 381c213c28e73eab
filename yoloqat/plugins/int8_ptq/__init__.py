"""``int8_ptq``: int8 post-training quantization, calibrated on training images, no training.

Manifest only: MindSpore is imported when the factory is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .calibrate import Int8PTQ

METHODS = ("minmax", "percentile")


def int8_ptq(
    *,
    method: str = "percentile",
    percentile: float = 99.99,
    num_bits: int = 8,
    per_channel: Sequence[bool] = (True, False),
    symmetric: Sequence[bool] = (True, False),
    skip_layers: Sequence[str] = (),
) -> Int8PTQ:
    """Int8 post-training quantization: activation ranges calibrated on training images.

    Rewrites the network exactly as ``int8_qat`` does (BN-folded convs, per-channel int8
    weights, per-tensor activation fake quants at the same places), so the export, eval,
    quant-report and sensitivity paths are the same; the ranges come from a calibration pass
    (``yoloqat calibrate``) instead of training.

    Args:
        method: ``minmax`` (the observed min and max over all calibration images) or
            ``percentile`` (per batch the ``100 - p`` and ``p`` percentiles, averaged over the
            batches: robust to rare outliers).
        percentile: ``p`` for ``percentile``, in (50, 100].
        num_bits: bits of weights and activations (2..8).
        per_channel: [weights, activations]; activations are per tensor.
        symmetric: [weights, activations].
        skip_layers: fnmatch patterns of cell paths left in float.
    """
    if method not in METHODS:
        raise ConfigError(
            f"quantizer.method={method!r} is not valid; expected one of {', '.join(METHODS)}"
        )
    ok = isinstance(percentile, (int, float)) and not isinstance(percentile, bool)
    if not ok or not 50.0 < float(percentile) <= 100.0:
        raise ConfigError(
            f"quantizer.percentile={percentile!r} is not valid; expected a number in (50, 100]"
        )
    if isinstance(num_bits, bool) or not isinstance(num_bits, int) or not 2 <= num_bits <= 8:
        raise ConfigError(f"quantizer.num_bits={num_bits!r} is not valid; expected 2..8")
    pairs = []
    for name, value in (("per_channel", per_channel), ("symmetric", symmetric)):
        if (
            isinstance(value, str)
            or not isinstance(value, Sequence)
            or len(value) != 2
            or not all(isinstance(v, bool) for v in value)
        ):
            raise ConfigError(
                f"quantizer.{name}={value!r} is not valid; expected [weights, activations] "
                "booleans, e.g. [true, false]"
            )
        pairs.append((bool(value[0]), bool(value[1])))
    if pairs[0][1]:
        raise ConfigError("quantizer.per_channel: activations are quantized per tensor")
    if isinstance(skip_layers, str) or not all(isinstance(p, str) for p in skip_layers):
        raise ConfigError(
            f"quantizer.skip_layers={skip_layers!r} is not valid; expected a list of patterns"
        )

    from yoloqat.core.quant.fake_quant import QuantConfig

    from .calibrate import Int8PTQ

    config = QuantConfig(
        num_bits=num_bits,
        per_channel_weights=pairs[0][0],
        symmetric_weights=pairs[1][0],
        symmetric_acts=pairs[1][1],
    )
    return Int8PTQ(config, skip_layers=tuple(skip_layers), method=method, percentile=percentile)


@hookimpl
def yoloqat_quantizers() -> dict:
    return {"int8_ptq": int8_ptq}
