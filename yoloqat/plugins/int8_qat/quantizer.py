"""The ``int8_qat`` quantizer: the shared fake-quant rewrite in the seed's configuration."""

from __future__ import annotations

from mindspore import nn

from yoloqat.core.quant.rewrite import (
    FakeQuantizer,
    eval_gates,
    quantized_layers,
    refresh_weight_ranges,
    set_fake_quant,
)

__all__ = [
    "Int8QAT",
    "eval_gates",
    "is_quantized",
    "quantized_layers",
    "refresh_weight_ranges",
    "set_fake_quant",
]


class Int8QAT(FakeQuantizer):
    """Int8 quantization-aware training in the seed's configuration (docs/seed.md §7).

    :meth:`apply` replaces, in place, every conv pattern the shared rewrite knows
    (:mod:`yoloqat.core.quant.rewrite`) whose cell path matches none of ``skip_layers``.
    Load float weights *before* ``apply`` (the weight ranges start from the loaded weights),
    or call :func:`refresh_weight_ranges` after loading.
    """


def is_quantized(network: nn.Cell) -> bool:
    """Whether ``network`` contains at least one quantized layer."""
    return bool(quantized_layers(network))
