"""``yoloqat benchmark``: one row per (format, precision, runtime), failures per row, files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from yoloqat.cli import app
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.benchmark import plan

pytestmark = pytest.mark.slow

TINY = [
    "--set",
    "model.num_classes=3",
    "--set",
    "model.backbone.width=0.0625",
    "--set",
    "model.head.width=0.0625",
    "--set",
    "model.backbone.blocks=[1, 1, 1, 1, 1]",
]


def _invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A float checkpoint (random weights, 3 classes, 1/16 width) that stores its config."""
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.engine.pipeline import build_model
    from yoloqat.engine.training.checkpoint import save_checkpoint

    root = tmp_path_factory.mktemp("bench")
    make_synthetic_coco(root / "data", train=4, val=3, size=64, seed=3, num_classes=3)
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [f"dataset.data_dir={root / 'data'}", "eval.testing_shape=64"]
        + [v for v in TINY if v != "--set"],
    )
    return save_checkpoint(build_model(cfg), root / "float.ckpt", {"config": cfg})


def test_plan_orders_rows_and_rejects_unknown_names() -> None:
    rows = [
        (t.format, t.precision, t.runtime)
        for t in plan(["onnx", "mindspore"], ["int8", "fp32"], ["a", "b"])
    ]
    assert rows == [
        ("mindspore", "fp32", "mindspore"),
        ("mindspore", "int8", "mindspore"),
        ("onnx", "fp32", "a"),
        ("onnx", "fp32", "b"),
        ("onnx", "int8", "a"),
        ("onnx", "int8", "b"),
    ]
    from yoloqat.core.errors import UsageError

    with pytest.raises(UsageError, match="'tflite' is not a format"):
        plan(["tflite"], ["fp32"], ["a"])


def test_benchmark_table_json_markdown_png(tiny_checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = _invoke(
        "benchmark",
        "--checkpoint",
        str(tiny_checkpoint),
        "--runtimes",
        "onnxruntime,nosuch",
        "--runs",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--calibration_images",
        "2",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "benchmark.json").read_text())
    rows = {(r["format"], r["precision"], r["runtime"]): r for r in report["rows"]}
    assert list(rows) == [
        ("mindspore", "fp32", "mindspore"),
        ("mindspore", "int8", "mindspore"),
        ("onnx", "fp32", "onnxruntime"),
        ("onnx", "fp32", "nosuch"),
        ("onnx", "int8", "onnxruntime"),
        ("onnx", "int8", "nosuch"),
    ]
    ok = [r for k, r in rows.items() if k[2] != "nosuch"]
    assert all(r["status"] == "ok" and r["error"] is None for r in ok)
    for r in ok:  # every working row was evaluated on the 3 val images and timed
        assert 0.0 <= r["AP"] <= 1.0 and 0.0 <= r["AP50"] <= 1.0
        assert r["latency_ms"] > 0 and r["images_per_s"] == pytest.approx(
            1000 / r["latency_ms"],
            rel=1e-3,
            abs=0.006,  # it is rounded to 2 decimals
        )
    assert report["images"] == 3 and report["threads"] == 1
    assert rows["mindspore", "fp32", "mindspore"]["speedup_vs_mindspore_fp32"] == 1.0
    # the same float network in MindSpore and in ONNX Runtime scores the same
    assert rows["onnx", "fp32", "onnxruntime"]["AP50"] == pytest.approx(
        rows["mindspore", "fp32", "mindspore"]["AP50"], abs=0.02
    )
    # a runtime that does not exist fails its rows only, naming it
    for precision in ("fp32", "int8"):
        bad = rows["onnx", precision, "nosuch"]
        assert bad["status"] == "exported but eval failed" and "nosuch" in bad["error"]
        assert bad["latency_ms"] is None
    # int8 of a float checkpoint: a PTQ twin, smaller than the float file
    assert report["int8_source"].startswith("int8_ptq calibrated on 2 images")
    assert (
        rows["onnx", "int8", "onnxruntime"]["size_mb"]
        < rows["onnx", "fp32", "onnxruntime"]["size_mb"]
    )
    md = (out / "benchmark.md").read_text()
    assert md.count("\n| ") == 1 + len(rows) and "nosuch" in md
    assert (out / "benchmark.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ms/img" in result.stdout and "onnxruntime" in result.stdout


def test_benchmark_export_failure_is_a_row_status(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Without a quantizer to make the int8 model, its rows say export failed, and why."""
    from yoloqat.registry import reset_default

    out = tmp_path / "bench"
    request_reset = reset_default  # the CLI's --disable-plugin set the process-wide registry
    result = _invoke(
        "--disable-plugin",
        "int8_ptq",
        "benchmark",
        "--checkpoint",
        str(tiny_checkpoint),
        "--formats",
        "onnx",
        "--precisions",
        "int8",
        "--runtimes",
        "onnxruntime",
        "--no-accuracy",
        "--runs",
        "1",
        "--output",
        str(out),
    )
    request_reset()
    assert result.exit_code == 1  # nothing ran
    (row,) = json.loads((out / "benchmark.json").read_text())["rows"]
    assert row["status"] == "export failed" and "int8_ptq" in row["error"]
    assert row["AP"] is None and row["latency_ms"] is None


def test_benchmark_bad_options_are_usage_errors(tmp_path: Path) -> None:
    for args, message in (
        (["--formats", "tflite"], "'tflite' is not a format"),
        (["--precisions", "fp16"], "'fp16' is not a precision"),
        (["--batch", "0"], "--batch 0 is not valid"),
        (["--max_images", "0"], "--max_images 0 is not valid"),
        (["--runtimes", " , "], "--runtimes is empty"),
    ):
        result = _invoke("benchmark", *args, "--output", str(tmp_path / "b"))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output
