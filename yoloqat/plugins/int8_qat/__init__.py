"""``int8_qat``: int8 quantization-aware training (the seed's ``QuantizationAwareTraining``).

Manifest only: MindSpore is imported when the factory is called.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from yoloqat.core.errors import ConfigError
from yoloqat.core.hookspecs import hookimpl
from yoloqat.core.quant.params import check_int, check_pair, check_patterns, check_per_channel

if TYPE_CHECKING:
    from .quantizer import Int8QAT


def int8_qat(
    *,
    num_bits: int = 8,
    narrow_range: bool = False,
    quant_delay: int = 0,
    per_channel: Sequence[bool] = (True, False),
    symmetric: Sequence[bool] = (True, False),
    freeze_bn: int = 10_000_000,
    ema_decay: float = 0.999,
    ema_init: str = "fixed",
    skip_layers: Sequence[str] = (),
) -> Int8QAT:
    """Int8 quantization-aware training: BN folding and fake quantization (seed defaults).

    Returns a quantizer whose ``apply(network)`` rewrites, in place, every conv + BN +
    activation block (the bundled ``ConvBnAct``, or ``nn.Conv2d, nn.BatchNorm2d[, nn.ReLU |
    nn.LeakyReLU | nn.SiLU | nn.Sigmoid | Mish]`` in a ``SequentialCell``) into a BN-folded
    conv with fake-quantized weights and activations, every output conv into a conv with
    fake-quantized weights (float bias and outputs), every residual ``Add`` cell into an add
    followed by a fake quant, and any other ``nn.Conv2d`` (any ``group``) into a conv with
    fake-quantized input and weights. Parameter names are unchanged, so float checkpoints
    load into the quantized network.

    Args:
        num_bits: bits of weights and activations (2..8); the quant range is [0, 2^b - 1].
        narrow_range: start the quant range at 1 instead of 0.
        quant_delay: training steps during which fake quantization is bypassed (observers
            still update); evaluation always fake-quantizes. Steps are counted by each
            quantized layer (a ``step`` Parameter, +1 per training-mode forward, saved in
            checkpoints), so the train loop has nothing to advance.
        per_channel: [weights, activations]: one range per output channel. Only weights
            can be per-channel.
        symmetric: [weights, activations]: symmetric ranges (min = -max).
        freeze_bn: from this training step on, BN uses (and no longer updates) its running
            statistics; before it, batch statistics. 10,000,000 or more (the default)
            means never, and compiles the training graph without the freeze switch.
        ema_decay: decay of the moving-average activation ranges (LeakyReLU, residual adds).
        ema_init: where those averages start: ``fixed`` (the seed: ``±6``) or
            ``first_batch`` (the first training batch's range; better for short fine-tunes,
            whose activations may exceed 6 long before a 0.999 average gets there).
        skip_layers: fnmatch patterns of cell paths left in float, e.g. ["head.*.out"].
    """
    num_bits = check_int("num_bits", num_bits, 2, 8)
    quant_delay = check_int("quant_delay", quant_delay, 0)
    freeze_bn = check_int("freeze_bn", freeze_bn, 0)
    per_w = check_per_channel(per_channel)
    sym_w, sym_a = check_pair("symmetric", symmetric)
    if not isinstance(narrow_range, bool):
        raise ConfigError(
            f"quantizer.narrow_range={narrow_range!r} is not valid; expected a boolean"
        )
    if (
        isinstance(ema_decay, bool)
        or not isinstance(ema_decay, (int, float))
        or not (0.0 <= ema_decay < 1.0)
    ):
        raise ConfigError(
            f"quantizer.ema_decay={ema_decay!r} is not valid; expected a number in [0, 1)"
        )
    if ema_init not in ("fixed", "first_batch"):
        raise ConfigError(
            f"quantizer.ema_init={ema_init!r} is not valid; expected fixed or first_batch"
        )
    skip_layers = check_patterns("skip_layers", skip_layers)

    from yoloqat.core.quant.fake_quant import QuantConfig

    from .quantizer import Int8QAT

    config = QuantConfig(
        num_bits=num_bits,
        narrow_range=narrow_range,
        per_channel_weights=per_w,
        symmetric_weights=sym_w,
        symmetric_acts=sym_a,
        quant_delay=quant_delay,
        freeze_bn=freeze_bn,
        ema_decay=float(ema_decay),
        ema_init=ema_init,
    )
    return Int8QAT(config, skip_layers=tuple(skip_layers))


@hookimpl
def yoloqat_quantizers() -> dict:
    return {"int8_qat": int8_qat}
