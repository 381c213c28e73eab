"""What a training run shows and leaves (issue 24, item 5): one epoch numbering (from 1)
everywhere, ``last.ckpt``, ``--data``, absolute data paths in checkpoints, the start and end
summaries, the compile line, the run's ETA and the epoch's mean loss."""

from __future__ import annotations

import io
import re

import pytest

from yoloqat.cli import render
from yoloqat.core import events
from yoloqat.engine.training.progress import RunClock
from yoloqat.engine.training.resume import resume_position


def test_resume_position_reads_old_and_new_checkpoints() -> None:
    # new checkpoints count epochs from 1 (epoch_base 1); old ones from 0: both resume at
    # the same place, which comes from the step count when there is one
    new = {"epoch": 2, "epoch_base": 1, "step_in_epoch": 2, "global_step": 6}
    old = {"epoch": 1, "step_in_epoch": 2, "global_step": 6}
    assert resume_position(new, 4) == resume_position(old, 4) == (1, 2)
    for meta in (new, old):
        no_count = {k: v for k, v in meta.items() if k != "global_step"}
        assert resume_position(no_count, 4) == (1, 2)
    # the end of an epoch continues with the next one
    end_old, end_new = {"epoch": 0, "step_in_epoch": 4}, {"epoch": 1, "epoch_base": 1}
    end_new["step_in_epoch"] = 4
    assert resume_position(end_old, 4) == resume_position(end_new, 4) == (1, 0)
    assert resume_position({**end_new, "global_step": 4}, 4) == (1, 0)


# -- the time left -------------------------------------------------------------------------
def test_the_run_clock_leaves_compiles_out_of_the_step_time() -> None:
    clock = RunClock(sizes=[64, 96], one_graph=False, images_per_step=4)
    assert clock.compiles_next(64) and clock.compiles_next(96)
    clock.step(30.0, 64, compiled=True)
    assert clock.eta(10, 0, 0) is None  # no steady step timed yet: unknown, not 30 s a step
    for seconds in (1.0, 1.2, 0.8, 50.0):  # one outlier (a stall) moves the median little
        clock.step(seconds, 64, compiled=False)
    assert not clock.compiles_next(64) and clock.compiles_next(96)
    step = clock.step_seconds
    assert step == pytest.approx(1.1)
    # 10 steps, and the 96 px graph still to compile (as long as the 64 px one did)
    assert clock.eta(10, 0, 0) == pytest.approx(10 * step + 30.0)
    # a validation not timed yet: its images at half a step per batch of 4, plus the eval
    # graph's compile (half a train compile); once timed, the time it took
    untimed = clock.eta(10, 2, 40)
    assert untimed == pytest.approx(10 * step + 30.0 + 2 * (step / 4 * 0.5 * 40) + 15.0)
    clock.validation(20.0)
    clock.validation(6.0)
    assert clock.eta(10, 2, 40) == pytest.approx(10 * step + 30.0 + 2 * 6.0)
    clock.step(25.0, 96, compiled=True)
    assert clock.eta(0, 0, 40) == 0.0
    one = RunClock(sizes=[64, 96], one_graph=True, images_per_step=4)  # dynamic shapes
    one.step(30.0, 64, compiled=True)
    assert not one.compiles_next(96)


# -- the summaries -------------------------------------------------------------------------
START = {
    "family": "yolov3",
    "backbone": "darknet53",
    "head": "yolov3_head",
    "quantizer": "int8_qat",
    "parameters": 61949149,
    "sizes": [320, 608],
    "gflops": {320: 39.0, 608: 140.8},
    "dataset": "coco2014",
    "data": "/data/coco2014",
    "num_classes": 80,
    "class_names": ["person", "bicycle", "car", "motorcycle", "airplane", "bus"]
    + ["x"] * 73
    + ["toothbrush"],
    "train_images": 117264,
    "val_images": 5000,
    "val_interval": 5,
    "device": "Ascend",
    "group_size": 8,
    "batch_size": 16,
    "steps_per_epoch": 916,
    "max_epoch": 135,
    "start_epoch": 3,
    "start_step": 2,
    "run_dir": "outputs/RUN",
}


def test_the_start_summary_says_what_is_trained_on_what() -> None:
    lines = render.start_lines(START)
    assert lines[0] == (
        "train yolov3 (darknet53 + yolov3_head, int8_qat quantization): 61,949,149 "
        "parameters, 39-141 GFLOPs at 320-608 px"
    )
    assert lines[1] == (
        "data: coco2014 /data/coco2014: 80 classes (person, bicycle, car, motorcycle, "
        "airplane, ... toothbrush); 117,264 train images, 5,000 val (every 5 epochs and "
        "after the last)"
    )
    assert lines[2] == (
        "run: 135 epochs x 916 steps = 123,660 steps, batch 128 (16 x 8 devices) on Ascend; "
        "resuming at epoch 3 (2 of its 916 steps done), 121,826 steps left"
    )
    assert lines[3] == "outputs: outputs/RUN"
    one = {**START, "family": None, "quantizer": None, "sizes": [64], "gflops": {64: 0.5}}
    one.update(class_names=["a"], num_classes=1, val_images=None, group_size=1)
    one.update(start_epoch=1, start_step=0)
    lines = render.start_lines(one)
    assert lines[0].startswith("train darknet53 + yolov3_head: 61,949,149 parameters, 0.5 GFLOPs")
    assert lines[1].endswith("1 class (a); 117,264 train images")
    assert lines[2] == "run: 135 epochs x 916 steps = 123,660 steps, batch 16 on Ascend"


def test_the_end_summary_gives_time_and_final_metrics() -> None:
    data = {
        "epochs_done": 4,
        "max_epoch": 4,
        "steps_run": 16,
        "seconds": 3725.4,
        "compile_seconds": 26.04,
        "validation_seconds": 3.2,
        "loss": 3.21449,
        "validation": {"AP": 0.31241, "AP50": 0.61801},
        "best": {"metric": "AP50", "value": 0.62, "epoch": 3},
    }
    assert render.end_lines(data) == [
        "done: epoch 4/4, 16 steps in 1:02:05 (compiling 26.0s, validating 3.2s)",
        "final: epoch 4 mean loss 3.214; val AP 0.3124, AP50 0.6180; best AP50 0.6200 (epoch 3)",
    ]
    bare = {**data, "validation": None, "best": None, "validation_seconds": 0.0}
    assert render.end_lines(bare)[1] == "final: epoch 4 mean loss 3.214"


def test_a_terminal_shows_the_compile_status_then_the_run_eta(monkeypatch) -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None)
    monkeypatch.setattr(render, "err_console", console)
    monkeypatch.setattr(render, "_rank", 0)
    compile_start = {"phase": "start", "what": "training graph", "size": 64}
    with render._rich_factory("epoch 1/2", 4) as task:
        render._on_event(events.Event("compile", compile_start))
        task.progress.refresh()
        compiling = out.getvalue()
        render._on_event(
            events.Event("compile", {**compile_start, "phase": "end", "seconds": 26.1})
        )
        task.advance(1, mean_loss=3.5, lr=0.01, eta=None)
        task.advance(1, mean_loss=3.25, img_s=52.0, lr=0.01, eta=190.0)
        task.progress.refresh()
    screen = out.getvalue()
    assert "compiling the training graph (64 px) ... 0s" in compiling
    assert "compiled the training graph (64 px) in 26.1s" in screen
    assert "ETA -:--:--" in screen  # until a step that compiled nothing is timed
    final = [line for line in screen.splitlines() if "epoch 1/2" in line][-1]
    assert "2/4" in final and "ETA 0:03:10" in final and "mean loss 3.25" in final
    assert "img/s 52" in final and "compiling" not in final


def test_plain_lines_carry_the_run_eta(capsys) -> None:
    task = render._PlainTask("epoch 2/5", 4)
    task.advance(4, mean_loss=3.25, img_s=52.0, lr=0.01, eta=190.0)
    task.line()
    line = capsys.readouterr().err.strip()
    assert line.startswith("epoch 2/5: 4/4 [") and "ETA 0:03:10  mean loss 3.25  img/s 52" in line


# -- --data ------------------------------------------------------------------------------
def test_data_names_a_yaml_a_folder_or_a_coco_json(tmp_path, monkeypatch) -> None:
    from yoloqat.core.errors import UsageError
    from yoloqat.engine.training.datasets import absolute_data_paths, dataset_from_data

    monkeypatch.chdir(tmp_path)
    (tmp_path / "y" / "images").mkdir(parents=True)
    (tmp_path / "y" / "labels").mkdir()
    (tmp_path / "y" / "data.yaml").write_text("names: [a, b]\n")
    (tmp_path / "c" / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (tmp_path / "c" / split).mkdir()
        (tmp_path / "c" / "annotations" / f"instances_{split}.json").write_text("{}")
    (tmp_path / "v" / "Annotations").mkdir(parents=True)
    (tmp_path / "v" / "JPEGImages").mkdir()
    # relative paths given, absolute paths stored
    assert dataset_from_data("y/data.yaml") == {
        "name": "yolo",
        "data_dir": str(tmp_path / "y" / "data.yaml"),
    }
    assert dataset_from_data("y") == {"name": "yolo", "data_dir": str(tmp_path / "y")}
    assert dataset_from_data("v") == {"name": "voc", "data_dir": str(tmp_path / "v")}
    assert dataset_from_data("c/annotations/instances_train2017.json") == {
        "name": "coco",
        "train_images": str(tmp_path / "c" / "train2017"),
        "train_annotations": str(tmp_path / "c" / "annotations" / "instances_train2017.json"),
        "val_images": str(tmp_path / "c" / "val2017"),
        "val_annotations": str(tmp_path / "c" / "annotations" / "instances_val2017.json"),
    }
    for bad, says in (("nothere", "no such file or folder"), ("c/train2017", "no dataset layout")):
        with pytest.raises(UsageError, match=says) as info:
            dataset_from_data(bad)
        assert info.value.exit_code == 2
    # a config's relative paths, made absolute for the checkpoint
    assert absolute_data_paths({"name": "coco", "data_dir": "c"})["data_dir"] == str(tmp_path / "c")
    block = {"name": "coco", "train_images": "c/train2017", "train_annotations": "c/none.json"}
    assert absolute_data_paths(block) == {
        **block,
        "train_images": str(tmp_path / "c" / "train2017"),
    }
    kept = {"name": "voc", "data_dir": "/abs/voc", "train_split": "trainval"}
    assert absolute_data_paths(kept) == kept


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from yoloqat.data.synth import make_synthetic_coco

    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=4, size=64, seed=3, num_classes=3)
    return out


@pytest.mark.slow
def test_a_cli_run_shows_its_summaries_and_leaves_last_ckpt(synth, tmp_path, monkeypatch) -> None:
    """One toy run from the command line, piped (plain lines): the start summary, the
    compile line, progress with the run's ETA and the epoch's mean loss, the end summary;
    ``--data`` with a relative path sets the dataset and the class count; the checkpoints
    count epochs from 1, store the data's absolute path (``eval`` from another folder
    works) and the newest one is also ``last.ckpt``."""
    import json
    import os

    from tiny import cli

    from yoloqat.engine.checkpoints import read_checkpoint

    monkeypatch.chdir(synth.parent)
    tiny = ["--set", "model.backbone.width=0.0625", "--set", "model.head.width=0.0625"]
    tiny += ["--set", "model.backbone.blocks=[1, 1, 1, 1, 1]", "--set", "scheduler.T_max=2"]
    tiny += ["--set", "scheduler.warmup_epochs=0", "--set", "train.keep_checkpoints=1"]
    res = cli(
        "train", "--config", "synth_tiny", "--data", synth.name, "--max-epoch", "2",
        "--per_batch_size", "4", "--training_shape", "64", "--ckpt_path", str(tmp_path),
        "--run_name", "r", "--val_interval", "2", *tiny,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    err = res.stderr
    assert "model.num_classes=3: the classes of" in err  # synth_tiny says 5
    assert "train darknet53 + yolov3_head: 137,926 parameters, 0.00358 GFLOPs at 64 px" in err
    assert (
        f"data: coco {synth}: 3 classes (circle, square, triangle); 16 train images, 4 val" in err
    )
    assert "run: 2 epochs x 4 steps = 8 steps, batch 4 on CPU" in err
    assert err.count("compiling the training graph (64 px) ...") == 1  # one size: once
    assert err.count("compiled the training graph (64 px) in ") == 1
    assert err.index("run: 2 epochs") < err.index("compiling") < err.index("epoch 1/2: ")
    epoch2 = next(line for line in err.splitlines() if line.startswith("epoch 2/2: 4/4"))
    # the run's ETA: here the validation after this epoch, still to come
    assert re.search(r"\] ETA 0:00:\d\d  mean loss [\d.]+  img/s", epoch2), epoch2
    assert "done: epoch 2/2, 8 steps in " in err and "final: epoch 2 mean loss " in err
    assert "; val AP " in err and "best AP50 " in err
    run = tmp_path / "r"
    ckpts = run / "ckpt_0"
    assert res.stdout.splitlines() == [
        f"run folder: {run}",
        f"last checkpoint: {ckpts / 'last.ckpt'}",
        f"best checkpoint: {ckpts / 'best.ckpt'}",
    ]
    assert sorted(p.name for p in ckpts.iterdir()) == ["0-2_8.ckpt", "best.ckpt", "last.ckpt"]
    assert os.path.samefile(ckpts / "last.ckpt", ckpts / "0-2_8.ckpt")
    _, meta = read_checkpoint(ckpts / "last.ckpt")
    assert (meta["epoch"], meta["epoch_base"], meta["step_in_epoch"]) == (2, 1, 4)
    assert meta["config"]["dataset"] == {"name": "coco", "data_dir": str(synth)}
    assert meta["config"]["model"]["num_classes"] == 3
    assert read_checkpoint(ckpts / "best.ckpt")[1]["best"]["epoch"] == 2
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["epoch"] for r in records} == {1, 2}
    log = (run / "log.txt").read_text()
    assert "epoch[1], iter[3]" in log and "epoch[2], val AP:" in log
    # the checkpoint's data is found from any folder
    monkeypatch.chdir(tmp_path)
    ev = cli("eval", "--pretrained", str(ckpts / "last.ckpt"), "--output", str(tmp_path / "ev"))
    assert ev.returncode == 0, ev.stderr[-2000:]
