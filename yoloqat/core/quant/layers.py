"""Quantized layers: replacements of conv + BN + activation blocks (``ConvBnAct`` or a
``nn.Conv2d``/``nn.BatchNorm2d``/activation run of a ``SequentialCell``), output convs, residual
``Add`` cells and stand-alone ``nn.Conv2d`` cells.

Each replacement reuses the original cell's Parameters (same objects, same names, e.g.
``conv.weight``, ``bn.gamma``, ``bn.moving_mean``, ``weight``, ``bias``), so float checkpoints
load unchanged, and adds its own state under stable names: ``step`` (training-step counter)
and ``<node>.min_value`` / ``<node>.max_value`` for the fake-quant nodes ``weight_quant``,
``act_quant`` and ``act_quant_before``.

Step counter: every quantized layer owns a ``step`` Parameter (int32, shape (1,)) that its
``construct`` increments once per training-mode call, like the seed's ``Conv2dBnFoldQuant.step``.
One training step = one forward in training mode, so the train loop has nothing to advance; the
counters are saved in checkpoints, so ``quant_delay`` and ``freeze_bn`` continue correctly on
resume. Evaluation calls do not count.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from yoloqat.core.contracts.quantizer import WeightQuant
from yoloqat.core.layers import Add, ConvBnAct, Mish, OutputConv

from .fake_quant import FakeQuant, QuantConfig
from .reference import bn_scale, fold_conv_bn

#: Activations whose input gets a fake quant of its own (every one but ReLU, whose output
#: range is its input's clipped at 0): the conv before them then has a quantized output, so
#: int8 engines can fuse it, and the activation runs in float between two Q/DQ pairs.
PRE_QUANT_ACTIVATIONS = ("leaky", "silu", "mish", "logistic")
#: Activation cell type -> its kind.
ACTIVATION_KINDS: dict[type, str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky",
    nn.SiLU: "silu",
    Mish: "mish",
    nn.Sigmoid: "logistic",
}


def activation_kind(cell: nn.Cell | None) -> str | None:
    """``relu`` / ``leaky`` / ``silu`` / ``mish`` / ``logistic`` / ``none`` for a standard
    activation cell (``none`` for no cell or ``nn.Identity``); None for any other cell."""
    if cell is None or type(cell) is nn.Identity:
        return "none"
    return ACTIVATION_KINDS.get(type(cell))


class QuantLayer(nn.Cell):
    """Base of the quantized layers: the shared ``step`` counter and the config."""

    #: What the layer is, for quantizer summaries (``conv``, ``output_conv``, ``add``).
    kind = "layer"

    def __init__(self, config: QuantConfig) -> None:
        super().__init__()
        self.config = config
        self.step = Parameter(Tensor(np.zeros(1, np.int32)), name="step", requires_grad=False)
        self.one = Tensor(np.ones(1, np.int32))
        self.exporting = False  # export form (see FakeQuantizer.export_plan)

    def export_weight(self) -> tuple[str, WeightQuant] | None:
        """``(weight Parameter name, int8 weight)`` for the exporter; None without a weight."""
        return None

    def _count_step(self):
        """Return the current step and, in training, increment the counter afterwards."""
        step = self.step + 0
        if self.training:
            ops.assign_add(self.step, self.one)
        return step

    def fake_quants(self) -> dict[str, FakeQuant]:
        """The fake-quant nodes of this layer by attribute name."""
        cells = self.name_cells().items()
        return {name: cell for name, cell in cells if isinstance(cell, FakeQuant)}

    def set_fake_quant(self, enabled: bool) -> None:
        """Switch every fake-quant node of this layer on or off (recompile after a change)."""
        for fq in self.fake_quants().values():
            fq.enabled = enabled

    def _set_weight_range(self, weight: np.ndarray) -> None:
        fq = self.weight_quant
        axes = tuple(range(1, weight.ndim)) if fq.per_channel else None
        lo = np.minimum(np.reshape(weight.min(axis=axes), (-1,)), 0.0).astype(np.float32)
        hi = np.maximum(np.reshape(weight.max(axis=axes), (-1,)), 0.0).astype(np.float32)
        fq.min_value.set_data(Tensor(lo))
        fq.max_value.set_data(Tensor(hi))


class QuantConvBnAct(QuantLayer):
    """``ConvBnAct`` with the BN folded into fake-quantized conv weights (one convolution).

    With ``s = gamma / sqrt(running_var + eps)`` (per output channel) the conv runs once with
    ``w_q = fq(w * s)`` (per-channel weight fake quant), giving ``z = conv(x, w_q)``:

    - training, before ``freeze_bn``: ``y = bn(z / s)``. ``z / s`` approximates ``conv(x, w)``,
      so the original BatchNorm normalises with batch statistics and updates its running
      statistics with its own momentum. Expanded, ``y = z * sigma_run / sigma_batch +
      beta - mu_batch * gamma / sigma_batch``: the quantized running-folded conv, corrected to
      batch statistics, as the seed's ``Conv2dBnFoldQuant``/``...OneConv`` do;
    - training from step ``freeze_bn`` on, and eval: ``y = z + beta - running_mean * s``,
      exactly the int8 deployment graph (running statistics, no BN update).

    The weights are always folded with the running variance (as in the seed), so the weight
    ranges observed in training are the ranges of the weights that eval and export use.
    Batch statistics come from the quantized conv output rather than from an extra float conv:
    one conv per layer instead of two, which keeps QAT close to the float training speed (as
    the seed's ``Conv2dBnFoldQuantOneConv``, the r1.1+ default). Before ``freeze_bn`` no
    gradient flows through ``s``: ``s`` cancels in ``bn(conv(x, w*s)/s)`` (exactly without
    quantization, through the straight-through estimator with it), so ``gamma`` learns through
    the BN as in float training; once frozen, ``s`` is differentiated.

    ``freeze_bn`` at or above ``FREEZE_BN_NEVER`` (10M, the default) compiles the training
    graph without the freeze switch; a smaller value adds it (a few element-wise ops).
    Then the activation fake quants (docs/seed.md §7.2 item 3): ReLU -> fake quant after it (batch
    range); LeakyReLU -> fake quant before and after (EMA); no activation -> one after (EMA).
    """

    kind = "conv"

    def __init__(
        self,
        conv: nn.Conv2d,
        bn: nn.BatchNorm2d,
        act: nn.Cell | None,
        activation: str,
        config: QuantConfig,
    ) -> None:
        super().__init__(config)
        self.conv = conv
        self.bn = bn
        self.act = act if act is not None else nn.Identity()
        self.activation = activation
        self.eps = float(bn.eps)
        self.freeze_bn = int(config.freeze_bn)
        self.bn_freezes = config.bn_freezes
        folded, _ = self.folded_weight_bias()
        self.weight_quant = config.weight_quant(folded)
        if self.activation in PRE_QUANT_ACTIVATIONS:
            self.act_quant_before = config.act_quant(ema=True)
        relu = self.activation == "relu"
        self.act_quant = config.act_quant(ema=not relu, nonnegative=relu)
        self.one_f = Tensor(1.0, ms.float32)

    @classmethod
    def from_block(cls, cell: ConvBnAct, config: QuantConfig) -> QuantConvBnAct:
        """From a :class:`~yoloqat.core.layers.ConvBnAct`."""
        activation = cell.activation if cell.has_act else "none"
        return cls(cell.conv, cell.bn, cell.act if cell.has_act else None, activation, config)

    def export_weight(self) -> tuple[str, WeightQuant] | None:
        if not self.weight_quant.enabled:
            return None
        weight, bias = self.folded_weight_bias()
        return self.conv.weight.name, self.weight_quant.weight_quant(
            weight, folds_bn=True, bias=bias
        )

    def construct(self, x):
        step = self._count_step()
        if self.exporting:  # the float graph; the exporter folds the BN and quantizes
            y = self.bn(self.conv(x))
        elif self.training and self.bn_freezes:
            y = self._train_conv_bn_freezable(x, step)
        elif self.training:
            y = self._train_conv_bn(x, step)
        else:
            _, y = self._folded_conv(x, self._fold_scale(), step)
        if self.activation in PRE_QUANT_ACTIVATIONS:
            y = self.act(self.act_quant_before(y, step))
        elif self.activation == "relu":
            y = self.act(y)
        return self.act_quant(y, step)

    def _fold_scale(self):
        return self.bn.gamma / ops.sqrt(self.bn.moving_variance + self.eps)

    def _folded_conv(self, x, s, step):
        """``z = conv(x, fq(w * s))`` and ``z`` plus the running-statistics folded bias."""
        w = self.weight_quant(self.conv.weight * ops.reshape(s, (-1, 1, 1, 1)), step)
        z = self.conv.conv2d(x, w)
        return z, z + ops.reshape(self.bn.beta - self.bn.moving_mean * s, (1, -1, 1, 1))

    def _inv_scale(self, s_const):
        # gamma == 0 gives s == 0 and z == 0: divide by 1 there (the BN then outputs beta)
        return self.one_f / (s_const + ops.cast(s_const == 0, s_const.dtype))

    def _train_conv_bn(self, x, step):
        """Training, BN never frozen: ``bn(conv(x, fq(w * s)) / s)``.

        Per-channel weights take the fast path: ``conv(x, fq(w * s)) = conv(x, W) * scale``
        with ``W`` the integer-valued codes minus zero point, and ``scale / s`` is applied to
        the conv output in the same multiply that feeds the BN.
        """
        s_const = ops.stop_gradient(self._fold_scale())
        inv_s = self._inv_scale(s_const)
        if self.weight_quant.per_channel:
            w_int, c = self.weight_quant.fold_quant(self.conv.weight, s_const, step)
            z = self.conv.conv2d(x, w_int)
            return self.bn(z * ops.reshape(c * inv_s, (1, -1, 1, 1)))
        w = self.weight_quant(self.conv.weight * ops.reshape(s_const, (-1, 1, 1, 1)), step)
        return self.bn(self.conv.conv2d(x, w) * ops.reshape(inv_s, (1, -1, 1, 1)))

    def _train_conv_bn_freezable(self, x, step):
        """Training: BN with batch statistics on ``z / s``, or the folded form once frozen.

        ``frozen`` in {0, 1} blends the two instead of a tensor ``if``: graph control flow
        in 72 layers made compilation ~10x and the train step ~5x slower. The BN's
        running-statistics update is undone while frozen.
        """
        bn = self.bn
        s = self._fold_scale()
        frozen = ops.cast(step >= self.freeze_bn, s.dtype)
        s_const = ops.stop_gradient(s)
        z, y_run = self._folded_conv(x, s_const + frozen * (s - s_const), step)
        mean_before = bn.moving_mean + 0.0
        var_before = bn.moving_variance + 0.0
        y_bn = bn(z * ops.reshape(self._inv_scale(s_const), (1, -1, 1, 1)))
        keep = self.one_f - frozen
        ops.assign(bn.moving_mean, mean_before + keep * (bn.moving_mean - mean_before))
        ops.assign(bn.moving_variance, var_before + keep * (bn.moving_variance - var_before))
        return y_bn + frozen * (y_run - y_bn)

    def folded_weight_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The inference-mode folded float weight and bias (running statistics), NumPy."""
        bn = self.bn
        return fold_conv_bn(
            self.conv.weight.asnumpy(),
            bn.gamma.asnumpy(),
            bn.beta.asnumpy(),
            bn.moving_mean.asnumpy(),
            bn.moving_variance.asnumpy(),
            self.eps,
        )

    def refresh_weight_range(self) -> None:
        """Set the stored weight range from the current folded weights (e.g. after loading)."""
        folded, _ = self.folded_weight_bias()
        self._set_weight_range(folded)

    def fold_scale(self) -> np.ndarray:
        """Per-channel ``gamma / sqrt(running_var + eps)`` (NumPy)."""
        return bn_scale(self.bn.gamma.asnumpy(), self.bn.moving_variance.asnumpy(), self.eps)


class QuantOutputConv(QuantLayer):
    """``OutputConv`` with per-channel fake-quantized weights; float bias, float outputs."""

    kind = "output_conv"

    def __init__(self, cell: OutputConv, config: QuantConfig) -> None:
        super().__init__(config)
        self.weight = cell.weight
        self.bias = cell.bias
        self.conv2d = cell.conv2d
        self.in_channels = cell.in_channels
        self.out_channels = cell.out_channels
        self.weight_quant = config.weight_quant(cell.weight.asnumpy())
        self.ones = Tensor(np.ones(cell.out_channels, np.float32))

    def construct(self, x):
        step = self._count_step()
        if self.exporting:
            y = self.conv2d(x, self.weight)
        elif self.training and self.weight_quant.per_channel:
            w_int, c = self.weight_quant.fold_quant(self.weight, self.ones, step)
            y = self.conv2d(x, w_int) * ops.reshape(c, (1, -1, 1, 1))
        else:
            y = self.conv2d(x, self.weight_quant(self.weight, step))
        return ops.bias_add(y, self.bias)

    def export_weight(self) -> tuple[str, WeightQuant] | None:
        if not self.weight_quant.enabled:
            return None
        return self.weight.name, self.weight_quant.weight_quant(
            self.weight.asnumpy(), folds_bn=False
        )

    def folded_weight_bias(self) -> tuple[np.ndarray, np.ndarray]:
        """The float weight and bias (nothing to fold), NumPy."""
        return self.weight.asnumpy(), self.bias.asnumpy()

    def refresh_weight_range(self) -> None:
        """Set the stored weight range from the current weights (e.g. after loading)."""
        self._set_weight_range(self.weight.asnumpy())


class QuantAdd(QuantLayer):
    """Residual ``Add`` followed by a per-tensor EMA fake quant."""

    kind = "add"

    def __init__(self, cell: Add, config: QuantConfig) -> None:
        super().__init__(config)
        self.act_quant = config.act_quant(ema=True)

    def construct(self, x, y):
        step = self._count_step()
        return self.act_quant(ops.add(x, y), step)


class QuantConv2d(QuantLayer):
    """A stand-alone ``nn.Conv2d`` (no BN/activation pattern around it that the quantizer
    could see): fake quant of its input (per tensor, EMA) and of its weight (per channel).

    The weight is quantized unfolded. With per-channel symmetric weights a BatchNorm that
    follows in the parent's ``construct`` can still be folded at export without changing the
    codes (the fold only rescales each channel), so the int8 graph stays exact.
    """

    kind = "conv"

    def __init__(self, cell: nn.Conv2d, config: QuantConfig) -> None:
        super().__init__(config)
        self.weight = cell.weight
        self.has_bias = bool(cell.has_bias)
        self.bias = cell.bias if cell.has_bias else None
        self.conv2d = cell.conv2d
        self.in_channels = cell.in_channels
        self.out_channels = cell.out_channels
        self.weight_quant = config.weight_quant(cell.weight.asnumpy())
        self.input_quant = config.act_quant(ema=True)
        self.ones = Tensor(np.ones(cell.out_channels, np.float32))

    def construct(self, x):
        step = self._count_step()
        x = self.input_quant(x, step)
        if self.exporting:
            y = self.conv2d(x, self.weight)
        elif self.training and self.weight_quant.per_channel:
            w_int, c = self.weight_quant.fold_quant(self.weight, self.ones, step)
            y = self.conv2d(x, w_int) * ops.reshape(c, (1, -1, 1, 1))
        else:
            y = self.conv2d(x, self.weight_quant(self.weight, step))
        if self.has_bias:
            y = ops.bias_add(y, self.bias)
        return y

    def folded_weight_bias(self) -> tuple[np.ndarray, np.ndarray | None]:
        """The float weight and bias (nothing folded), NumPy."""
        bias = self.bias.asnumpy() if self.bias is not None else None
        return self.weight.asnumpy(), bias

    def refresh_weight_range(self) -> None:
        """Set the stored weight range from the current weights (e.g. after loading)."""
        self._set_weight_range(self.weight.asnumpy())

    def export_weight(self) -> tuple[str, WeightQuant] | None:
        if not self.weight_quant.enabled:
            return None
        return self.weight.name, self.weight_quant.weight_quant(
            self.weight.asnumpy(), folds_bn=False
        )
