"""The bundled detector families side by side, on the demo's data, size and epochs.

For each family, ``yoloqat demo --family F`` in its own process (synthetic data: 1000 train
and 200 val images at 128 px; float training, int8 QAT from its checkpoint, ``int8_ptq``
post-training quantization, int8 ONNX export of both, evaluation), then from what it wrote:

- parameters (trainable) and GFLOPs at the input size (2 x multiply-adds of every Conv of
  the float ONNX graph, from ONNX shape inference; the decode's element-wise ops are left
  out, they are < 1% of the total);
- float AP / AP50 (MindSpore), QAT int8 AP50 (the int8 ONNX file on ONNX Runtime), PTQ int8
  AP50 (its int8 ONNX file on ONNX Runtime);
- ms/img of the QAT int8 ONNX file on ONNX Runtime and OpenVINO (batch 1, ``--threads``
  threads, the median of ``--rounds`` rounds alternating the two runtimes);
- the float and QAT first-step seconds (the first step of each run: its graph compile and
  first batch, from the run's metrics.jsonl).

Prints one JSON object per family and a Markdown table, with the load average before and
after. A benchmark, not a test: about 10 minutes per family on 2 CPU cores::

    python benchmarks/bench_families.py [--families yolov3,yolov3_tiny,yolov8]
        [--epochs 20] [--qat_epochs 3] [--output bench_families] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def conv_gflops(onnx_path: Path) -> float:
    """2 x multiply-adds of every Conv of a float ONNX graph, in GFLOPs."""
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in [*model.graph.value_info, *model.graph.output, *model.graph.input]
    }
    weights = {i.name: list(i.dims) for i in model.graph.initializer}
    total = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        w = weights[node.input[1]]  # [out, in / group, kh, kw]
        out = shapes[node.output[0]]  # [N, out, H, W]
        total += 2 * int(np.prod(out[1:])) * int(np.prod(w[1:]))
    return total / 1e9


def first_step_seconds(run_dir: Path) -> float:
    """Seconds of a run's first step (graph compile plus the first batch)."""
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "step" and rec.get("global_step") == 1:
            return round(16 / float(rec["img_s"]), 1)  # the demo's batch of 16
    raise RuntimeError(f"no first step in {run_dir / 'metrics.jsonl'}")


def latencies(path: Path, size: int, threads: int, rounds: int) -> dict[str, float]:
    """Median ms/img of ``path`` on each runtime, rounds alternating the runtimes."""
    from yoloqat.engine.runtimes import open_model

    models = {name: open_model(path, name, threads=threads) for name in ("onnxruntime", "openvino")}
    x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm up (OpenVINO compiles on the first call)
        for _ in range(5):
            model(x)
    for _ in range(rounds):
        for name, model in models.items():
            t0 = time.perf_counter()
            model(x)
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["rows"] if r["model"] == name)


def run_family(family: str, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    folder = out / family
    cmd = [sys.executable, "-m", "yoloqat", "demo", "--family", family, "--output",
           str(folder), "--epochs", str(args.epochs), "--qat_epochs", str(args.qat_epochs),
           "--force"]  # fmt: skip
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"family": family, "error": res.stderr.strip().splitlines()[-3:]}
    report = json.loads((folder / "report" / "report.json").read_text())
    files = report["files"]
    from yoloqat.engine.checkpoints import read_checkpoint

    params, _meta = read_checkpoint(report["checkpoints"]["float"])
    count = sum(int(np.prod(v.shape)) for k, v in params.items() if _trainable(k))
    float_run = next((folder / "float").iterdir())
    qat_run = next((folder / "qat").iterdir())
    size = int(report["testing_shape"])
    return {
        "family": family,
        "configs": report.get("configs"),
        "parameters": count,
        "gflops": round(conv_gflops(Path(files["float_onnx"])), 3),
        "input_size": size,
        "float_AP": row(report, "mindspore_float")["AP"],
        "float_AP50": row(report, "mindspore_float")["AP50"],
        "qat_int8_AP50_onnx": row(report, "onnxruntime_int8")["AP50"],
        "ptq_int8_AP50_onnx": row(report, "onnxruntime_ptq_int8")["AP50"],
        "int8_ms_per_img": latencies(Path(files["int8_onnx"]), size, args.threads, args.rounds),
        "float_first_step_s": first_step_seconds(float_run),
        "qat_first_step_s": first_step_seconds(qat_run),
        "demo_minutes": round((time.perf_counter() - t0) / 60, 1),
    }


def _trainable(name: str) -> bool:
    """Trainable tensors of a float checkpoint (no BN statistics, no optimizer state)."""
    skip = ("moving_mean", "moving_variance", "moments.", "accum.", "global_step",
            "learning_rate", "loss_scale", "ema.")  # fmt: skip
    return name.startswith(("backbone.", "head.")) and not any(s in name for s in skip)


def table(results: list[dict[str, Any]]) -> str:
    head = ("| family | params | GFLOPs | float AP | float AP50 | QAT int8 AP50 (ONNX) | "
            "PTQ int8 AP50 | ORT int8 ms/img | OpenVINO int8 ms/img | float 1st step s | "
            "QAT 1st step s |")  # fmt: skip
    lines = [head, "|" + "---|" * 11]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['family']} | failed: {' '.join(r['error'])} |")
            continue
        ms = r["int8_ms_per_img"]
        lines.append(
            f"| {r['family']} | {r['parameters'] / 1e6:.2f}M | {r['gflops']:.3f} | "
            f"{r['float_AP']:.4f} | {r['float_AP50']:.4f} | {r['qat_int8_AP50_onnx']:.4f} | "
            f"{r['ptq_int8_AP50_onnx']:.4f} | {ms['onnxruntime']:.2f} | {ms['openvino']:.2f} | "
            f"{r['float_first_step_s']:.1f} | {r['qat_first_step_s']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", default="yolov3,yolov3_tiny,yolov8")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--qat_epochs", type=int, default=3)
    parser.add_argument("--output", type=Path, default=Path("bench_families"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    print(json.dumps({"load_average_before": os.getloadavg()}), flush=True)
    results = []
    for family in args.families.split(","):
        result = run_family(family.strip(), args.output, args)
        print(json.dumps(result), flush=True)
        results.append(result)
    print(json.dumps({"load_average_after": os.getloadavg()}), flush=True)
    print(table(results))


if __name__ == "__main__":
    main()
