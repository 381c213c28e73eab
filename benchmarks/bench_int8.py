"""CPU latency of YOLOv3-DarkNet53: MindSpore fp32 vs ONNX Runtime and OpenVINO, fp32 and int8.

``python benchmarks/bench_int8.py [--size 416] [--threads 2] [--runs 10] [--no-openvino]``

Builds the full-width network with random weights (and non-trivial BN statistics), then:

1. MindSpore fp32, GRAPH_MODE, eval mode;
2. the same network exported to ONNX (float, BN folded) and run by ONNX Runtime;
3. the network quantized in place with the bundled ``int8_qat`` quantizer, its observers
   calibrated by a few training-mode forwards (real coco128 images when present, else
   random ones), exported in int8 QDQ form and run by ONNX Runtime (uint8 activations,
   int8 per-channel weights: the CPU QLinearConv fast path);
4. the same two ONNX files run by OpenVINO (``--runtime openvino``; skipped when the
   ``openvino`` package is absent or with ``--no-openvino``), with the op statistics of the
   int8 file (how many convolutions OpenVINO runs in int8).

Each engine runs ``--warmup`` times, then all engines are timed in alternating rounds (so
machine load affects them alike). Prints one JSON line:
median latencies in milliseconds, the speed-up ratios (``speedup_fastest_int8_vs_ort_int8``
and ``speedup_fastest_int8_vs_mindspore_fp32`` for the fastest int8 engine), the largest
difference between each int8 engine's outputs and the MindSpore fake-quant network's (eval
mode), and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
COCO128 = REPO.parent / "shared" / "data" / "coco128" / "images" / "train2017"


def build_network(width: float, seed: int):
    """The detector with random weights and random (but plausible) BN statistics."""
    import mindspore as ms
    from mindspore import Tensor

    from yoloqat.core.layers import ConvBnAct
    from yoloqat.engine.models import yolov3_darknet53

    ms.set_seed(seed)
    rng = np.random.default_rng(seed)
    net = yolov3_darknet53(width=width)
    for _, cell in net.cells_and_names():
        if isinstance(cell, ConvBnAct):
            n = cell.bn.gamma.shape[0]
            cell.bn.gamma.set_data(Tensor(rng.uniform(0.8, 1.2, n).astype(np.float32)))
            cell.bn.beta.set_data(Tensor(rng.uniform(-0.1, 0.1, n).astype(np.float32)))
    net.set_train(False)
    return net


def calibration_batches(size: int, count: int, seed: int) -> list[np.ndarray]:
    """``count`` single-image batches: coco128 images if present, else Gaussian noise."""
    files = sorted(COCO128.glob("*.jpg"))[:count] if COCO128.is_dir() else []
    if files:
        from yoloqat.data.eval_transforms import preprocess_eval
        from yoloqat.data.imageio import read_image

        return [preprocess_eval(read_image(f), size)[0][None] for f in files]
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(count)]


def time_calls(fn, runs: int) -> list[float]:
    """Wall-clock milliseconds of ``runs`` calls of ``fn``."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=416)
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--calib", type=int, default=4, help="calibration forwards")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-mindspore", action="store_true")
    parser.add_argument("--no-openvino", action="store_true", help="skip the OpenVINO columns")
    parser.add_argument(
        "--input-quant",
        action="store_true",
        help="also time OpenVINO on an int8 file with the seed's input quantization "
        "(every conv in int8)",
    )
    parser.add_argument(
        "--int8-activations",
        action="store_true",
        help="also time a QDQ graph with int8 (instead of uint8) activations",
    )
    parser.add_argument(
        "--train-steps",
        type=int,
        default=3,
        help="timed train steps for the QAT / float train-step ratio (0 to skip it)",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("GLOG_v", "3")

    import mindspore as ms
    from mindspore import Tensor

    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine.runtimes import open_model
    from yoloqat.plugins.int8_qat import int8_qat

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    size = args.size
    image = calibration_batches(size, 1, args.seed + 1)[0]
    net = build_network(args.width, args.seed)
    result: dict = {
        "benchmark": "int8_latency",
        "size": size,
        "batch": 1,
        "width": args.width,
        "ort_threads": args.threads,
        "runs": args.runs,
        "cpu_count": os.cpu_count(),
        "load_avg_1m_start": os.getloadavg()[0],
    }
    tmp = Path(tempfile.mkdtemp(prefix="yoloqat_bench_"))
    engines: dict = {}
    engines["ort_fp32"] = open_model(
        export_onnx(net, tmp / "fp32.onnx", input_size=size), threads=args.threads
    )

    # a twin with the same weights, quantized; observers calibrated by training-mode forwards
    qnet = build_network(args.width, args.seed)
    ms.load_param_into_net(qnet, {p.name: p.copy() for p in net.get_parameters()})
    qnet = int8_qat().apply(qnet)
    qnet.set_train(True)
    for batch in calibration_batches(size, args.calib, args.seed + 2):
        qnet(Tensor(batch))
    qnet.set_train(False)
    engines["ort_int8"] = open_model(
        export_onnx(qnet, tmp / "int8.onnx", input_size=size, int8=True), threads=args.threads
    )
    if args.int8_activations:
        engines["ort_int8_s8act"] = open_model(
            export_onnx(qnet, tmp / "s8.onnx", input_size=size, int8=True, activation_dtype="int8"),
            threads=args.threads,
        )
    if not args.no_openvino and importlib.util.find_spec("openvino") is not None:
        from yoloqat.deploy.openvino_stats import int8_op_stats

        engines["ov_fp32"] = open_model(tmp / "fp32.onnx", "openvino", threads=args.threads)
        engines["ov_int8"] = open_model(tmp / "int8.onnx", "openvino", threads=args.threads)
        if args.input_quant:
            from yoloqat.deploy.qdq import SEED_INPUT_QUANT

            inq = export_onnx(
                qnet, tmp / "inq.onnx", input_size=size, int8=True, input_quant=SEED_INPUT_QUANT
            )
            engines["ov_int8_inq"] = open_model(inq, "openvino", threads=args.threads)
            inq_stats = int8_op_stats(inq, threads=args.threads)
            result["ov_int8_inq_convolutions"] = (
                f"{inq_stats['int8_convolutions']}/{inq_stats['convolutions']}"
            )
        stats = int8_op_stats(tmp / "int8.onnx", threads=args.threads)
        result["ov_int8_convolutions"] = f"{stats['int8_convolutions']}/{stats['convolutions']}"
        result["ov_float_convolutions"] = stats["float_convolutions"]
    fq_out = [o.asnumpy() for o in qnet(Tensor(image))]
    for name in [n for n in engines if "int8" in n]:
        int8_out = engines[name](image)
        result[f"{name}_vs_fake_quant_max_abs_diff"] = max(
            float(np.abs(a - b).max()) for a, b in zip(int8_out, fq_out)
        )
        # the decoded pair (boxes [N, M, 4], scores [N, M, C]): the scores are the last
        result[f"{name}_vs_fake_quant_scores_max_abs_diff"] = float(
            np.abs(int8_out[-1] - fq_out[-1]).max()
        )
    del qnet

    if not args.skip_mindspore:
        ms.set_context(mode=ms.GRAPH_MODE)
        x = Tensor(image)
        engines["mindspore_fp32"] = lambda _image: net(x)
    for _ in range(args.warmup):
        for engine in engines.values():
            engine(image)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(args.runs):  # alternate, so load changes hit all engines alike
        for name, engine in engines.items():
            times[name] += time_calls(lambda e=engine: e(image), 1)
    for name, values in times.items():
        result[f"{name}_ms"] = statistics.median(values)
    result["speedup_int8_vs_ort_fp32"] = result["ort_fp32_ms"] / result["ort_int8_ms"]
    int8_engines = [n for n in engines if "int8" in n]
    fastest = min(int8_engines, key=lambda n: result[f"{n}_ms"])
    result["fastest_int8"] = fastest
    result["speedup_fastest_int8_vs_ort_int8"] = result["ort_int8_ms"] / result[f"{fastest}_ms"]
    if "ov_fp32_ms" in result:
        result["speedup_ov_fp32_vs_ort_fp32"] = result["ort_fp32_ms"] / result["ov_fp32_ms"]
    if "mindspore_fp32_ms" in result:
        result["speedup_int8_vs_mindspore_fp32"] = (
            result["mindspore_fp32_ms"] / result["ort_int8_ms"]
        )
        result["speedup_ort_fp32_vs_mindspore_fp32"] = (
            result["mindspore_fp32_ms"] / result["ort_fp32_ms"]
        )
        result["speedup_fastest_int8_vs_mindspore_fp32"] = (
            result["mindspore_fp32_ms"] / result[f"{fastest}_ms"]
        )
    result["model_mb"] = {
        "fp32": round((tmp / "fp32.onnx").stat().st_size / 2**20, 1),
        "int8": round((tmp / "int8.onnx").stat().st_size / 2**20, 1),
    }
    if args.train_steps > 0:
        # QAT train step over float train step, same network and input, steps interleaved
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from qat_step import measure

        result["qat_vs_float_train_step"] = measure(
            "yolov3", args.width, args.size, batch=1, steps=args.train_steps
        )
    result["load_avg_1m_end"] = os.getloadavg()[0]
    for key, value in list(result.items()):
        if isinstance(value, float):
            result[key] = round(value, 4)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    main()
