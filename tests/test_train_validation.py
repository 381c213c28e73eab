"""Validation during training, best.ckpt, and callbacks on one tiny synthetic run.

One run (module fixture): 12 epochs of 4 steps at 64 px, ``val_interval=1`` on the 16
training images (a split the tiny network learns enough of in 12 epochs for a non-zero AP),
with the ``tensorboard`` callback and a third-party callback that raises.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_registry import make_dist
from tiny import tiny_cfg

from yoloqat.core import events
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.checkpoints import read_checkpoint
from yoloqat.engine.training.trainer import Trainer
from yoloqat.registry import Registry

pytestmark = pytest.mark.slow
EPOCHS = 12

BOOM_PLUGIN = '''
from yoloqat import hookimpl

CALLS = []


class Boom:
    def on_step(self, step):
        CALLS.append(("on_step", step.global_step))
        raise RuntimeError(f"boom at step {step.global_step}")

    def on_epoch_end(self, epoch):
        CALLS.append(("on_epoch_end", epoch.epoch))


def boom():
    """A callback that raises on its first event."""
    return Boom()


@hookimpl
def yoloqat_callbacks():
    return {"boom": boom}
'''


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Any]:
    import mindspore as ms

    root = tmp_path_factory.mktemp("val")
    data = root / "data"
    make_synthetic_coco(data, train=16, val=6, size=64, seed=3, num_classes=3)
    plugin_dir = root / "plugin"
    plugin_dir.mkdir()
    make_dist(plugin_dir, "yoloqat-boom", "yq_boom", BOOM_PLUGIN)
    train_split = ["train", "annotations/instances_train.json"]
    cfg = tiny_cfg(
        data,
        root,
        f"dataset.train_images={train_split[0]}",
        f"dataset.train_annotations={train_split[1]}",
        f"dataset.val_images={train_split[0]}",
        f"dataset.val_annotations={train_split[1]}",
        f"train.max_epoch={EPOCHS}",
        f"scheduler.T_max={EPOCHS}",
        "scheduler.lr=0.03",
        "train.val_interval=1",
        "eval.testing_shape=64",
        "train.callbacks=[log, metrics, curves, tensorboard, boom]",
    )
    seen: list[events.Event] = []
    unsubscribe = events.subscribe(seen.append)
    sys.path.insert(0, str(plugin_dir))
    try:
        trainer = Trainer(cfg, run_dir=root / "run", registry=Registry())
        result = trainer.run()
        calls = list(sys.modules["yq_boom"].CALLS)
    finally:
        unsubscribe()
        sys.path.remove(str(plugin_dir))
        sys.modules.pop("yq_boom", None)
        ms.set_context(mode=ms.PYNATIVE_MODE)
    run_dir = root / "run"
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        "root": root,
        "run_dir": run_dir,
        "result": result,
        "records": records,
        "vals": [r for r in records if r["kind"] == "val"],
        "events": seen,
        "boom_calls": calls,
    }


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_every_epoch_is_validated_and_the_best_kept(run: dict[str, Any]) -> None:
    vals, run_dir = run["vals"], run["run_dir"]
    assert [v["epoch"] for v in vals] == list(range(1, EPOCHS + 1))
    assert [v["global_step"] for v in vals] == [4 * (e + 1) for e in range(EPOCHS)]
    ap50 = [v["AP50"] for v in vals]
    best_index = int(np.argmax(ap50))  # the first of equal values: later ties are not better
    assert ap50[best_index] > 0, f"no validation found anything: {ap50}"
    assert [v["best"] for v in vals] == [i == 0 or ap50[i] > max(ap50[:i]) for i in range(EPOCHS)]
    _params, meta = read_checkpoint(run_dir / "ckpt_0" / "best.ckpt")
    best = meta["best"]
    assert (best["metric"], best["epoch"], best["global_step"]) == (
        "AP50",
        best_index + 1,
        4 * (best_index + 1),
    )
    assert best["value"] == ap50[best_index]
    assert best["stats"]["AP"] == vals[best_index]["AP"]
    # best.ckpt is a full training checkpoint beside the (rotated) interval ones
    assert meta["epoch"] == best_index + 1 and meta["step_in_epoch"] == 4
    interval = sorted(p.name for p in (run_dir / "ckpt_0").glob("0-*.ckpt"))
    assert len(interval) == 10  # keep_checkpoints=10: best.ckpt is not counted or rotated
    # the log line and the curves' AP panel (three 3-inch panels at 100 dpi)
    log = (run_dir / "log.txt").read_text()
    assert log.count(", val AP:") == EPOCHS and "best AP50:" in log
    assert _png_size(run_dir / "curves.png") == (800, 900)
    # the progress display's events
    shown = [e for e in run["events"] if e.kind == "validation"]
    assert [e.data["AP50"] for e in shown] == ap50
    assert any("new best" in e.data.get("message", "") for e in run["events"])


def test_eval_of_best_ckpt_reproduces_the_logged_ap(run: dict[str, Any]) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app

    best_path = run["run_dir"] / "ckpt_0" / "best.ckpt"
    out = run["root"] / "eval"
    res = CliRunner().invoke(app, ["eval", "--pretrained", str(best_path), "--output", str(out)])
    assert res.exit_code == 0, res.output[-2000:]
    saved = json.loads(next(out.glob("*/eval.json")).read_text())
    epoch = read_checkpoint(best_path)[1]["best"]["epoch"]
    logged = run["vals"][epoch - 1]
    assert saved["testing_shape"] == 64 and saved["num_images"] == logged["num_images"] == 16
    assert saved["stats"] == {k: logged[k] for k in saved["stats"]}  # all 12, exactly
    assert saved["stats"]["AP50"] > 0


def test_tensorboard_scalars_equal_metrics_jsonl(run: dict[str, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = list(run["run_dir"].glob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = EventAccumulator(str(run["run_dir"]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/img_s", "val/AP", "val/AP50"} <= tags
    steps = [r for r in run["records"] if r["kind"] == "step"]
    assert len(steps) == 4 * EPOCHS

    def scalars(tag: str) -> list[tuple[int, float]]:
        return [(e.step, e.value) for e in acc.Scalars(tag)]

    # event files store float32: the values equal metrics.jsonl's at that precision
    for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/img_s", "img_s")):
        expected = [(r["global_step"], float(np.float32(r[key]))) for r in steps]
        assert scalars(tag) == expected, tag
    for key in ("AP", "AP50", "AR100"):
        expected = [(v["global_step"], float(np.float32(v[key]))) for v in run["vals"]]
        assert scalars(f"val/{key}") == expected, key


def test_a_raising_callback_is_warned_about_once_and_the_run_finishes(
    run: dict[str, Any],
) -> None:
    assert run["result"].epochs_done == EPOCHS and run["result"].global_step == 4 * EPOCHS
    assert run["boom_calls"] == [("on_step", 1)]  # disabled after it raised
    warnings = [e for e in run["events"] if e.kind == "warning" and "boom" in str(e.data)]
    assert len(warnings) == 1
    message = warnings[0].data["message"]
    assert "callback 'boom'" in message and "plugin 'yq_boom'" in message
    assert "RuntimeError" in message and "boom at step 1" in message and "on_step" in message
