"""Loss scaling in the compiled train step (``engine/training/step.py``).

Standard semantics scale the loss and unscale the gradients, so the updates must not depend
on the scale; dynamic scaling must skip a step whose gradients overflow (no update at all,
optimizer state included), halve the scale, and double it again after ``scale_window``
good steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor
from tiny import inputs, state, tiny_cfg

from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.training.step import NetWithLoss, TrainStep
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=2, size=64, seed=3, num_classes=3)
    return out


@pytest.fixture(autouse=True)
def _graph_mode():
    import mindspore as ms

    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _trainer(synth: Path, tmp_path: Path, *extra: str) -> Trainer:
    cfg = tiny_cfg(synth, tmp_path, "scheduler.lr=0.01", "train.max_epoch=1", *extra)
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    trainer._build()
    return trainer


def _restore(cell, saved: dict[str, np.ndarray]) -> None:
    from mindspore import Tensor

    for p in cell.get_parameters():
        p.set_data(Tensor(saved[p.name]))


def test_standard_semantics_do_not_depend_on_the_scale(synth: Path, tmp_path: Path) -> None:
    trainer = _trainer(
        synth, tmp_path, "train.loss_scale=1024", "train.loss_scale_semantics=standard"
    )
    step = trainer.step_cell
    assert float(step.loss_scale.asnumpy()) == 1024.0  # the config's scale reaches the step
    batches = [inputs(b) for b in trainer.loader.epoch(0)]
    init = state(step)

    def run(scale: float) -> tuple[list[float], dict[str, np.ndarray]]:
        from mindspore import Tensor

        _restore(step, init)
        step.loss_scale.set_data(Tensor(np.float32(scale)))
        losses = [float(step(*b)[0].asnumpy()) for b in batches]
        return losses, state(step)

    losses_1024, at_1024 = run(1024.0)
    losses_1, at_1 = run(1.0)
    weights = [n for n in init if not n.startswith(("moments.", "global_step", "learning_rate"))]
    weights = [n for n in weights if n != "loss_scale" and not n.endswith("good_steps")]
    moved = sum(float(np.abs(at_1[n] - init[n]).sum()) for n in weights)
    assert moved > 1e-2, "the weights hardly moved: nothing would be compared"
    np.testing.assert_allclose(losses_1024, losses_1, rtol=1e-5)
    for name in weights + [n for n in init if n.startswith("moments.")]:
        np.testing.assert_allclose(at_1024[name], at_1[name], rtol=1e-5, atol=1e-7, err_msg=name)


def test_dynamic_scale_skips_overflowing_steps_and_halves(synth: Path, tmp_path: Path) -> None:
    huge = float(2.0**126)  # the scaled backward overflows float32
    trainer = _trainer(synth, tmp_path, f"train.loss_scale={huge}", "train.dynamic_loss_scale=true")
    assert trainer.step_cell.dynamic  # the config switch reaches the train step
    # the trainer's own network, loss and optimizer, with a short doubling window
    step = TrainStep(
        NetWithLoss(trainer.network, trainer.loss),
        trainer.optimizer,
        loss_scale=huge,
        dynamic=True,
        scale_window=2,
    )
    step.set_train(True)
    batches = [inputs(b) for b in trainer.loader.epoch(0)]
    frozen = [p.name for p in step.get_parameters() if not p.name.endswith(".step")]
    frozen = [n for n in frozen if n not in ("loss_scale", "loss_scale_good_steps")]
    frozen = [n for n in frozen if not n.endswith((".moving_mean", ".moving_variance"))]
    skipped = 0
    scale = huge
    for i in range(64):
        before = state(step)
        loss, finite, _ = step(*batches[i % len(batches)])
        after = state(step)
        assert np.isfinite(float(loss.asnumpy()))  # the loss itself is not scaled
        if bool(finite.asnumpy()):
            break
        skipped += 1
        for name in frozen:  # no update: weights, moments, optimizer step all unchanged
            np.testing.assert_array_equal(after[name], before[name], err_msg=name)
        scale /= 2.0
        assert float(after["loss_scale"]) == scale, "the scale did not halve"
        assert int(after["loss_scale_good_steps"]) == 0
    else:
        pytest.fail("every step overflowed even after 64 halvings")
    assert skipped >= 1, "the first step did not overflow: nothing was tested"
    weights = [n for n in frozen if not n.startswith(("moments.", "global_step"))]
    assert any(not np.array_equal(after[n], before[n]) for n in weights), "finite step skipped"
    assert float(after["loss_scale"]) == scale  # a good step keeps the scale ...
    assert int(after["loss_scale_good_steps"]) == 1
    # ... and scale_window (2) good steps double it. The first good scale is at the edge of
    # overflow, so the next batch gets a margin of 2**16 (good_steps is kept)
    scale = scale / 2.0**16
    step.loss_scale.set_data(Tensor(np.float32(scale)))
    _, finite, _ = step(*batches[0])
    assert bool(finite.asnumpy())
    assert float(step.loss_scale.asnumpy()) == scale * 2.0
    assert int(step.good_steps.asnumpy()) == 0
