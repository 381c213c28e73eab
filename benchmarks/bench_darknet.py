"""Darknet models imported as they are: size, cost, fidelity to OpenCV DNN, int8 latency.

For each ``.cfg`` (default: Darknet's yolov3, yolov3-spp, yolov3-tiny and yolov4-tiny from
``../shared/data/darknet_cfg``): random weights with realistic BatchNorm statistics written
in Darknet's ``.weights`` layout (:mod:`yoloqat.testing.darknet`), ``import_darknet`` of the
pair, then

- parameters (trainable) and GFLOPs at 416 (2 x multiply-adds of every Conv of the float
  ONNX graph, as ``bench_families.py`` counts them; Darknet prints the same convention);
- fidelity: the worst relative difference from OpenCV DNN's outputs (boxes, objectness,
  class scores) on one letterboxed synthetic image at 416, elementwise and at scale;
- latency of the int8 QDQ ONNX model (``int8_ptq`` calibrated on 8 synthetic images) on ONNX
  Runtime and OpenVINO, and of the float ONNX model on ONNX Runtime: ms/img at 416, batch 1,
  ``--threads`` threads, the median of ``--rounds`` rounds alternating the rows.

Prints one JSON object per ``.cfg`` and a Markdown table, with the load average before and
after (the machine is shared: compare rows of one run). A benchmark, not a test: about 2-5
minutes per ``.cfg`` on 2 CPU cores::

    python benchmarks/bench_darknet.py [--cfgs yolov3,yolov4-tiny] [--cfg_dir DIR]
        [--output bench_darknet] [--threads 2] [--rounds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_families import conv_gflops

REPO = Path(__file__).resolve().parents[1]
CFGS = ("yolov3", "yolov3-spp", "yolov3-tiny", "yolov4-tiny")
SIZE = 416


def images(count: int, seed: int = 5) -> np.ndarray:
    """Letterboxed RGB/255 synthetic pictures (480 x 360) at 416, ``[count, 3, 416, 416]``."""
    from yoloqat.data.eval_transforms import preprocess_eval
    from yoloqat.data.synth import make_image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        picture, _ = make_image(rng, size=480, num_classes=3)
        batch, _ = preprocess_eval(
            np.ascontiguousarray(picture[:360]), SIZE, use_letterbox=True, normalize_mode="unit"
        )
        out.append(batch)
    return np.stack(out).astype(np.float32)


def latencies(paths: dict[str, tuple[Path, str]], threads: int, rounds: int) -> dict:
    """Median ms/img of each (model file, runtime), rounds alternating the rows."""
    from yoloqat.engine.runtimes import open_model

    models = {row: open_model(path, rt, threads=threads) for row, (path, rt) in paths.items()}
    x = images(1, seed=9)
    for model in models.values():  # warm up (OpenVINO compiles on the first call)
        for _ in range(3):
            model(x)
    times: dict[str, list[float]] = {row: [] for row in models}
    for _ in range(rounds):
        for row, model in models.items():
            start = time.perf_counter()
            model(x)
            times[row].append(1000 * (time.perf_counter() - start))
    return {row: round(statistics.median(t), 2) for row, t in times.items()}


def measure(name: str, cfg_dir: Path, out: Path, threads: int, rounds: int) -> dict:
    import yoloqat
    from yoloqat.core.config import load_config
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine.darknet import import_darknet
    from yoloqat.engine.inference import load_detector
    from yoloqat.engine.pipeline import quantize
    from yoloqat.testing.darknet import (
        darknet_weights,
        differences,
        network_outputs,
        opencv_outputs,
    )

    cfg = cfg_dir / f"{name}.cfg"
    image = images(1)
    weights = darknet_weights(cfg, image, out / f"{name}.weights")
    ckpt = out / f"{name}.ckpt"
    summary = import_darknet(weights, ckpt, cfg_file=cfg)
    net, _, _ = load_detector(load_config("yolov3_darknet53"), ckpt, explicit_config=False)
    params = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    worst, at_scale = differences(
        network_outputs(net, image), opencv_outputs(cfg, weights, image, out)
    )
    fp32 = export_onnx(net, out / f"{name}_fp32.onnx", input_size=SIZE)
    quantizer = yoloqat.create("quantizer", "int8_ptq")
    net = quantize(net, quantizer, "int8_ptq")
    quantizer.calibrate(net, [images(8, seed=11)])
    int8 = export_onnx(net, out / f"{name}_int8.onnx", input_size=SIZE, int8=True)
    ms = latencies(
        {
            "fp32 onnxruntime": (fp32, "onnxruntime"),
            "int8 onnxruntime": (int8, "onnxruntime"),
            "int8 openvino": (int8, "openvino"),
        },
        threads,
        rounds,
    )
    for path in (weights, ckpt):
        path.unlink()
    return {
        "cfg": name,
        "network": summary["network"],
        "levels": len(net.strides),
        "strides": list(net.strides),
        "parameters": params,
        "gflops_416": round(conv_gflops(fp32), 2),
        "fidelity_elementwise": {k: float(f"{v:.2g}") for k, v in worst.items()},
        "fidelity_at_scale": {k: float(f"{v:.2g}") for k, v in at_scale.items()},
        "ms_per_img": ms,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfgs", default=",".join(CFGS))
    parser.add_argument("--cfg_dir", default=str(REPO.parent / "shared" / "data" / "darknet_cfg"))
    parser.add_argument("--output", default="bench_darknet")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    from yoloqat.core.device import init_device

    init_device("CPU")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    rows = []
    for name in args.cfgs.split(","):
        row = measure(name, Path(args.cfg_dir), out, args.threads, args.rounds)
        print(json.dumps(row), flush=True)
        rows.append(row)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print("\n| cfg | levels | parameters | GFLOPs at 416 | vs OpenCV DNN (elementwise / at scale) "
          "| int8 ONNX Runtime ms | int8 OpenVINO ms | fp32 ONNX Runtime ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        worst = max(r["fidelity_elementwise"].values())
        scale = max(r["fidelity_at_scale"].values())
        ms = r["ms_per_img"]
        print(
            f"| `{r['cfg']}.cfg` | {r['levels']} ({', '.join(map(str, r['strides']))}) "
            f"| {r['parameters'] / 1e6:.2f} M | {r['gflops_416']} | {worst:.1e} / {scale:.1e} "
            f"| {ms['int8 onnxruntime']} | {ms['int8 openvino']} | {ms['fp32 onnxruntime']} |"
        )


if __name__ == "__main__":
    main()
