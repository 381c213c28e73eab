"""A small ONNX graph builder used by the exporter's emitters.

Emitters add nodes and initializers through a :class:`GraphBuilder` and get back tensor
names. The builder tracks the static ``(C, H, W)`` shape of every 4-D activation it made,
so emitters can compute explicit paddings (TF "SAME") without running shape inference.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: ONNX tensor element types used here (onnx.TensorProto values).
FLOAT, UINT8, INT8, INT32, INT64 = 1, 2, 3, 6, 7


class GraphBuilder:
    """Accumulates ONNX nodes and initializers with unique, readable names.

    ``int8`` says whether quantized cells are emitted in QDQ form, ``opset`` is the default
    domain's opset, and ``options`` holds emitter options (e.g. the activation dtype).
    """

    def __init__(self, *, int8: bool = False, opset: int = 17, **options: Any) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx = onnx
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.int8 = int8
        self.opset = opset
        self.options = options
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.shapes: dict[str, tuple[int, ...]] = {}
        #: DequantizeLinear outputs -> their (scale, zero point) initializer names.
        self.qparams: dict[str, tuple[str, str]] = {}
        self._names: set[str] = set()
        #: Cell path ("backbone.layer1.0.conv1") of the cell being emitted, for node names.
        self.scope: list[str] = []

    # -- names ---------------------------------------------------------------------------
    def name(self, hint: str) -> str:
        """A unique tensor/node name built from the current scope and ``hint``."""
        base = ".".join([*self.scope, hint]) if self.scope else hint
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def reserve(self, name: str) -> str:
        """Claim ``name`` exactly (graph inputs/outputs); raise if it is taken."""
        if name in self._names:
            raise ValueError(f"ONNX name {name!r} is used twice")
        self._names.add(name)
        return name

    # -- building ------------------------------------------------------------------------
    def initializer(self, array: np.ndarray, hint: str) -> str:
        """Add ``array`` (dtype kept) as an initializer; return its name."""
        name = self.name(hint)
        # not np.ascontiguousarray: it turns 0-d arrays (scalar scales) into shape (1,)
        array = np.array(array, order="C", copy=True)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def const(self, values: Any, hint: str, dtype: Any = np.float32) -> str:
        """An initializer from ``values`` cast to ``dtype``."""
        return self.initializer(np.asarray(values, dtype=dtype), hint)

    def node(
        self,
        op_type: str,
        inputs: list[str],
        hint: str | None = None,
        *,
        shape: tuple[int, ...] | None = None,
        num_outputs: int = 1,
        domain: str = "",
        **attrs: Any,
    ) -> str:
        """Add one node; return its (first) output name. ``shape`` records a (C, H, W)."""
        outputs = [
            self.name(f"{hint or op_type.lower()}" + (f"_{i}" if i else ""))
            for i in range(num_outputs)
        ]
        self.nodes.append(
            self.helper.make_node(
                op_type,
                inputs,
                outputs,
                name=self.name(f"{hint or op_type}/node"),
                domain=domain,
                **attrs,
            )
        )
        if shape is not None:
            self.shapes[outputs[0]] = tuple(int(s) for s in shape)
        return outputs[0]

    def shape_of(self, tensor: str) -> tuple[int, ...]:
        """The recorded (C, H, W) of ``tensor`` (KeyError names it if unknown)."""
        try:
            return self.shapes[tensor]
        except KeyError:
            raise KeyError(f"no static shape recorded for ONNX tensor {tensor!r}") from None

    def model(
        self,
        inputs: list[tuple[str, tuple[Any, ...]]],
        outputs: list[tuple[str, tuple[Any, ...]]],
        *,
        graph_name: str = "yoloqat",
        doc: str = "",
        metadata: dict[str, str] | None = None,
    ) -> Any:
        """The ``onnx.ModelProto`` of everything added, with float32 inputs/outputs."""
        helper = self.helper
        graph = helper.make_graph(
            self.nodes,
            graph_name,
            [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in inputs],
            [helper.make_tensor_value_info(n, FLOAT, list(s)) for n, s in outputs],
            initializer=self.initializers,
        )
        opsets = [helper.make_opsetid("", self.opset)]
        if any(n.domain == "com.microsoft" for n in self.nodes):
            opsets.append(helper.make_opsetid("com.microsoft", 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="yoloqat")
        model.doc_string = doc
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        # The lowest IR version for these opsets: loadable by older runtimes.
        model.ir_version = helper.find_min_ir_version_for(opsets)
        return model
