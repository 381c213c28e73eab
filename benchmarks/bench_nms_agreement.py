"""Agreement of ``export --nms`` models (ONNX and OpenVINO IR, on ONNX Runtime and OpenVINO)
with ``predict --checkpoint`` on real images.

For a checkpoint (float, or QAT/PTQ: its int8 export) it predicts on ``--images`` with
MindSpore (the host postprocess: threshold, box mapping, "+1 pixel" per-class NMS), exports
the model with the NMS in the graph to ONNX and to OpenVINO IR, predicts with each
(``nms``: the ONNX file on onnxruntime and openvino, also on onnxruntime without graph
optimisations, whose int8 arithmetic is the fake-quant network's; ``ir_nms`` on openvino)
and with the export without NMS (``host_nms``: the host postprocess on the runtime's
decoded outputs), and prints one JSON line: per model against the checkpoint
(``vs_checkpoint``), and the NMS models against the host NMS on the same runtime
(``nms_vs_host_nms``: what the in-graph NMS alone changes), the detection counts, the pairs
(same class, IoU >= 0.5), the box coordinate (image pixels) and score differences over the
pairs, the scores of the unpaired detections; the file sizes and OpenVINO's int8 op
counts.

    python benchmarks/bench_nms_agreement.py --checkpoint QAT.ckpt \\
        --images ../shared/data/coco128/images/train2017 --conf 0.1
    python benchmarks/bench_nms_agreement.py --checkpoint QAT.ckpt --images DIR --letterbox
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _as_written(runtime) -> None:
    """Give an onnxruntime runtime a session without graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    runtime.session = ort.InferenceSession(
        str(runtime.path), opts, providers=["CPUExecutionProvider"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", required=True, help="an image folder (e.g. coco128's)")
    parser.add_argument("--max_images", type=int, default=128)
    parser.add_argument("--conf", type=float, default=0.25)
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--max_det", type=int, default=300)
    parser.add_argument("--imgsz", type=int, default=None)
    parser.add_argument("--letterbox", action="store_true", help="letterboxed input")
    parser.add_argument("--output", default=None, help="keep the exported files here")
    args = parser.parse_args()

    import yoloqat
    from yoloqat.core.contracts.quantizer import is_quantized
    from yoloqat.deploy.openvino_stats import int8_op_stats
    from yoloqat.engine.agreement import agreement

    images = sorted(
        str(p) for p in Path(args.images).iterdir() if p.suffix.lower() in (".jpg", ".png")
    )[: args.max_images]
    model = yoloqat.load(args.checkpoint)
    if args.letterbox:  # the exports record it in their metadata
        model.letterbox = True
        model.config = {**model.config, "eval": {**model.config.get("eval", {}), "letterbox": True}}
    options = {"conf": args.conf, "iou": args.iou, "max_det": args.max_det, "imgsz": args.imgsz}
    reference = model.predict(images, **options)
    out = Path(args.output or tempfile.mkdtemp(prefix="nms-agreement-"))
    nms = {"nms": True, "conf": args.conf, "iou": args.iou, "max_det": args.max_det}
    size = {"imgsz": args.imgsz}
    files = {
        "onnx_nms": model.export(out / "nms.onnx", **size, **nms),
        "ir_nms": model.export(out / "nms.xml", format="openvino", **size, **nms),
        "onnx": model.export(out / "plain.onnx", **size),
    }
    runs = {
        "host_nms/onnxruntime": (files["onnx"], "onnxruntime"),
        "host_nms/openvino": (files["onnx"], "openvino"),
        "nms/onnxruntime": (files["onnx_nms"], "onnxruntime"),
        "nms/openvino": (files["onnx_nms"], "openvino"),
        "ir_nms/openvino": (files["ir_nms"], "openvino"),
        "nms/onnxruntime_as_written": (files["onnx_nms"], "onnxruntime"),
    }
    report = {
        "checkpoint": args.checkpoint,
        "int8": is_quantized(model.network),
        "letterbox": model.letterbox,
        "input_size": args.imgsz or model.input_size,
        "images": len(images),
        "reference_detections": sum(len(r) for r in reference),
        **options,
        "vs_checkpoint": {},
        "nms_vs_host_nms": {},
        "sizes_bytes": {
            "onnx": files["onnx"].stat().st_size,
            "onnx_nms": files["onnx_nms"].stat().st_size,
            "ir_nms_xml": files["ir_nms"].stat().st_size,
            "ir_nms_bin": files["ir_nms"].with_suffix(".bin").stat().st_size,
        },
    }
    results = {}
    for name, (path, runtime) in runs.items():
        exported = yoloqat.load(path, runtime=runtime)
        if name.endswith("_as_written"):  # no graph optimisations: the QDQ arithmetic as
            _as_written(exported.predictor.runtime)  # written, the fake-quant network's
        results[name] = exported.predict(images, **options)
        report["vs_checkpoint"][name] = agreement(reference, results[name])
    for runtime in ("onnxruntime", "openvino"):  # what the in-graph NMS alone changes
        host, graph = results[f"host_nms/{runtime}"], results[f"nms/{runtime}"]
        report["nms_vs_host_nms"][runtime] = agreement(host, graph)
    for name in ("onnx_nms", "ir_nms"):
        stats = int8_op_stats(files[name])
        report[f"openvino_ops_{name}"] = {
            "convolutions": stats["convolutions"],
            "int8_convolutions": stats["int8_convolutions"],
            "NonMaxSuppression": stats["layers"].get("NonMaxSuppression", {}),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
