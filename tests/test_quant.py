"""The int8_qat quantizer: fake-quant arithmetic, gradients, BN folding, observers, apply()."""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops

from yoloqat.core.errors import ConfigError
from yoloqat.core.layers import Add, ConvBnAct, OutputConv
from yoloqat.core.quant import reference as ref
from yoloqat.core.quant.fake_quant import FakeQuant, QuantConfig
from yoloqat.core.quant.layers import (
    QuantAdd,
    QuantConvBnAct,
    QuantOutputConv,
)
from yoloqat.plugins.int8_qat import int8_qat, yoloqat_quantizers
from yoloqat.plugins.int8_qat.quantizer import (
    is_quantized,
    quantized_layers,
    refresh_weight_ranges,
    set_fake_quant,
)

STEP0 = Tensor(np.zeros(1, np.int32))


@pytest.fixture
def graph_mode():
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _np(t) -> np.ndarray:
    return t.asnumpy() if hasattr(t, "asnumpy") else np.asarray(t)


# -- NumPy reference -------------------------------------------------------------------------
def test_reference_nudges_asymmetric_range():
    scale, zp, lo, hi = ref.nudge(-1.0, 2.0)
    assert scale == pytest.approx(3.0 / 255.0, rel=1e-6)
    assert zp == 85  # floor(0 + 1 / (3/255) + 0.5)
    assert (lo, hi) == (-85, 170)
    # a range that excludes 0 is widened to include it
    scale, zp, _, _ = ref.nudge(0.5, 2.0)
    assert zp == 0 and scale == pytest.approx(2.0 / 255.0, rel=1e-6)
    scale, zp, _, _ = ref.nudge(-4.0, -1.0)
    assert zp == 255 and scale == pytest.approx(4.0 / 255.0, rel=1e-6)


def test_reference_symmetric_and_narrow_ranges():
    scale, zp, lo, hi = ref.nudge(-0.5, 2.0, symmetric=True)
    assert scale == pytest.approx(4.0 / 255.0, rel=1e-6)
    assert (zp, lo, hi) == (128, -128, 127)
    scale, zp, lo, hi = ref.nudge(-3.0, 1.0, narrow_range=True, symmetric=True)
    assert scale == pytest.approx(6.0 / 254.0, rel=1e-6)
    assert (zp, lo, hi) == (128, -127, 127)
    assert ref.quant_range(8, True) == (1, 255)
    _, zp4, lo4, hi4 = ref.nudge(-1.0, 1.0, num_bits=4, symmetric=True)
    assert (zp4, lo4, hi4) == (8, -8, 7)
    # the symmetric zero point is exact for every range (int8 zero point 0)
    m = np.random.default_rng(0).uniform(1e-4, 10.0, 500).astype(np.float32)
    _, zps, _, _ = ref.nudge(-m, m, symmetric=True)
    assert np.all(zps == 128)


def test_reference_rounds_half_up_and_clamps_to_the_nudged_range():
    # scale 0.25, zero point 0: exact binary fractions
    x = np.array([-1.0, 0.125, 0.375, 0.625, 63.75, 100.0], np.float32)
    y = ref.fake_quant(x, 0.0, 255 * 0.25)
    np.testing.assert_array_equal(y, [0.0, 0.25, 0.5, 0.75, 63.75, 63.75])
    q_u, scale, zp = ref.quantize(x, 0.0, 255 * 0.25)
    np.testing.assert_array_equal(q_u, [0, 1, 2, 3, 255, 255])
    np.testing.assert_allclose((q_u - zp) * scale, y)
    # asymmetric: clamped to the nudged (not the observed) range
    scale, zp, lo, hi = ref.nudge(-1.0, 2.0)
    y = ref.fake_quant(np.array([-5.0, 5.0], np.float32), -1.0, 2.0)
    np.testing.assert_allclose(y, [lo * scale, hi * scale], rtol=1e-6)


def test_reference_per_channel_equals_per_tensor_per_channel():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(5, 3, 3, 3)).astype(np.float32) * np.arange(1, 6).reshape(5, 1, 1, 1)
    lo, hi = ref.observe_min_max(w, axis=0)
    for sym in (True, False):
        y = ref.fake_quant(w, lo, hi, symmetric=sym, axis=0)
        for c in range(5):
            np.testing.assert_array_equal(y[c], ref.fake_quant(w[c], lo[c], hi[c], symmetric=sym))
        codes, zp8 = ref.to_int8(*ref.quantize(w, lo, hi, symmetric=sym, axis=0)[::2])
        assert codes.dtype == np.int8
        if sym:
            assert np.all(zp8 == 0)


def test_reference_fold_conv_bn():
    w = np.ones((2, 1, 1, 1), np.float32)
    wf, bf = ref.fold_conv_bn(w, [2.0, -1.0], [0.5, 0.0], [1.0, 2.0], [3.0, 0.0], eps=1.0)
    np.testing.assert_allclose(wf.reshape(-1), [1.0, -1.0])
    np.testing.assert_allclose(bf, [0.5 - 1.0, 2.0])


# -- MindSpore fake quant vs the reference ---------------------------------------------------
CASES = [
    # (num_bits, narrow, symmetric, per_channel)
    (8, False, False, False),
    (8, False, True, False),
    (8, True, True, False),
    (8, True, False, False),
    (4, False, False, False),
    (8, False, True, True),
    (8, False, False, True),
    (6, True, True, True),
]


@pytest.mark.parametrize(("bits", "narrow", "sym", "per_channel"), CASES)
def test_fake_quant_matches_reference(bits, narrow, sym, per_channel):
    rng = np.random.default_rng(bits + 2 * narrow + 4 * sym)
    cfg = QuantConfig(num_bits=bits, narrow_range=narrow)
    x = (rng.normal(size=(4, 3, 5, 5)) * 2 + 0.3).astype(np.float32)
    if per_channel:
        lo = rng.uniform(-3, 0.5, 4).astype(np.float32)
        hi = lo + rng.uniform(0.1, 4, 4).astype(np.float32)
    else:
        lo, hi = np.float32([-1.7]), np.float32([2.3])
    fq = FakeQuant(
        cfg, channels=4, per_channel=per_channel, symmetric=sym, init_min=lo, init_max=hi
    )
    fq.set_train(False)
    y = _np(fq(Tensor(x), STEP0))
    lo_c, hi_c = np.minimum(lo, 0), np.maximum(hi, 0)  # stored ranges always include 0
    expect = ref.fake_quant(x, lo_c, hi_c, bits, narrow, sym, axis=0 if per_channel else None)
    np.testing.assert_array_equal(y, expect)
    # every output is on the integer grid of its (per-channel) scale and inside the range
    scale, _, q_lo, q_hi = ref.nudge(lo_c, hi_c, bits, narrow, sym)
    shape = (-1, 1, 1, 1) if per_channel else (1,)
    q = y / scale.reshape(shape)
    np.testing.assert_allclose(q, np.round(q), atol=1e-3)
    assert np.all(q >= q_lo.reshape(shape) - 1e-3) and np.all(q <= q_hi.reshape(shape) + 1e-3)
    assert fq.quant_params()["zero_point"].dtype == np.int32


def test_fake_quant_rounds_ties_up_and_clamps_like_the_reference():
    x = np.array([-1.0, 0.125, 0.375, 0.625, 63.75, 100.0], np.float32)
    fq = FakeQuant(QuantConfig(), init_min=0.0, init_max=255 * 0.25)
    fq.set_train(False)
    y = _np(fq(Tensor(x), STEP0))
    np.testing.assert_array_equal(y, [0.0, 0.25, 0.5, 0.75, 63.75, 63.75])


def test_straight_through_gradient_inside_range_only():
    # training mode (gradients are a training thing); an EMA observer barely moves its range
    fq = FakeQuant(QuantConfig(ema_decay=0.9), ema=True, init_min=-1.0, init_max=2.0)
    fq.set_train(True)
    x = np.linspace(-3.0, 4.0, 71).astype(np.float32) + 0.013  # avoid exact boundaries

    def f(t):
        return (fq(t, STEP0) * 3.0).sum()

    g = _np(ms.grad(f)(Tensor(x)))
    scale, _, lo, hi = ref.nudge(fq.min_value.asnumpy(), fq.max_value.asnumpy())
    inside = (x >= lo * scale) & (x <= hi * scale)
    assert inside.sum() > 20 and (~inside).sum() > 20
    np.testing.assert_array_equal(g, np.where(inside, 3.0, 0.0))


def test_folded_weight_path_matches_the_reference():
    rng = np.random.default_rng(4)
    w = rng.normal(0, 0.2, (6, 3, 3, 3)).astype(np.float32)
    s = (rng.uniform(0.3, 3.0, 6) * np.float32([1, -1, 1, 1, -1, 1])).astype(np.float32)
    for bits, narrow in ((8, False), (6, True)):
        fq = QuantConfig(num_bits=bits, narrow_range=narrow).weight_quant(np.zeros_like(w))
        fq.set_train(True)
        w_int, c = fq.fold_quant(Tensor(w), Tensor(s), STEP0)
        folded = w * s.reshape(-1, 1, 1, 1)
        lo, hi = ref.observe_min_max(folded, axis=0)
        np.testing.assert_array_equal(fq.min_value.asnumpy(), np.minimum(lo, 0))
        np.testing.assert_array_equal(fq.max_value.asnumpy(), np.maximum(hi, 0))
        got = _np(w_int) * _np(c).reshape(-1, 1, 1, 1)
        expect = ref.fake_quant(folded, lo, hi, bits, narrow, True, axis=0)
        scale = ref.nudge(lo, hi, bits, narrow, True)[0].reshape(-1, 1, 1, 1)
        np.testing.assert_array_equal(_np(w_int), np.round(_np(w_int)))  # integer codes
        assert np.abs(got - expect).max() <= scale.max() * 1.001
        assert (np.abs(got - expect) > 1e-6).mean() < 0.01  # rounding ties only

    fq = QuantConfig().weight_quant(np.zeros_like(w))
    fq.set_train(True)

    def f(t):
        w_int, c = fq.fold_quant(t, Tensor(s), STEP0)
        return (w_int * ops.reshape(c, (-1, 1, 1, 1))).sum()

    g = _np(ms.grad(f)(Tensor(w)))
    scale, _, lo, hi = ref.nudge(*ref.observe_min_max(folded, axis=0), symmetric=True)
    scale, lo, hi = (v.reshape(-1, 1, 1, 1) for v in (scale, lo, hi))
    inside = (folded >= lo * scale) & (folded <= hi * scale)
    assert 0 < (~inside).sum() <= 6  # the positive extremes: 127.5 steps > 127
    expect = np.where(inside, np.broadcast_to(s.reshape(-1, 1, 1, 1), w.shape), 0.0)
    np.testing.assert_allclose(g, expect, rtol=1e-6)


def test_quant_delay_passes_through_then_quantizes():
    cfg = QuantConfig(quant_delay=2)
    fq = FakeQuant(cfg, ema=True, init_min=-1.0, init_max=1.0)
    fq.set_train(True)
    x = Tensor(np.linspace(-3, 3, 25).astype(np.float32) + 0.01)
    y0 = _np(fq(x, Tensor(np.int32([1]))))
    np.testing.assert_array_equal(y0, _np(x))
    g0 = _np(ms.grad(lambda t: fq(t, Tensor(np.int32([1]))).sum())(x))
    np.testing.assert_array_equal(g0, np.ones(25))
    y2 = _np(fq(x, Tensor(np.int32([2]))))
    lo, hi = fq.min_value.asnumpy(), fq.max_value.asnumpy()
    np.testing.assert_array_equal(y2, ref.fake_quant(_np(x), lo, hi))
    assert not np.array_equal(y2, _np(x))
    fq.set_train(False)  # evaluation always quantizes
    np.testing.assert_array_equal(_np(fq(x, STEP0)), ref.fake_quant(_np(x), lo, hi))


# -- observers -------------------------------------------------------------------------------
def test_batch_observer_tracks_the_batch_and_ema_observer_averages():
    cfg = QuantConfig(ema_decay=0.9)
    batch = FakeQuant(cfg, ema=False)
    ema = FakeQuant(cfg, ema=True)
    x1 = np.random.default_rng(0).uniform(0.5, 3.0, (2, 3, 4, 4)).astype(np.float32)
    for fq in (batch, ema):
        fq.set_train(True)
        fq(Tensor(x1), STEP0)
    # batch range, clamped to include 0
    assert batch.min_value.asnumpy()[0] == 0.0
    assert batch.max_value.asnumpy()[0] == pytest.approx(x1.max())
    # EMA from the initial +-6, then clamped
    exp_lo = np.minimum(ref.ema(-6.0, x1.min(), 0.9), 0.0)
    exp_hi = np.maximum(ref.ema(6.0, x1.max(), 0.9), 0.0)
    np.testing.assert_allclose(ema.min_value.asnumpy(), exp_lo.reshape(1), rtol=1e-6)
    np.testing.assert_allclose(ema.max_value.asnumpy(), exp_hi.reshape(1), rtol=1e-6)
    # output of the training call uses the updated range
    y = _np(batch(Tensor(x1), STEP0))
    np.testing.assert_array_equal(y, ref.fake_quant(x1, 0.0, x1.max()))
    # eval: no update, the stored range is used
    stored = (ema.min_value.asnumpy().copy(), ema.max_value.asnumpy().copy())
    ema.set_train(False)
    y = _np(ema(Tensor(x1 * 10), STEP0))
    np.testing.assert_array_equal(ema.min_value.asnumpy(), stored[0])
    np.testing.assert_array_equal(ema.max_value.asnumpy(), stored[1])
    np.testing.assert_array_equal(y, ref.fake_quant(x1 * 10, *stored))


def test_first_batch_ema_init_starts_the_average_at_the_data():
    cfg = QuantConfig(ema_decay=0.9, ema_init="first_batch")
    fq = FakeQuant(cfg, ema=True)
    fq.set_train(True)
    rng = np.random.default_rng(1)
    x1 = rng.uniform(0.5, 12.0, (2, 3, 4, 4)).astype(np.float32)
    x2 = rng.uniform(-1.0, 9.0, (2, 3, 4, 4)).astype(np.float32)
    fq(Tensor(x1), STEP0)  # step 0: the batch range, not an average with +-6
    assert fq.min_value.asnumpy()[0] == 0.0
    assert fq.max_value.asnumpy()[0] == pytest.approx(x1.max())
    fq(Tensor(x2), Tensor(np.int32([1])))  # later steps average as usual
    np.testing.assert_allclose(fq.max_value.asnumpy()[0], ref.ema(x1.max(), x2.max(), 0.9), 1e-6)
    np.testing.assert_allclose(fq.min_value.asnumpy()[0], min(ref.ema(0, x2.min(), 0.9), 0), 1e-6)
    # the seed's fixed start, for comparison: clipped at about 6 after the first batch
    seed = FakeQuant(QuantConfig(ema_decay=0.9), ema=True)
    seed.set_train(True)
    seed(Tensor(x1), STEP0)
    assert seed.max_value.asnumpy()[0] == pytest.approx(ref.ema(6.0, x1.max(), 0.9))


def test_weight_observer_is_per_channel_min_max_of_the_weight():
    w = np.random.default_rng(2).normal(size=(3, 2, 3, 3)).astype(np.float32)
    fq = QuantConfig().weight_quant(np.zeros_like(w))
    fq.set_train(True)
    y = _np(fq(Tensor(w), STEP0))
    lo, hi = ref.observe_min_max(w, axis=0)
    np.testing.assert_allclose(fq.min_value.asnumpy(), np.minimum(lo, 0))
    np.testing.assert_allclose(fq.max_value.asnumpy(), np.maximum(hi, 0))
    np.testing.assert_array_equal(y, ref.fake_quant(w, lo, hi, symmetric=True, axis=0))


# -- BN folding ------------------------------------------------------------------------------
def _conv_bn(activation: str = "relu", seed: int = 0, cin: int = 4, cout: int = 6):
    """A float ConvBnAct with non-trivial BN parameters and statistics."""
    rng = np.random.default_rng(seed)
    cell = ConvBnAct(cin, cout, 3, activation=activation)
    cell.conv.weight.set_data(Tensor(rng.normal(0, 0.3, (cout, cin, 3, 3)).astype(np.float32)))
    bn = cell.bn
    sign = np.resize(np.float32([1, -1, 1]), cout)  # one negative gamma in three
    bn.gamma.set_data(Tensor(rng.uniform(0.5, 2.0, cout).astype(np.float32) * sign))
    bn.beta.set_data(Tensor(rng.normal(0, 0.5, cout).astype(np.float32)))
    bn.moving_mean.set_data(Tensor(rng.normal(0, 0.5, cout).astype(np.float32)))
    bn.moving_variance.set_data(Tensor(rng.uniform(0.3, 3.0, cout).astype(np.float32)))
    return cell


def _twins(activation: str = "relu", **kwargs):
    """(float cell, quantized cell) with equal parameter values but no shared Parameters."""
    flt, src = _conv_bn(activation), _conv_bn(activation)
    return flt, QuantConvBnAct.from_block(src, QuantConfig(**kwargs))


def _x(seed: int = 3, shape=(2, 4, 8, 8)) -> Tensor:
    return Tensor(np.random.default_rng(seed).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize("activation", ["relu", "leaky", "none"])
def test_folded_conv_equals_conv_then_bn_in_eval(activation):
    flt, q = _twins(activation)
    q.set_fake_quant(False)
    flt.set_train(False)
    q.set_train(False)
    x = _x()
    np.testing.assert_allclose(_np(q(x)), _np(flt(x)), atol=1e-5)


def test_folded_conv_with_batch_statistics_in_training():
    flt, q = _twins("leaky")
    q.set_fake_quant(False)
    flt.set_train(True)
    q.set_train(True)
    x = _x()
    np.testing.assert_allclose(_np(q(x)), _np(flt(x)), atol=1e-4)
    # the running statistics follow the BN's own momentum in both
    for name in ("moving_mean", "moving_variance"):
        a, b = getattr(q.bn, name).asnumpy(), getattr(flt.bn, name).asnumpy()
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert not np.allclose(a, getattr(_conv_bn("leaky").bn, name).asnumpy())


def test_eval_output_is_the_reference_int8_computation():
    _, q = _twins("leaky")
    x = _x()
    q.set_train(True)
    q(x)  # one training step sets the observer ranges
    q.set_train(False)
    y = _np(q(x))
    w, b = q.folded_weight_bias()
    wfq = q.weight_quant
    w_q = ref.fake_quant(w, wfq.min_value.asnumpy(), wfq.max_value.asnumpy(), 8, False, True, 0)
    z = _np(ops.conv2d(x, Tensor(w_q), pad_mode="pad", padding=1)) + b.reshape(1, -1, 1, 1)
    before = q.act_quant_before
    z = ref.fake_quant(z, before.min_value.asnumpy(), before.max_value.asnumpy())
    z = np.where(z > 0, z, np.float32(0.1) * z)
    expect = ref.fake_quant(z, q.act_quant.min_value.asnumpy(), q.act_quant.max_value.asnumpy())
    scale = q.act_quant.quant_params()["scale"][0]
    diff = np.abs(y - expect)
    assert diff.max() <= scale * 1.001  # at most one step, and only at rounding ties
    assert (diff > 1e-5).mean() < 0.01


def test_freeze_bn_switches_to_running_statistics():
    flt, q = _twins("relu", freeze_bn=1)
    q.set_fake_quant(False)
    q.set_train(True)
    flt.set_train(True)
    x = _x()
    y0 = _np(q(x))  # step 0: batch statistics, running statistics updated
    np.testing.assert_allclose(y0, _np(flt(x)), atol=1e-4)
    np.testing.assert_allclose(q.bn.moving_mean.asnumpy(), flt.bn.moving_mean.asnumpy(), atol=1e-6)
    stats = [q.bn.moving_mean.asnumpy().copy(), q.bn.moving_variance.asnumpy().copy()]
    y1 = _np(q(x))  # step 1: frozen
    np.testing.assert_array_equal(q.bn.moving_mean.asnumpy(), stats[0])
    np.testing.assert_array_equal(q.bn.moving_variance.asnumpy(), stats[1])
    q.set_train(False)
    np.testing.assert_allclose(y1, _np(q(x)), atol=1e-5)
    assert int(q.step.asnumpy()[0]) == 2


def test_gradients_reach_conv_and_bn_parameters():
    _, q = _twins("relu")
    q.set_train(True)
    q(_x())
    assert q.act_quant.min_value.asnumpy()[0] == 0.0  # ReLU output: min not reduced, 0
    assert q.act_quant.max_value.asnumpy()[0] > 0.0
    params = [q.conv.weight, q.bn.gamma, q.bn.beta]

    def loss(t):
        return ops.square(q(t)).mean()

    grads = ms.grad(loss, None, params)(_x())
    for p, g in zip(params, grads):
        assert g.shape == p.shape and np.abs(_np(g)).sum() > 0, p.name


# -- apply() ---------------------------------------------------------------------------------
class _Block(nn.Cell):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(ch, ch // 2, 1)
        self.conv2 = ConvBnAct(ch // 2, ch, 3, activation="leaky")
        self.add = Add()

    def construct(self, x):
        return self.add(x, self.conv2(self.conv1(x)))


class _TinyNet(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.stem = ConvBnAct(3, 8, 3)
        self.blocks = nn.SequentialCell([ConvBnAct(8, 16, 3, stride=2), _Block(16), _Block(16)])
        self.heads = nn.CellList([OutputConv(16, 6), OutputConv(16, 6)])

    def construct(self, x):
        y = self.blocks(self.stem(x))
        return self.heads[0](y), self.heads[1](y)


def _params(net: nn.Cell) -> dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def test_apply_replaces_blocks_and_keeps_parameter_names():
    ms.set_seed(1)
    net = _TinyNet()
    before = _params(net)
    assert not is_quantized(net)
    out = int8_qat().apply(net)
    assert out is net and is_quantized(net)
    kinds = [type(c).__name__ for _, c in quantized_layers(net)]
    assert kinds.count("QuantConvBnAct") == 6
    assert kinds.count("QuantAdd") == 2 and kinds.count("QuantOutputConv") == 2
    after = _params(net)
    for name, value in before.items():  # same names, same values
        np.testing.assert_array_equal(after[name], value)
    new = set(after) - set(before)
    assert "blocks.1.conv2.act_quant_before.min_value" in new
    assert "blocks.2.add.act_quant.max_value" in new
    assert "heads.0.weight_quant.min_value" in new and "stem.step" in new
    assert len({p.name for p in net.get_parameters()}) == len(list(net.get_parameters()))
    # idempotent
    int8_qat().apply(net)
    assert _params(net).keys() == after.keys()


def test_apply_skip_layers_and_layer_listing():
    net = _TinyNet()
    int8_qat(skip_layers=["blocks.1.*", "heads.1"]).apply(net)
    names = [n for n, _ in quantized_layers(net)]
    assert "blocks.1.conv1" not in names and "heads.1" not in names
    assert type(net.blocks[1].conv1) is ConvBnAct and type(net.heads[1]) is OutputConv
    assert names == [
        "stem",
        "blocks.0",
        "blocks.2.conv1",
        "blocks.2.conv2",
        "blocks.2.add",
        "heads.0",
    ]


def test_apply_on_the_yolov3_detector():
    from yoloqat.engine.models import yolov3_darknet53

    net = yolov3_darknet53(width=0.125, num_classes=3)
    before = {p.name for p in net.get_parameters()}
    int8_qat().apply(net)
    layers = quantized_layers(net)
    count = {
        k: sum(type(c) is k for _, c in layers) for k in (QuantConvBnAct, QuantOutputConv, QuantAdd)
    }
    assert count == {QuantConvBnAct: 72, QuantOutputConv: 3, QuantAdd: 23}
    after = {p.name for p in net.get_parameters()}
    assert before <= after
    assert all(n.startswith(("backbone.", "head.")) for n in after)


def test_weight_ranges_start_from_loaded_weights_and_refresh():
    net = _TinyNet()
    int8_qat().apply(net)
    stem = net.stem
    w, _ = stem.folded_weight_bias()
    np.testing.assert_allclose(
        stem.weight_quant.max_value.asnumpy(), np.maximum(w.max((1, 2, 3)), 0)
    )
    stem.conv.weight.set_data(Tensor(np.asarray(stem.conv.weight.asnumpy() * 2)))
    assert refresh_weight_ranges(net) == 8
    np.testing.assert_allclose(
        stem.weight_quant.max_value.asnumpy(), np.maximum(2 * w.max((1, 2, 3)), 0), rtol=1e-6
    )
    assert set_fake_quant(net, False, ("heads.*",)) == 2
    assert not net.heads[0].weight_quant.enabled and net.stem.weight_quant.enabled


def test_float_checkpoint_loads_and_qat_state_round_trips(tmp_path):
    ms.set_seed(2)
    flt = _TinyNet()
    ms.save_checkpoint(flt, str(tmp_path / "float.ckpt"))
    net = int8_qat().apply(_TinyNet())
    not_loaded, _ = ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "float.ckpt")))
    assert not_loaded and all(n.endswith(("min_value", "max_value", "step")) for n in not_loaded)
    np.testing.assert_array_equal(net.stem.conv.weight.asnumpy(), flt.stem.conv.weight.asnumpy())
    refresh_weight_ranges(net)
    net.set_train(True)
    net(_x(shape=(2, 3, 16, 16)))
    ms.save_checkpoint(net, str(tmp_path / "qat.ckpt"))
    other = int8_qat().apply(_TinyNet())
    not_loaded, _ = ms.load_param_into_net(other, ms.load_checkpoint(str(tmp_path / "qat.ckpt")))
    assert not not_loaded
    for name, value in _params(net).items():
        np.testing.assert_array_equal(_params(other)[name], value)
    assert int(other.blocks[1].add.step.asnumpy()[0]) == 1


@pytest.mark.parametrize("options", [{}, {"quant_delay": 1, "freeze_bn": 2}])
def test_graph_mode_forward_and_train_step(graph_mode, options):
    ms.set_seed(3)
    net = int8_qat(**options).apply(_TinyNet())
    x = _x(shape=(2, 3, 16, 16))
    net.set_train(False)
    out = net(x)
    assert out[0].shape == (2, 6, 8, 8)
    net.set_train(True)
    opt = nn.Momentum(net.trainable_params(), 0.01, 0.9)

    def loss_fn(t):
        a, b = net(t)
        return ops.square(a).mean() + ops.square(b).mean()

    grad_fn = ms.value_and_grad(loss_fn, None, opt.parameters)

    @ms.jit
    def train_step(t):
        loss, grads = grad_fn(t)
        opt(grads)
        return loss

    w0 = net.stem.conv.weight.asnumpy().copy()
    r0 = net.stem.act_quant.max_value.asnumpy().copy()
    losses = [float(train_step(x).asnumpy()) for _ in range(3)]
    assert all(np.isfinite(losses))
    assert not np.allclose(net.stem.conv.weight.asnumpy(), w0)
    assert net.stem.act_quant.max_value.asnumpy()[0] != r0[0]
    assert int(net.stem.step.asnumpy()[0]) == 3 and int(net.heads[0].step.asnumpy()[0]) == 3
    net.set_train(False)
    assert np.isfinite(_np(net(x)[0])).all()


# -- factory ---------------------------------------------------------------------------------
def test_factory_validates_and_registers():
    assert yoloqat_quantizers() == {"int8_qat": int8_qat}
    q = int8_qat(per_channel=[True, False], symmetric=[True, True], num_bits=6)
    assert q.config.symmetric_acts and q.config.num_bits == 6
    for bad in (
        {"num_bits": 9},
        {"num_bits": True},
        {"quant_delay": -1},
        {"per_channel": [True, True]},
        {"per_channel": True},  # a single flag for both: was a TypeError
        {"per_channel": "yes"},
        {"symmetric": [True]},
        {"ema_decay": 1.0},
        {"freeze_bn": 1.5},
        {"skip_layers": "head"},
        {"narrow_range": 1},
        {"ema_init": "zero"},
    ):
        with pytest.raises(ConfigError, match="quantizer"):
            int8_qat(**bad)


def test_quant_output_conv_and_add_cells():
    cfg = QuantConfig()
    out = OutputConv(4, 5)
    q = QuantOutputConv(out, cfg)
    q.set_train(False)
    x = _x()
    w = out.weight.asnumpy()
    lo, hi = ref.observe_min_max(w, axis=0)
    w_q = ref.fake_quant(w, lo, hi, symmetric=True, axis=0)
    expect = _np(ops.conv2d(x, Tensor(w_q))) + out.bias.asnumpy().reshape(1, -1, 1, 1)
    np.testing.assert_allclose(_np(q(x)), expect, atol=1e-5)
    # training: the integer-weight fast path gives the same output up to rounding ties
    q.set_train(True)
    y = _np(q(x))
    np.testing.assert_array_equal(q.weight_quant.min_value.asnumpy(), np.minimum(lo, 0))
    np.testing.assert_allclose(y, expect, atol=1e-4)
    assert int(q.step.asnumpy()[0]) == 1
    add = QuantAdd(Add(), cfg)
    add.set_train(False)
    a = _np(x)
    np.testing.assert_array_equal(_np(add(x, x)), ref.fake_quant(a + a, -6.0, 6.0))
