"""The quantizer contract: what export, quant-report, sensitivity and eval need of a quantizer.

A quantizer rewrites a float network in place (:meth:`Quantizer.apply`) and then answers for
it: which layers it quantized and which compute layers it left float (:meth:`summary`), a
switch for its fake quantization (:meth:`set_fake_quant`), per-layer gates that need no
recompilation (:meth:`eval_gates`), and an :class:`ExportPlan` (:meth:`export_plan`) that
the int8 exporter turns into an ONNX QDQ graph. No code outside the quantizer's plugin needs
to know its cell classes.

How the exporter uses the plan (``yoloqat.deploy.onnx_export``): inside
``with quantizer.export_plan(network) as plan:`` the network's eval-mode graph must be the
*float* computation of the quantized network, with

- every quantized convolution computed by an ``nn.Conv2d`` (or its ``conv2d`` primitive) on
  a weight Parameter named in ``plan.weights`` (the key is the Parameter's ``name``), and
- every activation fake quant replaced by a multiplication with a 0-d float32 Parameter of
  value 1.0 whose name is a key of ``plan.activations`` (a *marker*).

MindSpore's ONNX exporter names initializers after Parameters, so the exporter finds each
marker ``Mul`` and each conv weight by name and writes ``QuantizeLinear -> DequantizeLinear``
(activations) and int8 weights + ``DequantizeLinear`` (weights) there. On leaving the block
the network must be as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

#: Attribute under which :func:`attach` records a network's quantizer.
ATTRIBUTE = "yoloqat_quantizer"


@dataclass(frozen=True)
class ActivationQuant:
    """Per-tensor quantization of one activation: ``x ~ (code - zero_point) * scale``.

    ``qmin``/``qmax`` bound the unsigned codes (0..255 for 8 bits, 1..255 with a narrow
    range); ``zero_point`` is an integer in that range.
    """

    scale: float
    zero_point: int
    qmin: int = 0
    qmax: int = 255


@dataclass(frozen=True)
class WeightQuant:
    """The int8 weight of one quantized convolution, ready for ``DequantizeLinear``.

    ``codes`` (int8, the conv weight's shape) dequantize as ``(codes - zero_point) * scale``
    per output channel (``scale``/``zero_point`` of shape ``(C,)``) or per tensor (0-d).
    ``folds_bn``: the codes are those of the conv weight with the following BatchNorm folded
    in (running statistics); ``bias`` (float32 ``(C,)``) is then the folded bias that replaces
    the conv's bias and the BatchNorm. Without ``folds_bn``, ``bias`` is None and a
    following BatchNorm stays a separate (float) operator.
    """

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    folds_bn: bool = False
    bias: np.ndarray | None = None


@dataclass
class ExportPlan:
    """What the int8 exporter writes: weights by Parameter name, activations by marker name."""

    weights: dict[str, WeightQuant] = field(default_factory=dict)
    activations: dict[str, ActivationQuant] = field(default_factory=dict)


@dataclass(frozen=True)
class QuantizedLayer:
    """One quantized layer: its cell path, what it is (``conv``, ``add``, ...) and its bits."""

    path: str
    kind: str
    bits: int


@dataclass
class QuantSummary:
    """Which layers a quantizer quantized, and which compute layers (convs) it left float.

    ``skipped`` are the float layers the user asked for (``skip_layers``); ``unsupported``
    are float convs the quantizer could not match to a pattern it quantizes.
    """

    quantized: list[QuantizedLayer] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)

    @property
    def quantized_convs(self) -> int:
        """Number of quantized convolutions."""
        return sum(1 for layer in self.quantized if "conv" in layer.kind)

    @property
    def total_convs(self) -> int:
        """Convolutions in the network: quantized, skipped and unsupported."""
        return self.quantized_convs + len(self.skipped) + len(self.unsupported)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quantized": [vars(layer) for layer in self.quantized],
            "skipped": list(self.skipped),
            "unsupported": list(self.unsupported),
            "quantized_convs": self.quantized_convs,
            "total_convs": self.total_convs,
        }


@runtime_checkable
class Quantizer(Protocol):
    """What a ``yoloqat_quantizers`` factory returns.

    Every method takes the network the quantizer was applied to (a ``Detector`` or any
    ``nn.Cell``).
    """

    def apply(self, network: Any) -> Any:
        """Quantize ``network`` in place (keeping Parameter names) and return it.

        Must be idempotent. Float weights are loaded before ``apply``.
        """

    def summary(self, network: Any) -> QuantSummary:
        """Quantized layers (path, kind, bits) and the convs left float."""

    def set_fake_quant(self, network: Any, enabled: bool, patterns: Sequence[str] = ("*",)) -> int:
        """Switch fake quantization of the layers whose path matches ``patterns`` (fnmatch);
        return how many layers were switched. Takes effect at the next graph compilation."""

    def eval_gates(self, network: Any) -> AbstractContextManager[tuple[Any, dict[str, list]]]:
        """Per-layer 0/1 gates of eval-mode fake quantization, changeable without recompiling.

        Yields ``(net, gates)``: ``net`` is the cell to run (eval mode) and ``gates`` maps
        each quantized layer's path to its gate Parameters (all 1.0 on entry; ``set_data``
        0.0 to evaluate that layer in float). Used by the layer-sensitivity report.
        """

    def export_plan(self, network: Any) -> AbstractContextManager[ExportPlan]:
        """Put ``network`` in export form and yield its :class:`ExportPlan` (module doc)."""


def attach(network: Any, quantizer: Quantizer) -> None:
    """Record ``quantizer`` as the one that quantized ``network`` (see :func:`quantizer_of`)."""
    object.__setattr__(network, ATTRIBUTE, quantizer)


def quantizer_of(network: Any) -> Quantizer | None:
    """The quantizer recorded on ``network`` by :func:`attach`, or None (a float network)."""
    return getattr(network, ATTRIBUTE, None)


def is_quantized(network: Any) -> bool:
    """Whether a quantizer has been applied to ``network`` and quantized at least one layer."""
    quantizer = quantizer_of(network)
    return quantizer is not None and bool(quantizer.summary(network).quantized)


def set_fake_quant(network: Any, enabled: bool, patterns: Sequence[str] = ("*",)) -> int:
    """Switch fake quantization of a quantized ``network`` through its quantizer (0 if float)."""
    quantizer = quantizer_of(network)
    return 0 if quantizer is None else quantizer.set_fake_quant(network, enabled, patterns)


#: Members :func:`yoloqat.core.contracts.check_component` checks on a quantizer.
MEMBERS: tuple[str, ...] = ("apply", "summary", "set_fake_quant", "eval_gates", "export_plan")
