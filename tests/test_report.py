"""quant-report pieces: the per-layer gates that layer sensitivity switches in one compiled
graph (the ranking itself: ``test_sensitivity.py``; latency: the demo test)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow

#: one residual block per backbone stage (half the graph to compile) and its quantized
#: layers: 16 + 20 conv units, 3 output convs, 5 residual adds
ONE_BLOCK = (1, 1, 1, 1, 1)
LAYERS = 16 + 20 + 3 + 5


def test_eval_gates_switch_layers_in_one_compiled_graph() -> None:
    import mindspore as ms
    from mindspore import Tensor

    from yoloqat.core.contracts.quantizer import quantizer_of, set_fake_quant
    from yoloqat.engine.models import yolov3_darknet53
    from yoloqat.plugins.int8_qat import int8_qat

    ms.set_seed(0)
    net = int8_qat(ema_init="first_batch").apply(
        yolov3_darknet53(num_classes=3, width=0.0625, blocks=ONE_BLOCK)
    )
    rng = np.random.default_rng(0)
    net.set_train(True)
    for _ in range(2):  # observers get real ranges
        net(Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32)))
    net.set_train(False)
    x = Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
    quant = net(x)[0].asnumpy()  # PyNative references
    set_fake_quant(net, False)
    flt = net(x)[0].asnumpy()
    set_fake_quant(net, True, ("backbone.layer2.0.conv1",))
    one = net(x)[0].asnumpy()
    set_fake_quant(net, True)
    assert np.abs(quant - flt).max() > 1e-3
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        assert np.array_equal(net(x)[0].asnumpy(), quant)  # a graph compiled without gates
        with quantizer_of(net).eval_gates(net) as (gated, gates):
            assert len(gates) == LAYERS
            np.testing.assert_array_equal(gated(x)[0].asnumpy(), quant)  # all gates 1
            for path, params in gates.items():
                for p in params:
                    p.set_data(Tensor(np.float32(path == "backbone.layer2.0.conv1")))
            np.testing.assert_array_equal(gated(x)[0].asnumpy(), one)
            for params in gates.values():
                for p in params:
                    p.set_data(Tensor(np.float32(0.0)))
            np.testing.assert_array_equal(gated(x)[0].asnumpy(), flt)
        assert not any(getattr(c, "gated", False) for _, c in net.cells_and_names())
        assert np.array_equal(net(x)[0].asnumpy(), quant)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
