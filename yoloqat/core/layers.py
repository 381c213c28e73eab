"""Shared building blocks of the detection networks.

Every conv + BN + activation of the networks is a :class:`ConvBnAct`, and every residual
add is an :class:`Add` cell, so that a quantizer can find and rewrite them by type while
keeping the parameter names (``conv.weight``, ``bn.gamma``, ``bn.beta``, ``bn.moving_mean``,
``bn.moving_variance``) that float checkpoints use.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import TypedDict

import mindspore as ms
from mindspore import nn, ops
from mindspore.common.initializer import HeUniform, Uniform, initializer

from yoloqat.core.errors import ConfigError

#: Activations of :class:`ConvBnAct` ("mish" and "logistic" for Darknet models).
ACTIVATIONS = ("relu", "leaky", "silu", "mish", "logistic", "none")
PADDINGS = ("symmetric", "same")
#: BatchNorm epsilon of the seed's layers; Darknet's is :data:`DARKNET_BN_EPS`.
BN_EPS = 1e-5
DARKNET_BN_EPS = 1e-6


class ConvUnit(TypedDict, total=False):
    """The keyword arguments of :class:`ConvBnAct` that a network passes to all its units."""

    activation: str
    negative_slope: float
    bn_momentum: float
    padding: str | int
    bn_eps: float


def check_bn_eps(bn_eps: object) -> float:
    """Return ``bn_eps`` as a float, or raise a ConfigError unless 0 < eps <= 0.1."""
    if isinstance(bn_eps, bool) or not isinstance(bn_eps, (int, float)) or not 0.0 < bn_eps <= 0.1:
        raise ConfigError(
            f"bn_eps={bn_eps!r} is not valid; expected a number in (0, 0.1] "
            "(1e-5: the seed's layers, 1e-6: Darknet's)"
        )
    return float(bn_eps)


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    """Raise a ConfigError naming ``name`` if ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not valid; expected one of {', '.join(choices)}")


class Mish(nn.Cell):
    """Mish, ``x * tanh(softplus(x))`` (Darknet's ``mish``), as ``x * n / (n + 2)`` with
    ``n = e^x (e^x + 2)``.

    The same function written with ops whose float32 results are accurate on every
    backend and that MindSpore's ONNX exporter maps (Min, Exp, Add, Mul, Div): ONNX has no
    Mish before opset 18 and MindSpore exports no ``Mish`` op, and MindSpore's CPU ``tanh``
    is ~1e-4 off, where this form stays within ~5e-6 relative of the exact value.
    ``e^x`` is taken at ``min(x, 20)``: above 20 the ratio is 1 in float32 (Darknet's
    softplus threshold is 20 too), and ``e^(2x)`` would overflow.
    """

    def construct(self, x):
        e = ops.exp(ops.minimum(x, 20.0))
        n = e * (e + 2.0)
        return x * (n / (n + 2.0))


def make_activation(activation: str, negative_slope: float = 0.1) -> nn.Cell | None:
    """Return the activation cell for ``activation`` (one of :data:`ACTIVATIONS`; None for
    'none'): ``nn.ReLU``, ``nn.SiLU``, ``nn.LeakyReLU``, :class:`Mish` or ``nn.Sigmoid``
    (logistic)."""
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "relu":
        return nn.ReLU()
    if activation == "silu":
        return nn.SiLU()
    if activation == "leaky":
        return nn.LeakyReLU(alpha=negative_slope)
    if activation == "mish":
        return Mish()
    if activation == "logistic":
        return nn.Sigmoid()
    return None


class ConvBnAct(nn.Cell):
    """Conv (no bias) + BatchNorm (eps ``bn_eps``, 1e-5 by default) + optional activation
    (one of :data:`ACTIVATIONS`).

    ``padding='symmetric'`` pads ``k//2`` on every side (the Darknet convention);
    ``'same'`` is TensorFlow-style SAME padding (asymmetric for stride-2), as the seed used;
    an int pads that many pixels on every side (Darknet's ``pad=0, padding=p``).
    ``groups`` splits the channels into groups convolved separately (Darknet's ``groups``).
    ``bn_momentum`` has MindSpore semantics: ``running = m * running + (1 - m) * batch``.
    ``bn_eps`` is the BatchNorm epsilon: 1e-5 (the seed, PyTorch) or 1e-6 (Darknet).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        activation: str = "relu",
        negative_slope: float = 0.1,
        bn_momentum: float = 0.9,
        padding: str | int = "symmetric",
        bn_eps: float = BN_EPS,
        groups: int = 1,
    ) -> None:
        super().__init__()
        explicit = isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0
        if not explicit:
            check_choice("padding", padding, PADDINGS)
        bn_eps = check_bn_eps(bn_eps)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.activation = activation
        self.negative_slope = negative_slope
        self.padding = padding
        self.groups = groups
        if explicit:
            pad_kwargs = {"pad_mode": "pad", "padding": padding}
        elif padding == "symmetric":
            pad_kwargs = {"pad_mode": "pad", "padding": kernel_size // 2}
        else:
            pad_kwargs = {"pad_mode": "same", "padding": 0}
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            has_bias=False,
            weight_init=HeUniform(negative_slope=math.sqrt(5)),
            group=groups,
            **pad_kwargs,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        act = make_activation(activation, negative_slope)
        self.has_act = act is not None
        self.act = act if act is not None else nn.Identity()

    def construct(self, x):
        y = self.bn(self.conv(x))
        if self.has_act:
            y = self.act(y)
        return y


class OutputConv(nn.Conv2d):
    """The linear 1x1 output conv of a detection head: bias, no BN, no activation."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        bound = 1.0 / math.sqrt(in_channels)
        super().__init__(
            in_channels,
            out_channels,
            1,
            has_bias=True,
            pad_mode="valid",
            weight_init=HeUniform(negative_slope=math.sqrt(5)),
            bias_init=initializer(Uniform(bound), [out_channels], ms.float32),
        )


class Add(nn.Cell):
    """Element-wise add as a cell, so a quantizer can put a fake-quant after it."""

    def construct(self, x, y):
        return ops.add(x, y)


class _Wrapper(nn.Cell):
    def __init__(self, network: nn.Cell) -> None:
        super().__init__()
        self.network = network

    def construct(self, x):
        return self.network(x)


@contextlib.contextmanager
def fresh_cell(network: nn.Cell) -> Iterator[nn.Cell]:
    """A new cell around ``network`` whose Parameter names stay the network's own.

    MindSpore keeps a compiled graph per cell object and input shape, so a fresh wrapper is
    what makes a changed graph (gated fake quants, an export form) compile at all, and
    tracing the same cell object twice for ONNX fails inside MindSpore. Assigning the
    network as an attribute prefixes its Parameter names with the attribute name; they are
    put back at once and again on exit.
    """
    names = [(p, p.name) for p in network.get_parameters()]
    cell = _Wrapper(network)
    for param, name in names:
        param.name = name
    try:
        yield cell
    finally:
        for param, name in names:
            param.name = name
