"""``--is_save_on_master 1`` (the default) under msrun: only rank 0 writes checkpoints.

Two msrun workers on CPU train one epoch; rank 1 must train (it logs) but write no
checkpoint, and rank 0's checkpoint must load into a freshly built network. With
``--val_interval 1``, rank 0 validates and writes best.ckpt while rank 1 does neither, and
both ranks finish (the collectives stay in step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_distributed import _config, _launch, _tail

from yoloqat.core.config import apply_overrides
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.inference import load_detector


@pytest.mark.slow
def test_save_on_master_leaves_only_rank_0s_loadable_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_synthetic_coco(data, train=8, val=2, size=64, seed=5, num_classes=3)
    out = tmp_path / "runs"
    out.mkdir()
    cfg = apply_overrides(
        _config(data, out),
        ["train.is_save_on_master=1", "train.max_epoch=1", "train.val_interval=1"],
    )
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))

    done = _launch(cfg_path, out, tmp_path / "msrun")
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{_tail(tmp_path / 'msrun')}"

    runs = [p for p in out.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    run = runs[0]
    assert (run / "log_rank1.txt").is_file()  # rank 1 did train
    ckpts = sorted((run / "ckpt_0").glob("0-*.ckpt"))
    assert [c.name for c in ckpts] == ["0-1_2.ckpt"]  # 8 images / (2 ranks x 2) = 2 steps
    assert read_checkpoint(run / "ckpt_0" / "best.ckpt")[1]["best"]["epoch"] == 1
    for name, count in (("metrics.jsonl", 1), ("metrics_rank1.jsonl", 0)):
        text = (run / name).read_text()
        assert text.count('"kind": "val"') == count, name
        assert text.count('"kind": "epoch"') == 1, name  # both ranks finished the epoch
    others = sorted(p.relative_to(run) for p in run.rglob("*.ckpt") if p.parent.name != "ckpt_0")
    assert not others, f"ranks other than 0 wrote checkpoints: {others}"
    assert not [p for p in run.iterdir() if p.name.startswith("ckpt_") and p.name != "ckpt_0"]

    params, meta = read_checkpoint(ckpts[0])
    assert (meta["epoch"], meta["global_step"]) == (1, 2)
    network, _, _ = load_detector({}, ckpts[0], explicit_config=False)
    loaded = {p.name: p.asnumpy() for p in network.get_parameters()}
    assert loaded and all(name in params for name in loaded)
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, params[name].asnumpy(), err_msg=name)
