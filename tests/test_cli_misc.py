"""The command line around the happy path: ``eval --onnx``, Ctrl-C (exit code 130) and
``YOLOQAT_DEBUG`` tracebacks.

``eval --onnx`` is checked against ``eval --pretrained`` of the same weights on ground
truth made of that network's own detections, so AP is high and both must agree.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from tiny import tiny_cfg
from typer.testing import CliRunner

from yoloqat.cli import app
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine import pipeline
from yoloqat.engine.checkpoints import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=16, val=3, size=64, seed=6, num_classes=3)
    return out


@pytest.fixture(autouse=True)
def _pynative_restored():
    import mindspore as ms

    yield
    ms.set_context(mode=ms.PYNATIVE_MODE)


def _calibrate_bn(network, images: np.ndarray, steps: int = 20) -> None:
    """Running statistics close to the data's, so the outputs depend on the input."""
    from mindspore import Tensor

    network.set_train(True)
    for _ in range(steps):
        network(Tensor(images))
    network.set_train(False)


def _val_images(synth: Path) -> np.ndarray:
    """The synthetic val split as one batch of 64 px network inputs."""
    from yoloqat.engine.evaluate import load_batches
    from yoloqat.plugins.coco import coco

    ann_file = synth / "annotations" / "instances_val.json"
    source = coco(val_images=str(synth / "val"), val_annotations=str(ann_file)).val_source()
    return load_batches(source, testing_shape=64, batch_size=len(source))[0]["image"]


def _own_detections_as_ground_truth(
    network, synth: Path, out: Path, per_image: int = 3, calibrate_steps: int = 20
) -> Path:
    """An annotation file whose boxes are the network's own top detections, after
    ``calibrate_steps`` training-mode forwards on the val images (BN statistics, observers)."""
    from yoloqat.engine.evaluate import evaluate_source
    from yoloqat.engine.inference import MindSporePredictor
    from yoloqat.plugins.coco import coco

    ann_file = synth / "annotations" / "instances_val.json"
    dataset = coco(val_images=str(synth / "val"), val_annotations=str(ann_file))
    source = dataset.val_source()
    _calibrate_bn(network, _val_images(synth), calibrate_steps)
    res = evaluate_source(
        MindSporePredictor(network, graph_mode=False),
        source,
        dataset.category_ids,
        testing_shape=64,
        batch_size=len(source),
        output_dir=out / "own",
    )
    dets = json.loads(Path(res.extra["results_file"]).read_text())
    ann = json.loads(ann_file.read_text())
    ann["annotations"] = []
    for image in ann["images"]:
        mine = sorted((d for d in dets if d["image_id"] == image["id"]), key=lambda d: -d["score"])
        for d in mine[:per_image]:
            w, h = d["bbox"][2:]
            ann["annotations"].append(
                {
                    "id": len(ann["annotations"]) + 1,
                    "image_id": image["id"],
                    "category_id": d["category_id"],
                    "bbox": d["bbox"],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    path = out / "own_gt.json"
    path.write_text(json.dumps(ann))
    return path


def _stats(folder: Path) -> dict:
    return json.loads(next(folder.glob("*/eval.json")).read_text())


@pytest.mark.slow
def test_eval_onnx_command_agrees_with_the_checkpoint(synth: Path, tmp_path: Path) -> None:
    import mindspore as ms

    from yoloqat.deploy.onnx_export import export_onnx

    cfg = tiny_cfg(synth, tmp_path)
    ms.set_seed(3)
    net = pipeline.build_model(cfg)
    gt = _own_detections_as_ground_truth(net, synth, tmp_path)
    ckpt = save_checkpoint(
        net, tmp_path / "float.ckpt", {"quantized": False, "config": copy.deepcopy(cfg)}
    )
    onnx_path = export_onnx(net, tmp_path / "float.onnx", input_size=64, batch=None)
    data = ["--images", str(synth / "val"), "--annotations", str(gt)]
    runner = CliRunner()
    by_onnx = runner.invoke(
        app, ["eval", "--onnx", str(onnx_path), *data, "--output", str(tmp_path / "o")]
    )
    assert by_onnx.exit_code == 0, by_onnx.output
    summary = [ln for ln in by_onnx.stdout.splitlines() if ln.startswith(" Average")]
    assert len(summary) == 12
    onnx_stats = _stats(tmp_path / "o")
    assert onnx_stats["testing_shape"] == 64  # taken from the ONNX model, no flag given
    assert onnx_stats["num_images"] == 3
    by_ckpt = runner.invoke(
        app,
        [
            "eval",
            "--pretrained",
            str(ckpt),
            *data,
            "--testing_shape",
            "64",
            "--output",
            str(tmp_path / "m"),
        ],
    )
    assert by_ckpt.exit_code == 0, by_ckpt.output
    ms_stats = _stats(tmp_path / "m")
    assert ms_stats["stats"]["AP50"] > 0.5, "the ground truth is the network's own: AP is high"
    for key, value in ms_stats["stats"].items():
        assert onnx_stats["stats"][key] == pytest.approx(value, abs=0.02), key


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["GLOG_v"] = "3"
    env.pop("YOLOQAT_DEBUG", None)
    env.pop("YOLOQAT_RUN_NAME", None)
    return env


def _interrupt_when(proc: subprocess.Popen, ready) -> str:
    """Wait until ``ready()`` (or the process ends), send SIGINT, return its stderr."""
    try:
        for _ in range(6000):
            if proc.poll() is not None or ready():
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"it ended on its own:\n{proc.communicate()[1][-3000:]}"
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return stderr


def test_ctrl_c_exits_130_without_a_traceback(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "yoloqat", "synth", str(out), "--train", "1000000", "--size", "32"]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    stderr = _interrupt_when(proc, lambda: len(list(out.glob("train/*.jpg"))) > 5)
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr.lower()
    assert "Traceback" not in stderr


@pytest.mark.slow
def test_ctrl_c_during_training_exits_130_without_a_traceback(synth: Path, tmp_path: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "yoloqat",
        "train",
        "--config",
        "synth_tiny",
        "--data_dir",
        str(synth),
        "--max_epoch",
        "1000",
        "--per_batch_size",
        "4",
        "--training_shape",
        "64",
        "--ckpt_path",
        str(tmp_path),
        "--run_name",
        "run",
        "--set",
        "model.num_classes=3",
        "--set",
        "dataset.name=coco",
        "--set",
        "model.backbone.width=0.0625",
        "--set",
        "model.backbone.blocks=[1, 1, 1, 1, 1]",
        "--set",
        "model.head.width=0.0625",
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = tmp_path / "run" / "metrics.jsonl"
    # interrupted once training is really under way (a step is logged)
    stderr = _interrupt_when(
        proc, lambda: metrics.is_file() and '"kind": "step"' in metrics.read_text()
    )
    assert proc.returncode == 130, stderr[-3000:]
    assert "interrupted" in stderr.lower()
    assert "Traceback" not in stderr


def test_yoloqat_debug_shows_the_traceback(tmp_path: Path, monkeypatch) -> None:
    broken = tmp_path / "broken.ckpt"  # there, but not a checkpoint: a CheckpointError (exit 1)
    broken.write_bytes(b"not a checkpoint")
    args = ["eval", "--pretrained", str(broken), "--output", str(tmp_path)]
    says = "is truncated or not a MindSpore checkpoint"
    runner = CliRunner()
    monkeypatch.delenv("YOLOQAT_DEBUG", raising=False)
    plain = runner.invoke(app, args)
    assert plain.exit_code == 1
    assert says in plain.stderr and "broken.ckpt" in plain.stderr
    assert "Traceback" not in plain.stderr
    monkeypatch.setenv("YOLOQAT_DEBUG", "1")
    debug = runner.invoke(app, args)
    assert debug.exit_code == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "CheckpointError" in debug.stderr and says in debug.stderr
