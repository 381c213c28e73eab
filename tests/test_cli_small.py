"""Issue 24's small command-line items: a readable ``train --help``, missing inputs named on
the command line are usage errors, ``config show CKPT``, an unavailable ``--device_target``
in one line, the demo's "slower", and ``benchmark.png``'s tick labels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tiny import cli, tiny_cfg

from yoloqat.engine.training.setup import FLAG_TO_KEY


def test_train_help_fits_80_columns_in_panels() -> None:
    res = cli("train", "--help")  # not a terminal: Rich's 80 columns
    assert res.returncode == 0
    lines = res.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and "…" not in res.stdout  # no name cut
    # was 100+; each config flag's help also names the config key it falls back to
    assert len(lines) < 90
    for panel in ("Data and model", "Schedule and optimizer", "Validation", "Devices"):
        assert f"─ {panel} ─" in res.stdout
    for flag in [*FLAG_TO_KEY, "data", "resume", "run_name", "callbacks", "device_target"]:
        assert res.stdout.count(f" --{flag} ") == 1, flag  # one spelling each
    assert "--data-dir" not in res.stdout


@pytest.mark.parametrize("spelling", ["--per_batch_size", "--per-batch-size"])
def test_both_spellings_of_an_option_work(spelling: str) -> None:
    res = cli("train", spelling, "2", "--config", "synth_tiny", "--set", "train.max_epok=1")
    assert res.returncode == 3  # parsed; then the misspelt key is the config error
    assert "Did you mean 'train.max_epoch'?" in res.stderr


def test_missing_inputs_on_the_command_line_are_usage_errors(tmp_path: Path) -> None:
    # exit 2, as Click's own "Path 'x' does not exist": the command line is what to fix
    # (exit 3 is for values in a config); the message names the path
    missing = str(tmp_path / "nothere.jpg")
    image = str(tmp_path / "grey.png")
    import cv2
    import numpy as np

    cv2.imwrite(image, np.full((32, 32, 3), 128, np.uint8))
    cases = [
        (["predict", missing, "--checkpoint", "x.ckpt"], f"not found: {missing}"),
        (["train", "--data", missing], f"--data {missing}: no such file or folder"),
        (["train", "--resume", missing], f"--resume {missing}: no such file or folder"),
        (["train", "--data_dir", missing], f"--data_dir {missing}: no such file or folder"),
        (["train", "--data", ".", "--data_dir", "."], "give --data or --data_dir, not both"),
        (["predict", image, "--checkpoint", missing], f"--checkpoint {missing}: no such file"),
        (["eval", "--checkpoint", missing], f"--checkpoint {missing}: no such file"),
        (["eval", "--onnx", missing], f"--onnx {missing}: no such file"),
        (["export", "--checkpoint", missing], f"--checkpoint {missing}: no such file"),
    ]
    for args, says in cases:
        res = cli(*args)
        assert res.returncode == 2, (args, res.stderr)
        assert says in res.stderr and "Traceback" not in res.stderr


def test_config_show_of_a_checkpoint_prints_its_stored_config(tmp_path: Path) -> None:
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import save_checkpoint

    cfg = tiny_cfg(tmp_path / "data", tmp_path / "out")
    net = pipeline.build_model(cfg)
    meta = {"config": cfg, "epoch": 2, "epoch_base": 1, "step_in_epoch": 4, "global_step": 8}
    ckpt = save_checkpoint(net, tmp_path / "0-2_8.ckpt", meta)
    res = cli("config", "show", str(ckpt), "--set", "train.max_epoch=7")
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"the config stored in {ckpt} (epoch 2, step 8)" in res.stderr
    shown = yaml.safe_load(res.stdout)
    assert shown["model"]["num_classes"] == 3 and shown["train"]["max_epoch"] == 7
    assert shown["dataset"] == cfg["dataset"]
    # a checkpoint under another name is no YAML: one line; one without a config too
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(ckpt.read_bytes())
    res = cli("config", "show", str(renamed))
    assert res.returncode == 3 and "is not UTF-8 text" in res.stderr
    assert "Traceback" not in res.stderr and "UnicodeDecodeError" not in res.stdout
    bare = save_checkpoint(net, tmp_path / "bare.ckpt", {"epoch": 1})
    res = cli("config", "show", str(bare))
    assert res.returncode == 1 and "stores no config" in res.stderr


def test_an_unavailable_device_is_one_line(monkeypatch) -> None:
    import mindspore as ms

    from yoloqat.core.device import set_device
    from yoloqat.core.errors import RuntimeFailure

    def no_gpu(target: str) -> None:  # MindSpore 2.10's words on a CPU-only machine
        raise RuntimeError(
            f"Unsupported device target {target}. This process only supports one of the "
            "['CPU']. Please check whether the GPU environment is installed ...\n\n"
            "- C++ Call Stack: (For framework developers)\nmindspore/core/utils/ms_context.cc"
        )

    monkeypatch.setattr(ms, "set_device", no_gpu)
    with pytest.raises(RuntimeFailure) as info:
        set_device("GPU")
    message = info.value.message
    assert message == (
        "--device_target GPU is not available here: this MindSpore can use CPU only (no GPU "
        "build, driver or runtime found)"
    )
    assert info.value.exit_code == 1 and "--device_target CPU" in (info.value.hint or "")


@pytest.mark.slow
def test_device_target_gpu_without_a_gpu_from_the_command_line(tmp_path: Path) -> None:
    probe = (
        "import mindspore as ms\ntry:\n ms.set_device('GPU')\nexcept RuntimeError:\n print('none')"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if "none" not in found.stdout:
        pytest.skip("this machine has a GPU")
    res = subprocess.run(
        [sys.executable, "-m", "yoloqat", "train", "--config", "synth_tiny", "--device_target",
         "GPU", "--ckpt_path", str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-2].startswith("error: --device_target GPU is not available here")
    assert lines[-1].startswith("hint: ")
    assert "C++" not in res.stderr and "Traceback" not in res.stderr
    assert "libcuda" not in res.stderr  # MindSpore's own log lines silenced


def test_the_demo_says_slower_when_int8_is_slower() -> None:
    from yoloqat.cli.demo import speed_words

    assert speed_words(0.39) == "2.56x slower"
    assert speed_words(2.6) == "2.60x faster"
    assert speed_words(1.0) == "1.00x faster"


@pytest.mark.parametrize("spread", [1.0, 0.1])  # latencies over 1.4 decades, and over 2.7x
def test_benchmark_png_tick_labels_do_not_overlap(spread: float) -> None:
    import matplotlib.pyplot as plt

    from yoloqat.engine.benchmark_files import figure

    # the README's table (the demo's QAT checkpoint): 2.19 to 50.41 ms
    table = [("mindspore", "fp32", "mindspore", 0.8997, 49.22), ("mindspore", "int8",
             "mindspore", 0.8974, 50.41), ("onnx", "fp32", "onnxruntime", 0.8997, 2.38),
             ("onnx", "fp32", "openvino", 0.8997, 2.67), ("onnx", "int8", "onnxruntime",
             0.9006, 6.50), ("onnx", "int8", "openvino", 0.9018, 2.19)]  # fmt: skip
    rows = [
        {"format": f, "precision": p, "runtime": r, "AP50": ap, "latency_ms": 3 + ms * spread}
        for f, p, r, ap, ms in table
    ]
    result = {"rows": rows, "images": 200, "threads": 2, "testing_shape": 128, "batch": 1}
    result.update(runs=5, load_avg_1m=0.5)
    fig = figure(result)
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        ax = fig.axes[0]
        for axis, (low, high) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            shown = [
                t.label1
                for t in axis.get_major_ticks()
                if t.label1.get_visible() and t.label1.get_text() and low <= t.get_loc() <= high
            ]
            texts = [t.get_text() for t in shown]
            assert len(shown) >= 2, texts
            boxes = [t.get_window_extent(renderer) for t in shown]
            for k, a in enumerate(boxes):
                for b in boxes[k + 1 :]:
                    assert not a.overlaps(b), f"tick labels overlap: {texts}"
            assert not any("times" in text or "^" in text for text in texts), texts
    finally:
        plt.close(fig)


def test_onnx_flag_opens_any_file_name_as_an_exported_model(tmp_path: Path) -> None:
    # --onnx says what the file is: no checkpoint wording for a model without a suffix
    for args in (
        ["eval", "--onnx", "/dev/zero", "--data_dir", str(tmp_path)],
        ["predict", str(tmp_path / "grey.png"), "--onnx", "/dev/zero"],
    ):
        import cv2
        import numpy as np

        cv2.imwrite(str(tmp_path / "grey.png"), np.full((32, 32, 3), 128, np.uint8))
        res = cli(*args, "--output", str(tmp_path / "out"))
        assert res.returncode == 1, (args, res.stderr)
        assert "model file /dev/zero is a device, not a regular file" in res.stderr, res.stderr
