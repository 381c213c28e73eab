"""The demo end to end at toy scale: every stage runs and the report has every row."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_small(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "yoloqat",
            "demo",
            "--output",
            str(out),
            "--epochs",
            "1",
            "--qat_epochs",
            "1",
            "--train_images",
            "16",  # one batch of 16: each training stage compiles one graph (one size)
            "--val_images",
            "8",
            # one residual block per backbone stage: the same stages at half the graph to compile
            "--set",
            "model.backbone.blocks=[1, 1, 1, 1, 1]",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report" / "report.json").read_text())
    models = [r["model"] for r in report["rows"]]
    assert models == [
        "mindspore_float",
        "mindspore_fake_quant",
        "onnxruntime_float",
        "onnxruntime_int8",
        "mindspore_ptq",
        "onnxruntime_ptq_int8",
    ]
    assert all(r["latency_ms"] > 0 for r in report["rows"])
    assert report["int8_size_ratio"] < 0.5  # int8 weights are a quarter of float32
    import onnx

    for name in ("float.onnx", "int8.onnx", "ptq.onnx"):  # they describe themselves
        meta = {p.key: p.value for p in onnx.load(str(out / "report" / name)).metadata_props}
        assert json.loads(meta["class_names"]) == ["circle", "square", "triangle", "star", "ring"]
        assert meta["normalize"] == "imagenet" and meta["letterbox"] == "false", name
        assert meta["family"] == "yolov3_head" and meta["nms"] == "false", name
    int8_pictures = out / "predictions" / "int8"
    results = json.loads((int8_pictures / "results.json").read_text())
    assert len(results) == 8
    for record in results:  # each picture saved under its image's name
        assert (int8_pictures / Path(record["source"]).name).is_file(), record["source"]
    assert "int8 AP50 - float AP50" in res.stdout
    assert "post-training int8 (int8_ptq, 64 calibration images)" in res.stdout
    # quant-report on the demo's QAT checkpoint needs no data flags: the checkpoint's own
    # dataset and eval size are used
    qat = report["checkpoints"]["qat"]
    rep = subprocess.run(
        [
            *(sys.executable, "-m", "yoloqat", "quant-report", "--checkpoint", qat),
            *("--ptq_checkpoint", report["checkpoints"]["ptq"]),
            *("--no-sensitivity", "--repeats", "1", "--output", str(tmp_path / "qr")),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert "will be deleted" not in rep.stderr  # MindSpore's ONNX deprecation warning
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "qr" / "int8.onnx")).metadata_props}
    assert "class_names" in meta and meta["normalize"] == "imagenet"
    again_report = json.loads((tmp_path / "qr" / "report.json").read_text())
    assert again_report["testing_shape"] == 128 and again_report["images"] == 8
    from yoloqat.engine.checkpoints import read_checkpoint

    for ckpt in (report["checkpoints"]["float"], qat):  # --set reached both stages
        _params, meta = read_checkpoint(ckpt)
        assert meta["config"]["model"]["backbone"]["blocks"] == [1, 1, 1, 1, 1]
    fq = {r["model"]: r for r in report["rows"]}["mindspore_fake_quant"]
    fq2 = {r["model"]: r for r in again_report["rows"]}["mindspore_fake_quant"]
    assert fq2["AP50"] == pytest.approx(fq["AP50"], abs=1e-6)  # same weights, same data
    ptq = {r["model"]: r for r in report["rows"]}["onnxruntime_ptq_int8"]
    ptq2 = {r["model"]: r for r in again_report["rows"]}["onnxruntime_ptq_int8"]
    assert ptq2["AP50"] == pytest.approx(ptq["AP50"], abs=1e-6)
    # usage errors in-process (Typer's runner): no interpreter start needed to check them
    from typer.testing import CliRunner

    from yoloqat.cli import app

    runner = CliRunner()
    again = runner.invoke(app, ["demo", "--output", str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    bad = runner.invoke(app, ["demo", "--output", str(tmp_path / "b"), "--val_images", "0"])
    assert bad.exit_code == 2 and "--val_images 0 is not valid" in bad.stderr
    assert not (tmp_path / "b").exists()  # refused before anything was written
    own = runner.invoke(
        app, ["demo", "--output", str(tmp_path / "c"), "--set", "train.max_epoch=3"]
    )
    assert own.exit_code == 2 and "--set train.max_epoch is not valid" in own.stderr
    assert "--epochs" in own.stderr
    typo = ["demo", "--output", str(tmp_path / "c"), "--set", "model.backbone.blokcs=[1]"]
    bad_key = runner.invoke(app, typo)
    assert bad_key.exit_code == 3 and "blokcs" in bad_key.stderr
    value = ["demo", "--output", str(tmp_path / "c"), "--set", "model.backbone.blocks=[1, 1]"]
    bad_value = runner.invoke(app, value)  # a value only the network's build checks
    assert bad_value.exit_code == 3 and "blocks=[1, 1] is not valid" in bad_value.stderr
    assert not (tmp_path / "c").exists()
