"""Multi-scale float training through the Trainer, and ``keep_checkpoints`` (multi-scale
QAT: ``test_qat_resume.py``, whose run trains at two sizes with one dynamic graph).

Two training sizes, redrawn per batch: every step must train at its scheduled size with
targets built for that size, the run must finish with finite losses, and only the newest
``keep_checkpoints`` files may remain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import MULTI_SIZES, check_schedule, is_dynamic, state, step_shapes, tiny_cfg

from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow


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
        f"data.multi_scale=[{MULTI_SIZES[0]}, {MULTI_SIZES[1]}]",
        "train.max_epoch=1",
        *extra,
        quant=quant,
    )


def _check_pruned(res, trainer: Trainer, run: Path) -> None:
    """One checkpoint per step, the two newest kept; the last holds the final weights."""
    on_disk = sorted(p.name for p in (run / "ckpt_0").iterdir())
    assert on_disk == ["0-1_3.ckpt", "0-1_4.ckpt", "last.ckpt"]  # last: the newest
    assert [p.name for p in res.checkpoints] == ["0-1_3.ckpt", "0-1_4.ckpt"]
    params, meta = read_checkpoint(res.checkpoints[-1])
    assert meta["global_step"] == 4
    for name, value in state(trainer.step_cell).items():
        np.testing.assert_array_equal(params[name].asnumpy(), value, err_msg=name)


def test_float_multiscale_static_and_dynamic_shapes_and_checkpoint_pruning(
    synth: Path, tmp_path: Path
) -> None:
    """Float multi-scale training with a graph per size and with ``train.dynamic_shapes``
    (one graph for both sizes): the same losses and weights; ``keep_checkpoints`` prunes."""
    runs = {}
    for dynamic in (0, 1):
        out = tmp_path / f"d{dynamic}"
        cfg = _multiscale(
            synth,
            out,
            f"train.dynamic_shapes={dynamic}",
            "train.ckpt_interval=1",
            "train.keep_checkpoints=2",
        )
        trainer = Trainer(cfg, run_dir=out / "run")
        res = trainer.run()
        assert len(res.losses) == 4 and all(np.isfinite(res.losses))
        assert is_dynamic(trainer.step_cell) == bool(dynamic)
        check_schedule(trainer, step_shapes(out / "run"))
        _check_pruned(res, trainer, out / "run")
        runs[dynamic] = (res.losses, state(trainer.step_cell))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    for name, value in runs[0][1].items():
        np.testing.assert_allclose(runs[1][1][name], value, rtol=1e-4, atol=1e-6, err_msg=name)
