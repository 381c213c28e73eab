"""Multi-scale training (float and QAT) through the Trainer, and ``keep_checkpoints``.

Two training sizes, redrawn per batch: every step must train at its scheduled size with
targets built for that size, the run must finish with finite losses, and only the newest
``keep_checkpoints`` files may remain.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import QUANT_STATE, state, tiny_cfg

from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.training.checkpoint import read_checkpoint
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow

SIZES = (64, 96)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=2, size=64, seed=7, num_classes=3)
    return out


@pytest.fixture(autouse=True)
def _graph_mode_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _multiscale(synth: Path, out: Path, *extra: str, quant: bool = False) -> dict:
    return tiny_cfg(
        synth,
        out,
        "data.training_shape=null",
        f"data.multi_scale=[{SIZES[0]}, {SIZES[1]}]",
        "train.max_epoch=1",
        *extra,
        quant=quant,
    )


def _step_shapes(run: Path) -> list[int]:
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["shape"] for r in records if r["kind"] == "step"]


def _check_schedule(trainer: Trainer, shapes: list[int]) -> None:
    assert shapes == [trainer.loader.shape(0, s) for s in range(len(shapes))]
    assert set(shapes) == set(SIZES), f"both sizes must occur: {shapes}"
    for batch in trainer.loader.epoch(0):  # the batches the run saw, at their sizes
        size = batch["shape"]
        assert batch["image"].shape[-2:] == (size, size)
        grids = [batch[f"y_true_{k}"].shape[1:3] for k in ("l", "m", "s")]
        assert grids == [(size // 32,) * 2, (size // 16,) * 2, (size // 8,) * 2]


def test_float_multiscale_training_and_checkpoint_pruning(synth: Path, tmp_path: Path) -> None:
    cfg = _multiscale(synth, tmp_path, "train.ckpt_interval=1", "train.keep_checkpoints=2")
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    res = trainer.run()
    assert len(res.losses) == 4 and all(np.isfinite(res.losses))
    _check_schedule(trainer, _step_shapes(tmp_path / "run"))
    # one checkpoint per step, the two newest kept
    on_disk = sorted(p.name for p in (tmp_path / "run" / "ckpt_0").iterdir())
    assert on_disk == ["0-1_3.ckpt", "0-1_4.ckpt"]
    assert [p.name for p in res.checkpoints] == ["0-1_3.ckpt", "0-1_4.ckpt"]
    params, meta = read_checkpoint(res.checkpoints[-1])
    assert meta["global_step"] == 4
    final = state(trainer.step_cell)
    for name, value in final.items():
        np.testing.assert_array_equal(params[name].asnumpy(), value, err_msg=name)


def _dynamic(step_cell) -> bool:
    """Whether the step was compiled with the input size unknown (train.dynamic_shapes)."""
    inputs = step_cell.get_inputs()
    return bool(inputs) and tuple(inputs[0].shape[2:]) == (-1, -1)  # -1: unknown


def test_dynamic_shapes_train_like_one_graph_per_size(synth: Path, tmp_path: Path) -> None:
    """``train.dynamic_shapes``: one graph for both sizes, the same losses and weights."""
    runs = {}
    for dynamic in (0, 1):
        out = tmp_path / f"d{dynamic}"
        cfg = _multiscale(synth, out, f"train.dynamic_shapes={dynamic}")
        trainer = Trainer(cfg, run_dir=out / "run")
        res = trainer.run()
        assert _dynamic(trainer.step_cell) == bool(dynamic)
        _check_schedule(trainer, _step_shapes(out / "run"))
        runs[dynamic] = (res.losses, state(trainer.step_cell))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    for name, value in runs[0][1].items():
        np.testing.assert_allclose(runs[1][1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_qat_multiscale_training(synth: Path, tmp_path: Path) -> None:
    # one graph for both sizes (train.dynamic_shapes): compiles the QAT step once
    cfg = _multiscale(
        synth, tmp_path, "quantizer.ema_init=first_batch", "train.dynamic_shapes=1", quant=True
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "run")
    res = trainer.run()
    assert _dynamic(trainer.step_cell)
    assert len(res.losses) == 4 and all(np.isfinite(res.losses))
    _check_schedule(trainer, _step_shapes(tmp_path / "run"))
    quant = state(trainer.network, QUANT_STATE)
    # one set of observers and counters serves the graphs of both sizes
    steps = [v for n, v in quant.items() if n.endswith(".step")]
    assert steps and all(int(v[0]) == 4 for v in steps)
    assert all(np.isfinite(v).all() for v in quant.values())
    ranges = {n: v for n, v in quant.items() if n.endswith(".max_value")}
    assert all((v >= 0).all() for v in ranges.values()) and any(
        (v > 0).any() for v in ranges.values()
    )
