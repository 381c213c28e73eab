"""Int8 QDQ emitters for the cells of the ``int8_qat`` quantizer (placeholder)."""

from __future__ import annotations

from typing import Any


def is_quantized(network: Any) -> bool:
    """Whether ``network`` holds quantizer cells (fake-quant)."""
    return False


def register_quant_emitters() -> None:
    """Register the QDQ emitters."""
