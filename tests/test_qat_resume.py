"""QAT through the Trainer: an interrupted and resumed run equals the uninterrupted one.

The quantizer's switches sit inside the interrupted window: fake quantization starts at
step 3 (``quant_delay``) and BN freezes at step 5 (``freeze_bn``); the run is resumed from
its step-3 checkpoint. Both switches read the per-layer step counters, so the resumed
losses, the observer ranges and the counters only match the uninterrupted run if the
counters (and the ranges) are restored from the checkpoint. The run averages its weights
(``train.ema``): the QAT network's average covers the observer ranges too, is restored on
resume, and is what inference loads. It trains at two sizes redrawn per batch with one
graph for both (``train.dynamic_shapes``): every step at its scheduled size, one set of
observers and counters serving both, and the schedule continuing on resume.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import MULTI_SIZES, QUANT_STATE, check_schedule, is_dynamic, state, step_shapes, tiny_cfg

from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow

QUANT_DELAY = 3
FREEZE_BN = 5


@pytest.fixture(autouse=True)
def _graph_mode_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _cfg(data: Path, out: Path) -> dict:
    return tiny_cfg(
        data,
        out,
        f"quantizer.quant_delay={QUANT_DELAY}",
        f"quantizer.freeze_bn={FREEZE_BN}",
        "quantizer.ema_init=first_batch",
        "scheduler.lr=0.005",
        "train.ckpt_interval=3",
        "train.ema.decay=0.9",
        "train.ema.ramp=2",
        "data.training_shape=null",
        f"data.multi_scale=[{MULTI_SIZES[0]}, {MULTI_SIZES[1]}]",
        "train.dynamic_shapes=1",
        quant=True,
    )


def test_qat_resume_reproduces_losses_observers_and_step_counters(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_synthetic_coco(data, train=16, val=2, size=64, seed=4, num_classes=3)
    full = Trainer(_cfg(data, tmp_path), run_dir=tmp_path / "full")
    res = full.run()
    assert res.global_step == 8 and len(res.losses) == 8  # 16 images / 4 x 2 epochs
    assert all(np.isfinite(res.losses)) and is_dynamic(full.step_cell)
    shapes = step_shapes(tmp_path / "full")
    check_schedule(full, shapes[:4])  # epoch 0's batches at their scheduled sizes
    quant_full = state(full.network, QUANT_STATE)
    weights_full = state(full.network)
    counters = [n for n in quant_full if n.endswith(".step")]
    # every quantized layer counts its steps: 16 + 20 conv units (one residual block per
    # backbone stage), 3 output convs, 5 residual adds
    assert len(counters) == 16 + 20 + 3 + 5
    assert all(int(quant_full[n][0]) == 8 for n in counters)  # one set serves both sizes
    assert all(np.isfinite(v).all() for v in quant_full.values())

    ckpt = tmp_path / "full" / "ckpt_0" / "0-1_3.ckpt"
    params, meta = read_checkpoint(ckpt)
    assert meta["quantized"] and meta["global_step"] == QUANT_DELAY
    assert all(int(params[n].asnumpy()[0]) == QUANT_DELAY for n in counters)
    ranges = [n for n in quant_full if not n.endswith(".step")]
    assert ranges and all(n in params for n in ranges)  # observers are in the checkpoint

    resumed = Trainer(_cfg(data, tmp_path), resume=ckpt, run_dir=tmp_path / "resumed")
    again = resumed.run()
    assert again.global_step == 8
    assert step_shapes(tmp_path / "resumed") == shapes[QUANT_DELAY:]  # the same schedule
    np.testing.assert_allclose(again.losses, res.losses[QUANT_DELAY:], rtol=2e-5)
    quant_again = state(resumed.network, QUANT_STATE)
    assert quant_again.keys() == quant_full.keys()
    for name in counters:
        assert int(quant_again[name][0]) == 8, name
    for name in ranges:
        np.testing.assert_allclose(
            quant_again[name], quant_full[name], rtol=1e-5, atol=1e-6, err_msg=name
        )
    weights_again = state(resumed.network)
    for name, value in weights_full.items():
        np.testing.assert_allclose(weights_again[name], value, rtol=1e-4, atol=1e-6, err_msg=name)

    # the weight average (observer ranges included) continued exactly; inference loads it
    end_full, _ = read_checkpoint(tmp_path / "full" / "ckpt_0" / "0-2_8.ckpt")
    end_again, _ = read_checkpoint(tmp_path / "resumed" / "ckpt_0" / "0-2_8.ckpt")
    averaged = [n for n in end_full if n.startswith("ema.")]
    assert {"ema." + n for n in ranges} <= set(averaged)
    assert not any("ema." + n in end_full for n in counters)  # integers are not averaged
    for name in averaged:
        np.testing.assert_allclose(
            end_again[name].asnumpy(), end_full[name].asnumpy(), rtol=1e-4, atol=1e-6,
            err_msg=name,
        )  # fmt: skip
    from yoloqat.engine.inference import load_detector

    network, _, _ = load_detector(full.cfg, tmp_path / "full" / "ckpt_0" / "0-2_8.ckpt")
    loaded = state(network)
    for name in full.ema.names:
        np.testing.assert_array_equal(loaded[name], end_full["ema." + name].asnumpy())

    # BN freezing happens inside the window: the running statistics moved between the
    # step-3 checkpoint and step 5, and not after (the step-6 checkpoint equals the end)
    def means(path: Path) -> dict[str, np.ndarray]:
        loaded, _ = read_checkpoint(path)
        return {
            n: v.asnumpy()
            for n, v in loaded.items()
            if n.endswith(".moving_mean") and not n.startswith("ema.")
        }

    at_3, at_6 = means(ckpt), means(tmp_path / "full" / "ckpt_0" / "0-2_6.ckpt")
    assert any(not np.array_equal(at_3[n], weights_full[n]) for n in at_3)
    for name, value in at_6.items():
        np.testing.assert_array_equal(value, weights_full[name], err_msg=name)
