"""The ``int8_qat`` quantizer: the shared fake-quant rewrite in the seed's configuration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from mindspore import nn

from yoloqat.core.contracts import quantizer as contract
from yoloqat.core.quant.rewrite import FakeQuantizer, quantized_layers, refresh_weight_ranges

__all__ = [
    "Int8QAT",
    "eval_gates",
    "is_quantized",
    "quantized_layers",
    "refresh_weight_ranges",
    "set_fake_quant",
]


class Int8QAT(FakeQuantizer):
    """Int8 quantization-aware training in the seed's configuration (spec §7).

    :meth:`apply` replaces, in place, every conv pattern the shared rewrite knows
    (:mod:`yoloqat.core.quant.rewrite`) whose cell path matches none of ``skip_layers``.
    Load float weights *before* ``apply`` (the weight ranges start from the loaded weights),
    or call :func:`refresh_weight_ranges` after loading.
    """


def is_quantized(network: nn.Cell) -> bool:
    """Whether ``network`` contains at least one quantized layer."""
    return bool(quantized_layers(network))


def set_fake_quant(network: nn.Cell, enabled: bool, patterns: Sequence[str] = ("*",)) -> int:
    """Switch fake quantization on/off in the quantized layers whose path matches ``patterns``.

    Read when the graph is compiled: in GRAPH_MODE change it before the first call of a
    network (or build a new train/eval cell). Returns the count.
    """
    quantizer = contract.quantizer_of(network) or Int8QAT(None)  # type: ignore[arg-type]
    return quantizer.set_fake_quant(network, enabled, patterns)


@contextmanager
def eval_gates(network: nn.Cell) -> Iterator[tuple[nn.Cell, dict[str, list]]]:
    """See :meth:`FakeQuantizer.eval_gates`."""
    with Int8QAT(None).eval_gates(network) as pair:  # type: ignore[arg-type]
        yield pair
