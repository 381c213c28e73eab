"""A diverging run stops with an error naming the exact last good checkpoint.

The schedule makes the timing certain: epoch 1 runs at learning rate 0 (zero warmup) and
writes two checkpoints (steps 2 and 4); epoch 2 runs at 1e30, so the weights blow up on its
first update and the loss (or the weights) become non-finite before step 6 is saved.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_cfg

from yoloqat.core.errors import RuntimeFailure
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _graph_mode_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_nan_error_names_the_last_good_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_synthetic_coco(data, train=16, val=2, size=64, seed=3, num_classes=3)
    cfg = tiny_cfg(
        data,
        tmp_path,
        "scheduler.lr=1e30",
        "scheduler.warmup=zero",
        "scheduler.warmup_epochs=1",
        "train.ckpt_interval=2",
    )
    run = tmp_path / "run"
    with pytest.raises(RuntimeFailure) as info:
        Trainer(cfg, run_dir=run).run()
    ckpt_dir = run / "ckpt_0"
    written = sorted(ckpt_dir.glob("0-*.ckpt"), key=lambda p: read_checkpoint(p)[1]["global_step"])
    assert (ckpt_dir / "last.ckpt").samefile(written[-1])  # the newest under a stable name
    assert [p.name for p in written] == ["0-1_2.ckpt", "0-1_4.ckpt"], written
    last = written[-1]
    text = f"{info.value.message}\n{info.value.hint or ''}"
    assert str(last) in text, f"the error does not name {last}:\n{text}"
    assert "0-1_2.ckpt" not in text, f"the error names an older checkpoint:\n{text}"
    assert "non-finite" in text or "loss became" in text
    params, meta = read_checkpoint(last)  # the named file is intact, finite and resumable
    assert meta["global_step"] == 4 and meta["epoch"] == 1
    assert all(np.isfinite(v.asnumpy()).all() for v in params.values())
    assert not list(ckpt_dir.glob(".*"))  # no half-written temporaries
