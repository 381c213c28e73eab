"""An imported Darknet model trains, quantizes and exports: YOLOv4-tiny on synthetic data.

Darknet's ``yolov4-tiny.cfg`` at 1/4 width, 3 classes, 128 px (anchors scaled by 128/416),
random initial weights written in Darknet's layout, then through the commands a user types:
``import-darknet``, ``train`` (float, 20 epochs, ``--resume_yolov3``), ``eval``,
``calibrate`` (int8 PTQ on 64 images), ``train`` with ``synth_tiny_quant`` (int8 QAT, 3
epochs), ``export --int8`` and ``eval --onnx`` on ONNX Runtime and OpenVINO. Synthetic data:
400 train and 100 val images (``yoloqat synth``'s generator). Prints one JSON line of COCO
AP / AP50 per stage; about 2 minutes on 2 CPU cores::

    python benchmarks/bench_darknet_train.py [--cfg_dir DIR] [--output bench_darknet_train]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZE = 128
#: yolov4-tiny.cfg's anchors at 416 px, and scaled to 128 px.
ANCHORS_416 = "anchors = 10,14,  23,27,  37,58,  81,82,  135,169,  344,319"
ANCHORS_128 = "anchors = 4,5,  8,9,  12,18,  25,25,  42,52,  106,98"


def run(*args: str) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app

    res = CliRunner().invoke(app, list(args))
    if res.exit_code != 0:
        raise SystemExit(f"yoloqat {' '.join(args)} failed:\n{res.stderr[-2000:]}")


def evaluate(args: list[str], out: Path) -> dict[str, float]:
    run(*args, "--output", str(out))
    (report,) = out.glob("eval_*.json")
    stats = json.loads(report.read_text())["stats"]
    return {"AP": round(stats["AP"], 4), "AP50": round(stats["AP50"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg_dir", default=str(REPO.parent / "shared" / "data" / "darknet_cfg"))
    parser.add_argument("--output", default="bench_darknet_train")
    args = parser.parse_args()

    from yoloqat.core.device import init_device

    init_device("CPU")
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.testing.darknet import darknet_weights, toy_cfg

    root = Path(args.output)
    root.mkdir(parents=True, exist_ok=True)
    text = (Path(args.cfg_dir) / "yolov4-tiny.cfg").read_text()
    cfg = root / "yolov4-tiny-quarter.cfg"
    cfg.write_text(
        toy_cfg(text, width=0.25, classes=3, size=SIZE).replace(ANCHORS_416, ANCHORS_128)
    )
    image = np.random.default_rng(3).random((1, 3, SIZE, SIZE)).astype(np.float32)
    darknet_weights(cfg, image, root / "init.weights")
    data = root / "data"
    make_synthetic_coco(data, train=400, val=100, size=SIZE, seed=2, num_classes=3)
    start = time.time()
    run("import-darknet", str(root / "init.weights"), "--cfg", str(cfg), "--output",
        str(root / "init.ckpt"))  # fmt: skip
    common = ["--data_dir", str(data), "--ckpt_path", str(root / "runs"), "--per_batch_size",
              "16", "--training_shape", str(SIZE), "--set", f"eval.testing_shape={SIZE}",
              "--set", "data.multi_scale=null"]  # fmt: skip
    run("train", "--config", "synth_tiny", *common, "--run_name", "float", "--resume_yolov3",
        str(root / "init.ckpt"), "--max_epoch", "20", "--set", "scheduler.T_max=20")  # fmt: skip
    float_ckpt = sorted((root / "runs" / "float" / "ckpt_0").glob("*.ckpt"))[-1]
    results = {
        "float": evaluate(
            ["eval", "--pretrained", str(float_ckpt), "--data_dir", str(data), "--dataset", "coco"],
            root / "eval_float",
        )
    }
    ptq = root / "ptq.ckpt"
    run("calibrate", "--checkpoint", str(float_ckpt), "--data_dir", str(data), "--images",
        "64", "--output", str(ptq))  # fmt: skip
    run("train", "--config", "synth_tiny_quant", *common, "--run_name", "qat",
        "--resume_yolov3", str(float_ckpt), "--max_epoch", "3")  # fmt: skip
    qat = sorted((root / "runs" / "qat" / "ckpt_0").glob("*.ckpt"))[-1]
    for name, ckpt in (("ptq", ptq), ("qat", qat)):
        onnx = root / f"{name}_int8.onnx"
        run("export", "--checkpoint", str(ckpt), "--int8", "--output", str(onnx))
        for runtime in ("onnxruntime", "openvino"):
            results[f"{name} int8 {runtime}"] = evaluate(
                ["eval", "--onnx", str(onnx), "--data_dir", str(data), "--runtime", runtime],
                root / f"eval_{name}_{runtime}",
            )
    print(json.dumps({"cfg": "yolov4-tiny x0.25 @128", "seconds": round(time.time() - start),
                      **results}))  # fmt: skip


if __name__ == "__main__":
    main()
