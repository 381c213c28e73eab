"""``FakeQuantizer``: rewrites a network's conv patterns into fake-quantized layers and
implements the whole quantizer contract (:mod:`yoloqat.core.contracts.quantizer`).

Patterns, matched on the cell tree (exact types, so subclasses with their own ``construct``
are left alone and reported as unsupported):

1. ``ConvBnAct`` -> :class:`QuantConvBnAct` (BN folded, seed §7.2); ``OutputConv`` ->
   :class:`QuantOutputConv`; ``Add`` -> :class:`QuantAdd`;
2. in a ``SequentialCell``, a run ``nn.Conv2d`` (no bias), ``nn.BatchNorm2d`` and optionally
   ``nn.ReLU`` / ``nn.LeakyReLU`` / ``nn.SiLU`` / ``nn.Sigmoid`` / ``Mish`` -> one
   :class:`QuantConvBnAct` (the BN and activation slots become ``nn.Identity``);
3. any other ``nn.Conv2d`` (any ``group``) -> :class:`QuantConv2d` (input and weight fake
   quants), so that every conv of a network made of plain cells is int8 in the export.

Parameter names never change, so float checkpoints load into the quantized network.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from fnmatch import fnmatchcase
from typing import Any

import numpy as np
from mindspore import Parameter, Tensor, nn

from yoloqat.core.contracts.quantizer import (
    ExportPlan,
    QuantizedLayer,
    QuantSummary,
    attach,
)
from yoloqat.core.layers import Add, ConvBnAct, OutputConv, fresh_cell

from .fake_quant import QuantConfig
from .layers import (
    QuantAdd,
    QuantConv2d,
    QuantConvBnAct,
    QuantLayer,
    QuantOutputConv,
    activation_kind,
)

#: Float block type -> builder of its quantized replacement.
REPLACEMENTS: dict[type, Any] = {
    ConvBnAct: QuantConvBnAct.from_block,
    OutputConv: QuantOutputConv,
    Add: QuantAdd,
    nn.Conv2d: QuantConv2d,
}


def quantized_layers(network: nn.Cell) -> list[tuple[str, QuantLayer]]:
    """``(path, layer)`` of every quantized layer in ``network``, in definition order."""
    return [(n, c) for n, c in network.cells_and_names() if isinstance(c, QuantLayer)]


class FakeQuantizer:
    """Fake quantization of a network's conv patterns (see the module doc).

    ``skip_layers``: fnmatch patterns of cell paths left in float. ``name`` is the plugin
    name used in messages.
    """

    def __init__(
        self, config: QuantConfig, skip_layers: Sequence[str] = (), name: str = "int8_qat"
    ) -> None:
        self.config = config
        self.skip_layers = tuple(skip_layers)
        self.name = name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config}, skip_layers={self.skip_layers!r})"

    def skipped(self, path: str) -> bool:
        """Whether the cell at ``path`` matches one of the ``skip_layers`` patterns."""
        return any(fnmatchcase(path, pattern) for pattern in self.skip_layers)

    # -- apply -----------------------------------------------------------------------------
    def apply(self, network: nn.Cell) -> nn.Cell:
        """Quantize ``network`` in place and return it (idempotent)."""
        root_prefix = _root_prefix(network)
        attach(network, self)
        if type(network) in REPLACEMENTS:
            if self.skipped(""):
                return network
            new = self._replace(network, root_prefix.rstrip("."))
            attach(new, self)
            return new
        self._walk(network, "", root_prefix, {})
        return network

    def _walk(self, cell: nn.Cell, path: str, root_prefix: str, done: dict) -> None:
        if isinstance(cell, nn.SequentialCell):
            self._fuse_runs(cell, path, root_prefix)
        for key, child in list(cell.name_cells().items()):
            child_path = f"{path}.{key}" if path else key
            if done.get(id(child), (None,))[0] is child:  # shared by several parents
                shared = done[id(child)][1]
                names = [(p, p.name) for p in shared.get_parameters()]
                _set_child(cell, key, shared)
                for param, name in names:  # keep the names of the first occurrence
                    param.name = name
            elif type(child) in REPLACEMENTS:
                if not self.skipped(child_path):
                    # keep the replaced cell alive: a freed cell's id could be reused by a
                    # new one and mistaken for a shared cell
                    new = self._replace(child, root_prefix + child_path, cell, key)
                    done[id(child)] = (child, new)
            elif not isinstance(child, QuantLayer):
                self._walk(child, child_path, root_prefix, done)

    def _fuse_runs(self, seq: nn.SequentialCell, path: str, root_prefix: str) -> None:
        """Pattern 2: ``Conv2d, BatchNorm2d[, activation]`` runs inside a SequentialCell."""
        cells = list(seq)
        i = 0
        while i < len(cells) - 1:
            conv, bn = cells[i], cells[i + 1]
            conv_path = f"{path}.{i}" if path else str(i)
            if (
                type(conv) is nn.Conv2d
                and not conv.has_bias
                and type(bn) is nn.BatchNorm2d
                and bn.num_features == conv.out_channels
                and not self.skipped(conv_path)
            ):
                act = cells[i + 2] if i + 2 < len(cells) else None
                kind = activation_kind(act) if act is not None else None
                if kind in (None, "none"):
                    act, kind, width = None, "none", 2
                else:
                    width = 3
                keep = {id(p): p.name for c in cells[i : i + width] for p in c.get_parameters()}
                new = QuantConvBnAct(conv, bn, act, kind, self.config)
                # building it re-prefixed the conv's and BN's parameters ("conv.weight"): put
                # the full names back before the assignment, which derives the sequential
                # cell's prefix from the parameter names of its first two cells
                for param in new.get_parameters():
                    param.name = keep.get(id(param), param.name)
                seq[i] = new
                for j in range(i + 1, i + width):
                    seq[j] = nn.Identity()
                full = root_prefix + conv_path
                for rel, param in new.parameters_and_names():
                    param.name = keep.get(id(param), f"{full}.{rel}")
                cells = list(seq)
                i += width
            else:
                i += 1

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

    # -- the contract ----------------------------------------------------------------------
    def summary(self, network: nn.Cell) -> QuantSummary:
        """Quantized layers, and the convs left float (skipped or unsupported)."""
        out = QuantSummary()
        inside: set[int] = set()
        for path, layer in quantized_layers(network):
            out.quantized.append(QuantizedLayer(path, layer.kind, self.config.num_bits))
            inside.update(id(c) for _, c in layer.cells_and_names())
        cells = list(network.cells_and_names())
        blocks = {path for path, cell in cells if isinstance(cell, ConvBnAct)}
        for path, cell in cells:
            if id(cell) in inside or not isinstance(cell, (nn.Conv2d, ConvBnAct)):
                continue
            if isinstance(cell, nn.Conv2d) and path.rpartition(".")[0] in blocks:
                continue  # the conv of a float ConvBnAct is counted with its block
            (out.skipped if self.skipped(path) else out.unsupported).append(path)
        return out

    def set_fake_quant(
        self, network: nn.Cell, enabled: bool, patterns: Sequence[str] = ("*",)
    ) -> int:
        """Switch fake quantization of the quantized layers matching ``patterns``."""
        return set_fake_quant(network, enabled, patterns)

    def eval_gates(self, network: nn.Cell) -> AbstractContextManager[tuple[nn.Cell, dict]]:
        """Per-layer 0/1 gates of eval-mode fake quantization (see :func:`eval_gates`)."""
        return eval_gates(network)

    @contextmanager
    def export_plan(self, network: nn.Cell) -> Iterator[ExportPlan]:
        """Export form: float convs on their weight Parameters, activation fake quants as
        ``x * marker``; yields the weights' int8 codes and the markers' scales."""
        plan = ExportPlan()
        layers = quantized_layers(network)
        nodes = []
        for path, layer in layers:
            entry = layer.export_weight()
            if entry is not None:
                plan.weights[entry[0]] = entry[1]
            for attr, fq in layer.fake_quants().items():
                if attr == "weight_quant" or not fq.enabled:
                    continue
                name = f"{path}.{attr}.export_marker"
                fq.marker = Parameter(Tensor(np.float32(1.0)), name=name, requires_grad=False)
                fq.exporting = True
                plan.activations[name] = fq.activation_quant()
                nodes.append(fq)
            layer.exporting = True
        try:
            yield plan
        finally:
            for fq in nodes:
                fq.exporting = False
                delattr(fq, "marker")
            for _, layer in layers:
                layer.exporting = False


def set_fake_quant(network: nn.Cell, enabled: bool, patterns: Sequence[str] = ("*",)) -> int:
    """Switch fake quantization of the quantized layers matching ``patterns``."""
    count = 0
    for path, layer in quantized_layers(network):
        if any(fnmatchcase(path, p) for p in patterns):
            layer.set_fake_quant(enabled)
            count += 1
    return count


@contextmanager
def eval_gates(network: nn.Cell) -> Iterator[tuple[nn.Cell, dict[str, list]]]:
    """Per-layer 0/1 gates of eval-mode fake quantization (``x + g * (fq(x) - x)``)."""
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
    with fresh_cell(network) as net:
        net.set_train(False)
        try:
            yield net, gates
        finally:
            for fq in nodes:
                fq.gated = False
                delattr(fq, "gate")


def refresh_weight_ranges(network: nn.Cell) -> int:
    """Reset every weight fake-quant range from the current (folded) weights.

    Use after loading float weights into an already quantized network; loading a QAT
    checkpoint restores the ranges it saved. Returns the number of layers updated.
    """
    layers = [cell for _, cell in quantized_layers(network) if hasattr(cell, "weight_quant")]
    for cell in layers:
        cell.refresh_weight_range()
    return len(layers)


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
