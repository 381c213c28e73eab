"""The train loop end to end on a tiny synthetic dataset: resume, overfit, NaN, bad paths."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_cfg

from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.training.trainer import Trainer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=6, size=64, seed=3, num_classes=3)
    return out


@pytest.fixture(autouse=True)
def _graph_mode_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def test_resume_reproduces_the_uninterrupted_run(synth: Path, tmp_path: Path) -> None:
    full = Trainer(tiny_cfg(synth, tmp_path, "train.ckpt_interval=3"), run_dir=tmp_path / "a")
    res = full.run()
    assert res.global_step == 8 and len(res.losses) == 8  # 16 images / 4 x 2 epochs
    ckpts = {p.name: p for p in (tmp_path / "a" / "ckpt_0").glob("0-*.ckpt")}
    assert (tmp_path / "a" / "ckpt_0" / "last.ckpt").samefile(ckpts["0-2_8.ckpt"])
    assert set(ckpts) == {"0-1_3.ckpt", "0-1_4.ckpt", "0-2_6.ckpt", "0-2_8.ckpt"}
    _, meta = read_checkpoint(ckpts["0-2_6.ckpt"])
    assert (meta["epoch"], meta["step_in_epoch"], meta["global_step"]) == (2, 2, 6)
    # stopped after step 3 (mid-epoch) and resumed: the next five losses are the same
    resumed = Trainer(
        tiny_cfg(synth, tmp_path, "train.ckpt_interval=3"),
        resume=ckpts["0-1_3.ckpt"],
        run_dir=tmp_path / "b",
    ).run()
    np.testing.assert_allclose(resumed.losses, res.losses[3:], rtol=2e-5)
    assert resumed.global_step == 8
    log = (tmp_path / "a" / "log.txt").read_text()
    assert "epoch[1], iter[0], loss:" in log and "imgs/sec, lr:" in log
    records = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert sum(r["kind"] == "step" for r in records) == 8
    assert (tmp_path / "a" / "curves.png").stat().st_size > 1000


def test_overfitting_a_handful_of_images(synth: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(
        synth,
        tmp_path,
        "train.max_epoch=20",
        "scheduler.T_max=20",
        "scheduler.warmup_epochs=1",
        "train.ckpt_interval=1000",
        "train.keep_checkpoints=1",
    )
    trainer = Trainer(cfg, run_dir=tmp_path / "o")
    trainer.cfg["dataset"] = {"name": "coco", "data_dir": str(synth)}
    losses = trainer.run().losses
    first, last = np.mean(losses[:4]), np.mean(losses[-8:])
    assert last * 5 <= first, f"loss fell only from {first:.1f} to {last:.1f}"


def test_unwritable_ckpt_path_fails_before_training(synth: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="is not writable"):
        Trainer(tiny_cfg(synth, blocker / "sub"))
    with pytest.raises(CheckpointError, match="not found"):
        Trainer(tiny_cfg(synth, tmp_path), resume=tmp_path / "missing.ckpt")


def test_train_eval_predict_cli(synth: Path, tmp_path: Path) -> None:
    # in-process (Typer's runner): the commands' exit codes and output, without paying for
    # four interpreter starts and MindSpore imports
    from typer.testing import CliRunner

    from yoloqat.cli import app

    runner = CliRunner()
    over = ["--set", "model.backbone.width=0.0625", "--set", "model.head.width=0.0625"]
    over += ["--set", "model.backbone.blocks=[1, 1, 1, 1, 1]"]
    out = runner.invoke(
        app,
        [
            "train",
            "--config",
            "synth_tiny",
            "--data_dir",
            str(synth),
            "--max_epoch",
            "1",
            "--per_batch_size",
            "4",
            "--training_shape",
            "64",
            "--ckpt_path",
            str(tmp_path),
            "--set",
            "model.num_classes=3",
            "--set",
            "dataset.name=coco",
            *over,
        ],
    )
    assert out.exit_code == 0, out.output[-2000:]
    ckpt = out.stdout.split("last checkpoint: ")[1].strip()
    res = runner.invoke(
        app,
        [
            "eval",
            "--pretrained",
            ckpt,
            "--images",
            str(synth / "val"),
            "--annotations",
            str(synth / "annotations" / "instances_val.json"),
            "--testing_shape",
            "64",
            "--output",
            str(tmp_path / "ev"),
        ],
    )
    assert res.exit_code == 0, res.output[-2000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith(" Average")]
    assert len(lines) == 12
    saved = json.loads(next((tmp_path / "ev").glob("*/eval.json")).read_text())
    assert set(saved["stats"]) >= {"AP", "AP50", "AR100"}
    assert saved["testing_shape"] == 64
    # no dataset flags, no --testing_shape: the checkpoint's own data and eval size
    own = runner.invoke(app, ["eval", "--pretrained", ckpt, "--output", str(tmp_path / "ev2")])
    assert own.exit_code == 0, own.output[-2000:]
    saved2 = json.loads(next((tmp_path / "ev2").glob("*/eval.json")).read_text())
    assert saved2["testing_shape"] == 128  # synth_tiny's eval.testing_shape
    assert saved2["num_images"] == saved["num_images"] > 0
    pred = runner.invoke(
        app,
        [
            "predict",
            str(synth / "val"),
            "--checkpoint",
            ckpt,
            "--testing_shape",
            "64",
            "--score_threshold",
            "0.0",
            "--json",
            "--output",
            str(tmp_path / "pred"),
        ],
    )
    assert pred.exit_code == 0, pred.output[-2000:]
    report = json.loads(pred.stdout)  # one record per image, as in results.json
    assert len(report) == 6 and all("detections" in r for r in report)
    assert json.loads((tmp_path / "pred" / "results.json").read_text()) == report
    assert all((tmp_path / "pred" / Path(r["source"]).name).is_file() for r in report)


def test_backbone_only_initial_weights(synth: Path, tmp_path: Path) -> None:
    import mindspore as ms

    from yoloqat.engine.models import yolov3_darknet53

    donor = yolov3_darknet53(num_classes=3, width=0.0625, blocks=(1, 1, 1, 1, 1))  # tiny_cfg's
    items = [
        {"name": p.name, "data": ms.Tensor(np.random.rand(*p.shape).astype(np.float32))}
        for p in donor.get_parameters()
        if p.name.startswith("backbone.")
    ]
    path = tmp_path / "backbone.ckpt"
    ms.save_checkpoint(items, str(path))
    trainer = Trainer(tiny_cfg(synth, tmp_path, f"train.resume_yolov3={path}"))
    trainer._build()
    got = {p.name: p.asnumpy() for p in trainer.network.get_parameters()}
    for item in items:
        np.testing.assert_array_equal(got[item["name"]], item["data"].asnumpy())
