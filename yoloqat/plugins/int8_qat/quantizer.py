"""The ``int8_qat`` quantizer: rewrites a network's building blocks into quantized ones."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase

import numpy as np
from mindspore import Parameter, Tensor, nn

from yoloqat.core.layers import Add, ConvBnAct, OutputConv

from .fake_quant import QuantConfig
from .layers import QuantAdd, QuantConvBnAct, QuantLayer, QuantOutputConv

#: Float block type -> quantized replacement. Matching is by exact type, so subclasses of the
#: blocks (which may change their ``construct``) are left alone.
REPLACEMENTS: dict[type, type] = {
    ConvBnAct: QuantConvBnAct,
    OutputConv: QuantOutputConv,
    Add: QuantAdd,
}


class Int8QAT:
    """Int8 quantization-aware training in the seed's configuration (spec §7).

    :meth:`apply` replaces, in place, every ``ConvBnAct`` (BN folded, per-channel weights,
    activation fake quants), ``OutputConv`` (per-channel weights, float bias and outputs) and
    ``Add`` (fake quant after the sum) whose cell path matches none of ``skip_layers``.
    Load float weights *before* ``apply`` (the weight ranges start from the loaded weights),
    or call :func:`refresh_weight_ranges` after loading.
    """

    def __init__(self, config: QuantConfig, skip_layers: tuple[str, ...] = ()) -> None:
        self.config = config
        self.skip_layers = tuple(skip_layers)

    def __repr__(self) -> str:
        return f"Int8QAT({self.config}, skip_layers={self.skip_layers!r})"

    def skipped(self, path: str) -> bool:
        """Whether the cell at ``path`` matches one of the ``skip_layers`` patterns."""
        return any(fnmatchcase(path, pattern) for pattern in self.skip_layers)

    def apply(self, network: nn.Cell) -> nn.Cell:
        """Quantize ``network`` in place and return it (idempotent).

        Parameter names are unchanged; new state (observer ranges, step counters) is named
        after the replaced cell's path, e.g. ``backbone.conv0.act_quant.min_value``.
        """
        root_prefix = _root_prefix(network)
        if type(network) in REPLACEMENTS:
            if self.skipped(""):
                return network
            return self._replace(network, root_prefix.rstrip("."))
        self._walk(network, "", root_prefix, {})
        return network

    def _walk(self, cell: nn.Cell, path: str, root_prefix: str, done: dict) -> None:
        for key, child in list(cell.name_cells().items()):
            child_path = f"{path}.{key}" if path else key
            if id(child) in done:  # a cell shared by several parents: one replacement
                shared = done[id(child)]
                names = [(p, p.name) for p in shared.get_parameters()]
                _set_child(cell, key, shared)
                for param, name in names:  # keep the names of the first occurrence
                    param.name = name
            elif type(child) in REPLACEMENTS:
                if not self.skipped(child_path):
                    done[id(child)] = self._replace(child, root_prefix + child_path, cell, key)
            elif not isinstance(child, QuantLayer):
                self._walk(child, child_path, root_prefix, done)

    def _replace(
        self, cell: nn.Cell, full_path: str, parent: nn.Cell | None = None, key: str = ""
    ) -> QuantLayer:
        # MindSpore re-prefixes Parameter names whenever a cell is assigned as an attribute:
        # record the original names first and restore them once the new cell is in place.
        keep = {id(p): p.name for p in cell.get_parameters()}
        new = REPLACEMENTS[type(cell)](cell, self.config)
        if parent is not None:
            _set_child(parent, key, new)
        for rel, param in new.parameters_and_names():
            param.name = keep.get(id(param), f"{full_path}.{rel}" if full_path else rel)
        return new


def _root_prefix(network: nn.Cell) -> str:
    """The prefix the network's Parameter names carry in front of their paths (usually '')."""
    for path, param in network.parameters_and_names():
        if param.name.endswith(path):
            return param.name[: len(param.name) - len(path)]
        return ""
    return ""


def _set_child(parent: nn.Cell, key: str, child: nn.Cell) -> None:
    if isinstance(parent, (nn.SequentialCell, nn.CellList)):
        parent[int(key)] = child
    elif isinstance(parent, nn.CellDict):
        parent[key] = child
    else:
        setattr(parent, key, child)


def quantized_layers(network: nn.Cell) -> list[tuple[str, QuantLayer]]:
    """``(path, layer)`` of every quantized layer in ``network``, in definition order."""
    cells = network.cells_and_names()
    return [(name, cell) for name, cell in cells if isinstance(cell, QuantLayer)]


def is_quantized(network: nn.Cell) -> bool:
    """Whether ``network`` contains at least one quantized layer."""
    return any(isinstance(cell, QuantLayer) for _, cell in network.cells_and_names())


def refresh_weight_ranges(network: nn.Cell) -> int:
    """Reset every weight fake-quant range from the current (folded) weights.

    Use after loading float weights into an already quantized network; loading a QAT
    checkpoint restores the ranges it saved. Returns the number of layers updated.
    """
    layers = [cell for _, cell in quantized_layers(network) if hasattr(cell, "weight_quant")]
    for cell in layers:
        cell.refresh_weight_range()
    return len(layers)


def set_fake_quant(network: nn.Cell, enabled: bool, patterns: tuple[str, ...] = ("*",)) -> int:
    """Switch fake quantization on/off in the quantized layers whose path matches ``patterns``.

    The switch is a Python attribute read when the graph is compiled: in GRAPH_MODE change it
    before the first call of a network (or build a new train/eval cell). Returns the count.
    """
    count = 0
    for path, cell in quantized_layers(network):
        if any(fnmatchcase(path, p) for p in patterns):
            cell.set_fake_quant(enabled)
            count += 1
    return count


class _Fresh(nn.Cell):
    """A new cell around ``network``: MindSpore caches a compiled graph per cell object and
    input shape, so a wrapper is what makes the gated graph compile at all."""

    def __init__(self, network: nn.Cell) -> None:
        super().__init__()
        self.network = network

    def construct(self, x):
        return self.network(x)


@contextmanager
def eval_gates(network: nn.Cell) -> Iterator[tuple[nn.Cell, dict[str, list[Parameter]]]]:
    """Per-layer switches of evaluation-mode fake quantization that need no recompilation.

    Inside the block every fake quant of ``network`` multiplies its quantization error by a
    0/1 Parameter (``x + gate * (fq(x) - x)``), so one compiled GRAPH_MODE graph evaluates
    any subset of quantized layers: set the gates with ``set_data``. Yields ``(net, gates)``:
    ``net`` is the network to run (a new cell around ``network``, so that a graph compiled
    earlier for ``network`` is not reused) and ``gates`` maps each quantized layer's path to
    its gate Parameters, all 1 (every layer quantized). On exit the gates are removed.
    Used by the layer-sensitivity report.
    """
    gates: dict[str, list[Parameter]] = {}
    nodes = []
    for path, layer in quantized_layers(network):
        for attr, fq in layer.fake_quants().items():
            fq.gate = Parameter(
                Tensor(np.float32(1.0)), name=f"{path}.{attr}.eval_gate", requires_grad=False
            )
            fq.gated = True
            gates.setdefault(path, []).append(fq.gate)
            nodes.append(fq)
    net = _Fresh(network)
    net.set_train(False)
    try:
        yield net, gates
    finally:
        for fq in nodes:
            fq.gated = False
            delattr(fq, "gate")
