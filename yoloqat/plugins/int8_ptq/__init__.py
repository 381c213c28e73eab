"""``int8_ptq``: int8 post-training quantization, calibrated on training images, no training.

Manifest only: MindSpore is imported when the factory is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl
from yoloqat.core.quant.params import check_int, check_pair, check_patterns, check_per_channel

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
    num_bits = check_int("num_bits", num_bits, 2, 8)
    per_w = check_per_channel(per_channel)
    sym_w, sym_a = check_pair("symmetric", symmetric)
    skip_layers = check_patterns("skip_layers", skip_layers)

    from yoloqat.core.quant.fake_quant import QuantConfig

    from .calibrate import Int8PTQ

    config = QuantConfig(
        num_bits=num_bits,
        per_channel_weights=per_w,
        symmetric_weights=sym_w,
        symmetric_acts=sym_a,
    )
    return Int8PTQ(config, skip_layers=tuple(skip_layers), method=method, percentile=percentile)


@hookimpl
def yoloqat_quantizers() -> dict:
    return {"int8_ptq": int8_ptq}
