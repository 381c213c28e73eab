"""Small rewrites of an ONNX graph traced by ``mindspore.export``: constants, BN folding,
LeakyReLU fusion, marker removal, dynamic batch.

MindSpore's ONNX exporter traces any network made of standard cells and ops (Conv2d with
groups, BatchNorm2d, ReLU, LeakyReLU, SiLU, add, concat, MaxPool2d, sigmoid, reshape,
``ops.ResizeNearestNeighbor``) and names each initializer after the Parameter it holds; what
follows only tidies its output so that ONNX Runtime and OpenVINO see the graph they run best.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Graph:
    """Index of an ``onnx.ModelProto``'s graph: initializers, producers and consumers."""

    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.graph = model.graph
        self._np = numpy_helper
        self._names: set[str] = set()
        self.reindex()

    def reindex(self) -> None:
        self.inits = {t.name: t for t in self.graph.initializer}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = {}
        for node in self.graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self._names |= set(self.inits) | set(self.producer) | {n.name for n in self.graph.node}

    # -- values ----------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        """The value of ``name`` if it is an initializer or a Constant node's output."""
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return self._np.to_array(attr.t)
        return None

    def unique(self, hint: str) -> str:
        name, i = hint, 1
        while name in self._names:
            name = f"{hint}_{i}"
            i += 1
        self._names.add(name)
        return name

    def add_init(self, array: np.ndarray | np.generic, hint: str) -> str:
        """Add ``array`` (dtype kept, 0-d kept) as an initializer; return its name."""
        name = self.unique(hint)
        tensor = self._np.from_array(np.array(array, order="C", copy=True), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def set_init(self, name: str, array: np.ndarray) -> None:
        """Replace the value of initializer ``name`` (same name)."""
        tensor = self._np.from_array(np.array(array, order="C", copy=True), name)
        self.inits[name].CopyFrom(tensor)

    # -- nodes -----------------------------------------------------------------------------
    def node(self, op_type: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        """Append a node with one output; return the output name."""
        from onnx import helper

        out = self.unique(hint)
        node = helper.make_node(op_type, inputs, [out], name=self.unique(f"{hint}/node"), **attrs)
        self.graph.node.append(node)
        self.producer[out] = node
        for inp in inputs:
            self.consumers.setdefault(inp, []).append(node)
        return out

    def rewire(self, old: str, new: str) -> None:
        """Every use of tensor ``old`` (node inputs, graph outputs) reads ``new`` instead."""
        for node in self.consumers.pop(old, []):
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new
            self.consumers.setdefault(new, []).append(node)
        for out in self.graph.output:
            if out.name == old:
                out.name = new

    def remove(self, node: Any) -> None:
        self.graph.node.remove(node)

    def sort(self) -> None:
        """Topologically sort the nodes (appended nodes may come before their consumers)."""
        ready = {i.name for i in self.graph.input} | set(self.inits) | {""}
        pending = list(self.graph.node)
        ordered = []
        while pending:
            rest = []
            for node in pending:
                if all(i in ready for i in node.input):
                    ordered.append(node)
                    ready.update(node.output)
                else:
                    rest.append(node)
            if len(rest) == len(pending):
                raise RuntimeError(f"ONNX graph has a cycle or a missing input at {rest[0].name}")
            pending = rest
        outputs = {o.name for o in self.graph.output}
        while True:  # drop nodes whose outputs nothing reads (e.g. replaced Constants)
            used = {i for n in ordered for i in n.input} | outputs
            alive = [n for n in ordered if any(o in used for o in n.output)]
            if len(alive) == len(ordered):
                break
            ordered = alive
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)
        self.reindex()

    def single_consumer(self, tensor: str, op_type: str) -> Any | None:
        """The only consumer of ``tensor`` if it is an ``op_type`` node (and not an output)."""
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op_type:
            return None
        if any(o.name == tensor for o in self.graph.output):
            return None
        return users[0]


# -- rewrites --------------------------------------------------------------------------------
def bn_params(
    g: Graph, bn: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.float64] | None:
    """``(gamma, beta, mean, var, eps)`` of an inference BatchNormalization, or None."""
    values = [g.const(name) for name in bn.input[1:5]]
    arrays = [np.asarray(v, np.float64) for v in values if v is not None]
    if len(arrays) != 4:
        return None
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
    gamma, beta, mean, var = arrays
    return gamma, beta, mean, var, np.float64(eps)


def following_bn(g: Graph, conv: Any) -> Any | None:
    """The BatchNormalization that alone consumes ``conv``'s output, if its params are known."""
    bn = g.single_consumer(conv.output[0], "BatchNormalization")
    return bn if bn is not None and bn_params(g, bn) is not None else None


def absorb_bn(g: Graph, conv: Any, bn: Any, bias: np.ndarray) -> None:
    """Make ``conv`` compute ``bn(conv)``: its output takes the BN's place, with ``bias``."""
    if len(conv.input) > 2:
        conv.input[2] = g.add_init(bias.astype(np.float32), f"{conv.input[1]}_folded_bias")
    else:
        conv.input.append(g.add_init(bias.astype(np.float32), f"{conv.input[1]}_folded_bias"))
    out = bn.output[0]
    g.remove(bn)
    conv.output[0] = out
    g.producer[out] = conv


def fold_batchnorms(g: Graph) -> int:
    """Fold every Conv -> BatchNormalization pair into the Conv (float weights). Count."""
    count = 0
    for conv in [n for n in g.graph.node if n.op_type == "Conv"]:
        bn = following_bn(g, conv)
        weight = g.const(conv.input[1])
        if bn is None or weight is None or conv.input[1] not in g.inits:
            continue
        params = bn_params(g, bn)
        if params is None:  # following_bn checked it
            continue
        gamma, beta, mean, var, eps = params
        s = gamma / np.sqrt(var + eps)
        bias = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        b = np.zeros_like(s) if bias is None else np.asarray(bias, np.float64)
        g.set_init(
            conv.input[1], (weight.astype(np.float64) * s[:, None, None, None]).astype(np.float32)
        )
        absorb_bn(g, conv, bn, (b - mean) * s + beta)
        count += 1
    return count


def fuse_leaky_relu(g: Graph) -> int:
    """``Max(x, Mul(x, a))`` with a scalar ``0 < a < 1`` (MindSpore's LeakyReLU) -> LeakyRelu."""
    from onnx import helper

    count = 0
    for mul in [n for n in g.graph.node if n.op_type == "Mul"]:
        x, c = mul.input
        if g.const(x) is not None:
            x, c = c, x
        alpha = g.const(c)
        if alpha is None or alpha.size != 1 or not 0.0 < float(alpha.reshape(-1)[0]) < 1.0:
            continue
        mx = g.single_consumer(mul.output[0], "Max")
        if mx is None or set(mx.input) != {x, mul.output[0]}:
            continue
        leaky = helper.make_node(
            "LeakyRelu",
            [x],
            [mx.output[0]],
            name=g.unique(f"{mx.name}/leaky"),
            alpha=float(alpha.reshape(-1)[0]),
        )
        index = list(g.graph.node).index(mx)
        g.graph.node.insert(index, leaky)
        g.remove(mx)
        g.remove(mul)
        count += 1
    g.reindex()
    return count


def marker_muls(g: Graph, names: set[str] | None = None) -> list[tuple[Any, str]]:
    """``(Mul node, marker name)`` of every ``x * marker`` whose marker is in ``names``
    (every initializer named ``*.export_marker`` when ``names`` is None)."""
    found = []
    for node in g.graph.node:
        if node.op_type != "Mul":
            continue
        for name in node.input[1:]:
            if (names is None and name.endswith(".export_marker")) or (names and name in names):
                found.append((node, name))
    return found


def drop_markers(g: Graph) -> int:
    """Remove every marker multiplication (float export of a quantized network)."""
    pairs = marker_muls(g)
    for node, name in pairs:
        x = node.input[0] if node.input[1] == name else node.input[1]
        g.remove(node)
        g.rewire(node.output[0], x)
    g.reindex()
    return len(pairs)


def _batch_tensors(g: Graph) -> set[str]:
    """Names of the tensors computed from the graph input (they carry its batch dimension);
    the others (grids, strides, anchors folded from constants) do not."""
    carried = {value.name for value in g.graph.input}
    for node in g.graph.node:  # topological order
        if any(name in carried for name in node.input):
            carried.update(node.output)
    return carried


def make_batch_dynamic(g: Graph, traced_batch: int = 1) -> None:
    """A symbolic ``batch`` first dimension for the input and outputs of a batch-1 trace.

    Reshape targets that start with the traced batch size copy the input's batch instead
    (``0`` in ONNX Reshape), for the Reshapes of tensors computed from the input only: a
    head's grid reshaped to ``(1, H * W, 1)`` keeps its 1. Static shape annotations are
    dropped.
    """
    for value in [*g.graph.input, *g.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"
    g.sort()
    carried = _batch_tensors(g)
    for node in g.graph.node:
        if node.op_type != "Reshape" or node.input[0] not in carried:
            continue
        shape = g.const(node.input[1])
        if shape is not None and shape.ndim == 1 and shape.size and shape[0] == traced_batch:
            fixed = shape.copy()
            fixed[0] = 0
            node.input[1] = g.add_init(fixed.astype(np.int64), f"{node.input[1]}_dynamic")
    for node in [n for n in g.graph.node if n.op_type == "Resize" and n.input[0] in carried]:
        sizes = g.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        if sizes is None or sizes.size != 4 or sizes[0] != traced_batch:
            continue
        # sizes = [N, C] of the input (at run time) + the traced [H, W]
        in_shape = g.node("Shape", [node.input[0]], f"{node.name}_in_shape")
        starts = g.add_init(np.array([0], np.int64), f"{node.name}_nc_start")
        ends = g.add_init(np.array([2], np.int64), f"{node.name}_nc_end")
        nc = g.node("Slice", [in_shape, starts, ends], f"{node.name}_nc")
        hw = g.add_init(np.asarray(sizes[2:], np.int64), f"{node.name}_hw")
        node.input[3] = g.node("Concat", [nc, hw], f"{node.name}_sizes", axis=0)
    del g.graph.value_info[:]
    g.reindex()
