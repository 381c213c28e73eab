"""First-step (graph compile + one step) seconds of the train step, float vs int8 QAT.

``python benchmarks/bench_compile.py`` times, each in a fresh subprocess (MindSpore caches
compiled graphs per process), the trainer's own compiled step (``TrainStep(NetWithLoss)``
with the real ``yolov3_loss`` and ``build_optimizer``'s Momentum) on random images and
targets, for:

- ``demo``: the demo's network (``synth_tiny`` / ``synth_tiny_quant``: width 1/8, 5 classes,
  128 px, batch 16);
- ``full``: YOLOv3-DarkNet53 (``yolov3_darknet53`` / ``..._quant``: width 1, 80 classes) at
  416 px, batch ``--full-batch`` (default 1).

``--shapes 320,352`` also times the first step of each further input size in the same
process (what multi-scale training pays once per shape); ``--dynamic`` compiles the step
once with unknown spatial dims (``Cell.set_inputs``), so further sizes reuse that graph.
Prints one JSON line: seconds per case (wall, and CPU seconds of the process, which machine
load changes less), the ``quant / float`` ratios and the load average before and after.
``--ir-stats`` dumps the IR (``MS_DEV_SAVE_GRAPHS=1``, which slows compiling) and counts its
nodes and subgraphs.

    python benchmarks/bench_compile.py --nets demo
    python benchmarks/bench_compile.py --nets full --kinds quant --shapes 320,352,384
    python benchmarks/bench_compile.py --nets full --shapes 320,352 --dynamic
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: net -> (float config, quant config, input size, batch)
NETS = {
    "demo": ("synth_tiny", "synth_tiny_quant", 128, 16),
    "full": ("yolov3_darknet53", "yolov3_darknet53_quant", 416, 1),
}


def _inputs(network, loss, batch: int, size: int, seed: int = 0) -> list:
    """Random images and their padded ground truth (6 random boxes per image) plus the
    loss's host-built targets, as the step's input Tensors."""
    from mindspore import Tensor

    from yoloqat.testing import random_batch

    arrays = random_batch(loss, network.num_classes, batch=batch, size=size, seed=seed)
    return [Tensor(a) for a in arrays]


def build_step(config: str, overrides: list[str] = ()):
    """The trainer's compiled step for ``config``: ``(step_cell, network)``."""
    import mindspore as ms
    import numpy as np

    from yoloqat.core.config import apply_overrides, get_dotted, load_config
    from yoloqat.engine import pipeline
    from yoloqat.engine.training.optim import build_optimizer
    from yoloqat.engine.training.step import NetWithLoss, TrainStep

    cfg = apply_overrides(load_config(config), list(overrides))
    ms.set_seed(0)
    network = pipeline.build_model(cfg)
    quantizer = pipeline.build_quantizer(cfg)
    if quantizer is not None:
        network = pipeline.quantize(network, quantizer, str(get_dotted(cfg, "quantizer.name")))
    loss = pipeline.build_loss(cfg, network)
    optimizer = build_optimizer(network, np.full(100, 1e-4, np.float32))
    step = TrainStep(NetWithLoss(network, loss), optimizer)
    step.set_train(True)
    return step, network, loss


def child(
    net: str, kind: str, batch: int, size: int, shapes: list[int], steps: int, dynamic: bool
) -> dict:
    """Runs in the subprocess: build, then time the first step of each shape."""
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    float_cfg, quant_cfg, _, _ = NETS[net]
    t0 = time.perf_counter()
    step, network, loss_cell = build_step(quant_cfg if kind == "quant" else float_cfg)
    out: dict = {"build_s": round(time.perf_counter() - t0, 2), "first_step_s": {}, "loss": {}}
    out["first_step_cpu_s"] = {}
    if dynamic:  # one graph for every input size, as the trainer's train.dynamic_shapes
        from yoloqat.engine.training.step import spatially_dynamic

        first = _inputs(network, loss_cell, batch, size)
        other = _inputs(network, loss_cell, batch, size + network.input_multiple)
        step.set_inputs(*spatially_dynamic(first, other))
    for s in [size, *shapes]:
        x = _inputs(network, loss_cell, batch, s)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = float(step(*x)[0].asnumpy())
        out["first_step_s"][str(s)] = round(time.perf_counter() - t0, 2)
        out["first_step_cpu_s"][str(s)] = round(time.process_time() - c0, 2)
        out["loss"][str(s)] = loss
    times = []
    x = _inputs(network, loss_cell, batch, size)
    for _ in range(steps):
        t0 = time.perf_counter()
        step(*x)[0].asnumpy()
        times.append(time.perf_counter() - t0)
    if times:
        out["step_s"] = round(min(times), 3)
    return out


def ir_stats(folder: Path) -> dict:
    """Nodes (by primitive, top 8) and subgraphs of the dumped IR after type inference and
    after the frontend optimizer (``MS_DEV_SAVE_GRAPHS=1`` files)."""
    out = {}
    for stage in ("type_inference", "optimize"):
        files = sorted(folder.glob(f"*_{stage}_*.ir"))
        if not files:
            continue
        prims: Counter = Counter()
        graphs = 0
        for line in files[0].read_text(errors="replace").splitlines():
            line = line.lstrip()
            graphs += line.startswith("subgraph @")
            m = re.match(r"%\d+\(\S*\) = (\S+?)\(", line)
            if m:
                prims[m.group(1).split("::")[-1].split("[")[0]] += 1
        out[stage] = {
            "nodes": sum(prims.values()),
            "subgraphs": graphs,
            "top": dict(prims.most_common(8)),
        }
    return out


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the measurement as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", default="demo,full", help="demo, full or both")
    p.add_argument("--kinds", default="float,quant", help="float, quant or both")
    p.add_argument("--full-batch", type=int, default=1, help="batch of the full network")
    p.add_argument("--shapes", default="", help="further input sizes timed after the first")
    p.add_argument("--steps", type=int, default=0, help="timed steps after compiling")
    p.add_argument(
        "--dynamic",
        action="store_true",
        help="compile once with unknown spatial dims (set_inputs) instead of once per size",
    )
    p.add_argument(
        "--ir-stats",
        action="store_true",
        help="also dump the IR (MS_DEV_SAVE_GRAPHS=1; slows compiling) and count its nodes",
    )
    p.add_argument("--child", nargs=2, metavar=("NET", "KIND"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    shapes = [int(s) for s in args.shapes.split(",") if s]
    os.environ.setdefault("GLOG_v", "3")
    if args.child:
        net, kind = args.child
        _, _, size, batch = NETS[net]
        batch = args.full_batch if net == "full" else batch
        print(json.dumps(child(net, kind, batch, size, shapes, args.steps, args.dynamic)))
        return
    result: dict = {
        "benchmark": "compile",
        "dynamic": args.dynamic,
        "load_avg_start": list(os.getloadavg()),
    }
    for net in args.nets.split(","):
        _, _, size, batch = NETS[net]
        batch = args.full_batch if net == "full" else batch
        entry: dict = {"size": size, "batch": batch}
        for kind in args.kinds.split(","):
            cmd = [sys.executable, __file__, "--child", net, kind, "--shapes", args.shapes]
            cmd += ["--full-batch", str(args.full_batch), "--steps", str(args.steps)]
            cmd += ["--dynamic"] if args.dynamic else []
            env = dict(os.environ)
            ir_dir = Path(tempfile.mkdtemp(prefix="bench_compile_ir_")) if args.ir_stats else None
            if ir_dir is not None:
                env.update(MS_DEV_SAVE_GRAPHS="1", MS_DEV_SAVE_GRAPHS_PATH=str(ir_dir))
            t0 = time.perf_counter()
            done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                entry[kind] = {"error": done.stderr.strip().splitlines()[-1:]}
                continue
            entry[kind] = json.loads(done.stdout.strip().splitlines()[-1])
            entry[kind]["process_s"] = round(time.perf_counter() - t0, 1)
            if ir_dir is not None:
                entry[kind]["ir"] = ir_stats(ir_dir)
                shutil.rmtree(ir_dir, ignore_errors=True)
        if "float" in entry and "quant" in entry and "error" not in entry["float"]:
            f, q = entry["float"]["first_step_s"], entry["quant"].get("first_step_s", {})
            entry["quant_over_float"] = {s: round(q[s] / f[s], 2) for s in f if s in q}
            fc, qc = entry["float"]["first_step_cpu_s"], entry["quant"].get("first_step_cpu_s", {})
            entry["quant_over_float_cpu"] = {s: round(qc[s] / fc[s], 2) for s in fc if s in qc}
        result[net] = entry
    result["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
