"""Rounding with a straight-through gradient: the element-wise core of the fake quant.

Forward (see :mod:`.reference`, steps 7-8): ``u = x * inv_scale + offset`` with
``offset = 0.5 - lo``, ``t = clamp(u, 0.5, top)`` with ``top = qmax - qmin + 0.5``, the integer
``r = floor(t)`` (computed as ``trunc``: ``t > 0``) and the value ``(r + lo) * scale``.

Backward: ``dL/dx = dL/dy`` where ``x`` is inside the nudged range (``t == u``) and 0 outside;
the range inputs get no gradient (observers set them, they are not learned). The cells have a
custom ``bprop`` (compiled in GRAPH_MODE like any cell) and return the 0/1 range mask as a
second output, computed in the forward pass from ``t`` and ``u``: the backward pass is then a
single multiply, cheaper than differentiating ``x + stop_gradient(q - x)`` through a clamp.

Speed notes (MindSpore 2.10 CPU, measured on 0.5M-element tensors): ``Maximum``/``Minimum``
against a shape-(1,) tensor take ~25 ms against ~0.5 ms for a 0-d tensor or a Python
scalar, ``Div`` is 10x ``Mul``, ``Select`` and comparisons are slower than arithmetic. Hence:
0-d per-tensor parameters, constant clamp bounds, a multiply by the inverse scale and a float
mask. ``ops.clamp`` does not compile inside a bprop, so the ``ClampScalar`` primitive is used.
"""

from __future__ import annotations

from mindspore import nn, ops
from mindspore.ops.auto_generate import ClampScalar


def round_clamp_infer(x, inv_scale, offset, lo, scale, top: float):
    """The fake-quantized value without gradient bookkeeping (evaluation)."""
    return (ops.trunc(ops.clamp(x * inv_scale + offset, 0.5, top)) + lo) * scale


class _RoundClampBase(nn.Cell):
    """The clamp-and-round step shared by the STE cells (each has its own ``construct`` and
    ``bprop`` signature, so they share this base rather than subclass each other)."""

    def __init__(self, top: float) -> None:
        super().__init__()
        self.top = float(top)
        self.clamp = ClampScalar()

    def _round(self, u):
        t = self.clamp(u, 0.5, self.top)
        return ops.trunc(t), ops.cast(ops.equal(t, u), u.dtype)


class RoundClampSTE(_RoundClampBase):
    """``(y, mask)`` with ``y = (trunc(clamp(x * inv_scale + offset, 0.5, top)) + lo) * scale``.

    ``inv_scale``, ``offset``, ``lo`` and ``scale`` are 0-d or ``(C, 1, 1, 1)`` tensors.
    """

    def construct(self, x, inv_scale, offset, lo, scale):
        r, mask = self._round(x * inv_scale + offset)
        return (r + lo) * scale, mask

    def bprop(self, x, inv_scale, offset, lo, scale, out, dout):
        zeros = ops.zeros_like
        return dout[0] * out[1], zeros(inv_scale), zeros(offset), zeros(lo), zeros(scale)


class GatedRoundClampSTE(_RoundClampBase):
    """:class:`RoundClampSTE` switched by ``on`` (0-d, 1.0 or 0.0): the identity when off.

    Used while ``quant_delay`` steps pass; a blend rather than a tensor ``if``, because graph
    control flow makes MindSpore compile and run the network far slower.
    """

    def construct(self, x, inv_scale, offset, lo, scale, on):
        r, mask = self._round(x * inv_scale + offset)
        return x + on * ((r + lo) * scale - x), on * mask + (1.0 - on)

    def bprop(self, x, inv_scale, offset, lo, scale, on, out, dout):
        zeros = ops.zeros_like
        return dout[0] * out[1], zeros(inv_scale), zeros(offset), zeros(lo), zeros(scale), zeros(on)


class FoldedRoundClampSTE(_RoundClampBase):
    """``(r + lo, mask)`` from ``u = w * k + offset``: integer-valued weights.

    With ``k = s / scale`` this quantizes the folded weight ``w * s`` without forming it; the
    caller multiplies the conv output by ``scale`` (per channel) instead of the weight, and
    computes ``u`` itself so that autodiff supplies ``dL/dw = dL/du * k``. (Passing the
    weight Parameter into a custom-bprop cell makes MindSpore copy it every step.)
    """

    def construct(self, u, lo):
        r, mask = self._round(u)
        return r + lo, mask

    def bprop(self, u, lo, out, dout):
        return dout[0] * out[1], ops.zeros_like(lo)


class GatedFoldedRoundClampSTE(_RoundClampBase):
    """:class:`FoldedRoundClampSTE` switched by ``on``: ``u - offset = w * k`` when off."""

    def construct(self, u, offset, lo, on):
        r, mask = self._round(u)
        wk = u - offset
        return wk + on * (r + lo - wk), on * mask + (1.0 - on)

    def bprop(self, u, offset, lo, on, out, dout):
        zeros = ops.zeros_like
        return dout[0] * out[1], zeros(offset), zeros(lo), zeros(on)
