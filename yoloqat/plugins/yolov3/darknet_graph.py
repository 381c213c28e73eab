"""A Darknet ``.cfg`` as a yoloqat backbone: every layer up to the ``[yolo]`` layers.

:class:`DarknetGraph` builds one cell per ``.cfg`` section (``layers[i]`` is Darknet's layer
``i``) from the checked :class:`~.darknet_spec.DarknetSpec` and runs them in order, keeping
only the outputs a later ``[route]``/``[shortcut]`` or a ``[yolo]`` layer reads. It returns
the inputs of the ``[yolo]`` layers (the raw YOLO outputs), finest first; the
``darknet_yolo_head`` puts them back in ``[yolo]`` order and decodes them.

The layers are yoloqat's standard cells, so ``int8_qat``/``int8_ptq`` quantize them by
pattern and MindSpore's ONNX exporter maps them: conv + BN + activation is a
:class:`~yoloqat.core.layers.ConvBnAct` (groups, mish and logistic included), a 1x1 linear
conv with bias an :class:`~yoloqat.core.layers.OutputConv`, any other conv with bias a plain
``nn.Conv2d``; a shortcut's add is an :class:`~yoloqat.core.layers.Add`.

Darknet's semantics kept exactly: BN epsilon (1e-6 by default), conv padding
(``pad=1``: ``size // 2``), leaky slope 0.1, maxpool padding (``padding = size - 1`` by
default, ``padding // 2`` before, cells outside the map not read: a stride-1 pool keeps the
size), ``[route]`` ``groups``/``group_id`` (that slice of each input's channels),
``[upsample]`` nearest neighbour.
"""

from __future__ import annotations

from mindspore import nn, ops

from yoloqat.core.cfgfile import parse_cfg
from yoloqat.core.layers import Add, ConvBnAct, OutputConv, check_bn_eps, make_activation

from .darknet_spec import DarknetSpec, LayerSpec, build_spec

#: Darknet's leaky slope.
LEAKY_SLOPE = 0.1
#: Where error messages say the ``.cfg`` text came from.
CFG_SOURCE = "model.backbone.cfg"


class ConvLayer(nn.Cell):
    """A ``[convolutional]`` layer: ``unit`` is the conv cell whose weights Darknet stores."""

    def __init__(self, spec: LayerSpec, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        p = spec.params
        cin, cout, k = p["in_channels"], p["filters"], p["size"]
        if p["batch_normalize"]:
            pad = "symmetric" if p["padding"] == k // 2 else p["padding"]
            self.unit = ConvBnAct(
                cin, cout, k, p["stride"], activation=p["activation"],
                negative_slope=LEAKY_SLOPE, bn_momentum=bn_momentum, padding=pad,
                bn_eps=bn_eps, groups=p["groups"],
            )  # fmt: skip
            self.act = nn.Identity()
            self.has_act = False
        else:
            simple = (k, p["stride"], p["groups"], p["padding"]) == (1, 1, 1, 0)
            if simple:
                self.unit = OutputConv(cin, cout)
            else:
                self.unit = nn.Conv2d(
                    cin, cout, k, stride=p["stride"], pad_mode="pad", padding=p["padding"],
                    group=p["groups"], has_bias=True,
                )  # fmt: skip
            act = make_activation(p["activation"], LEAKY_SLOPE)
            self.has_act = act is not None
            self.act = act if act is not None else nn.Identity()

    def construct(self, x, saved):
        y = self.unit(x)
        if self.has_act:
            y = self.act(y)
        return y


class MaxPoolLayer(nn.Cell):
    """Darknet's ``[maxpool]``: pooling windows start ``padding // 2`` before the map and
    cells outside it are not read. Stride 1 with the default padding is MindSpore's SAME
    pooling (the same windows); otherwise the edge rows and columns are repeated (a repeated
    edge cell never changes a window's maximum: the window holds the cell itself)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        size, stride, padding = (spec.params[k] for k in ("size", "stride", "padding"))
        self.same = stride == 1 and padding == size - 1
        mode = "same" if self.same else "valid"
        self.pool = nn.MaxPool2d(kernel_size=size, stride=stride, pad_mode=mode)
        self.before = padding // 2
        # for sides that are multiples of the stride, the last window ends this far past the map
        self.after = max(0, stride * ((padding - size) // stride) + size - self.before)

    def _pad(self, x, axis):
        n = x.shape[axis]
        first = x[:, :, 0:1, :] if axis == 2 else x[:, :, :, 0:1]
        last = x[:, :, n - 1 : n, :] if axis == 2 else x[:, :, :, n - 1 : n]
        parts = (first,) * self.before + (x,) + (last,) * self.after
        return ops.concat(parts, axis)

    def construct(self, x, saved):
        if self.same or (self.before == 0 and self.after == 0):
            return self.pool(x)
        return self.pool(self._pad(self._pad(x, 2), 3))


class RouteLayer(nn.Cell):
    """``[route]``: the listed layers' maps (channel group ``group_id`` of ``groups``),
    concatenated over channels. ``slots`` index the saved outputs."""

    def __init__(self, spec: LayerSpec, slots: tuple[int, ...]) -> None:
        super().__init__()
        self.slots = slots
        groups, gid = spec.params["groups"], spec.params["group_id"]
        self.sliced = groups > 1
        self.bounds = tuple(
            (gid * (c // groups), (gid + 1) * (c // groups)) for c in spec.params["channels"]
        )

    def construct(self, x, saved):
        parts: tuple = ()
        for i in range(len(self.slots)):
            y = saved[self.slots[i]]
            if self.sliced:
                y = y[:, self.bounds[i][0] : self.bounds[i][1]]
            parts = parts + (y,)  # noqa: RUF005 (GRAPH_MODE's parser)
        if len(parts) == 1:
            return parts[0]
        return ops.concat(parts, 1)


class ShortcutLayer(nn.Cell):
    """``[shortcut]``: the previous map plus layer ``from``'s, then the activation."""

    def __init__(self, spec: LayerSpec, slot: int) -> None:
        super().__init__()
        self.slot = slot
        self.add = Add()
        act = make_activation(spec.params["activation"], LEAKY_SLOPE)
        self.has_act = act is not None
        self.act = act if act is not None else nn.Identity()

    def construct(self, x, saved):
        y = self.add(x, saved[self.slot])
        if self.has_act:
            y = self.act(y)
        return y


class UpsampleLayer(nn.Cell):
    """``[upsample]``: nearest-neighbour, ``stride`` times each side."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.step = spec.params["stride"]

    def construct(self, x, saved):
        return ops.ResizeNearestNeighbor((x.shape[2] * self.step, x.shape[3] * self.step))(x)


class YoloLayer(nn.Cell):
    """``[yolo]``: passes its input (the raw outputs) on; the head decodes it."""

    def construct(self, x, saved):
        return x


class DarknetGraph(nn.Cell):
    """The layers of a Darknet YOLO ``.cfg`` (see the module doc and
    :func:`yoloqat.plugins.yolov3.darknet_cfg`).

    Attributes: ``spec`` (the checked layers), ``cfg`` (the parsed file, for export),
    ``out_channels``/``strides`` of the returned maps (finest first), ``taps`` (the layer
    index of each returned map), ``yolo_strides`` (the stride of each ``[yolo]`` layer, file
    order) and ``layers`` (one cell per section).
    """

    def __init__(self, spec: DarknetSpec, *, bn_eps: float, bn_momentum: float) -> None:
        super().__init__()
        self.spec = spec
        self.cfg = spec.cfg
        yolo_inputs = [y.sources[0] for y in spec.yolos]
        needed = {
            s for lay in spec.layers if lay.type in ("route", "shortcut") for s in lay.sources
        }
        needed |= set(yolo_inputs)
        slot_of: dict[int, int] = {}
        cells = []
        for lay in spec.layers:
            if lay.type == "convolutional":
                cells.append(ConvLayer(lay, bn_eps, bn_momentum))
            elif lay.type == "maxpool":
                cells.append(MaxPoolLayer(lay))
            elif lay.type == "route":
                cells.append(RouteLayer(lay, tuple(slot_of[s] for s in lay.sources)))
            elif lay.type == "shortcut":
                cells.append(ShortcutLayer(lay, slot_of[lay.sources[0]]))
            elif lay.type == "upsample":
                cells.append(UpsampleLayer(lay))
            else:
                cells.append(YoloLayer())
            if lay.index in needed:
                slot_of[lay.index] = len(slot_of)
        self.layers = nn.CellList(cells)
        self.keep = tuple(lay.index in needed for lay in spec.layers)
        # the [yolo] inputs, finest first (a stable sort keeps the file order of equal strides)
        order = sorted(range(len(yolo_inputs)), key=lambda i: spec.yolos[i].stride)
        self.taps = tuple(yolo_inputs[i] for i in order)
        self.tap_slots = tuple(slot_of[t] for t in self.taps)
        self.out_channels = tuple(spec.layers[t].channels for t in self.taps)
        self.strides = tuple(int(spec.yolos[i].stride) for i in order)
        self.yolo_strides = tuple(int(y.stride) for y in spec.yolos)

    def conv_units(self) -> list[nn.Cell]:
        """The conv cells in ``.cfg`` order (Darknet's ``.weights`` order): ``ConvBnAct``
        for batch-normalized convs, ``OutputConv`` or ``nn.Conv2d`` (with bias) otherwise."""
        return [cell.unit for cell in self.layers if isinstance(cell, ConvLayer)]

    def construct(self, x):
        saved: tuple = ()
        i = 0
        for layer in self.layers:
            x = layer(x, saved)
            if self.keep[i]:
                saved = saved + (x,)  # noqa: RUF005 (GRAPH_MODE's parser)
            i = i + 1
        out: tuple = ()
        for slot in self.tap_slots:
            out = out + (saved[slot],)  # noqa: RUF005
        return out


def build_graph(cfg_text: str, *, bn_eps: float, bn_momentum: float) -> DarknetGraph:
    """Parse and check ``cfg_text`` and build its :class:`DarknetGraph`."""
    spec = build_spec(parse_cfg(cfg_text, CFG_SOURCE))
    return DarknetGraph(spec, bn_eps=check_bn_eps(bn_eps), bn_momentum=bn_momentum)
