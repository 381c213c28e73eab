"""MindSpore's op launch on CPU: asynchronous (its default) vs blocking (yoloqat's default).

yoloqat sets ``MS_DEV_LAUNCH_BLOCKING=1`` at import (the environment variable behind
``mindspore.runtime.launch_blocking()``), unless it is already set. This benchmark shows
why: each case runs twice in fresh processes (launch is set at start-up and cannot be
switched back), with ``MS_DEV_LAUNCH_BLOCKING=0`` and ``=1``, alternating which goes first,
and prints one JSON object: seconds per case and ``async / blocking`` ratios (> 1: blocking
is faster), with the load average before and after.

Cases (all CPU, the demo network is ``synth_tiny``'s: 1/8 width, 5 classes, 128 px):

- ``pynative_qat``: the demo network quantized by ``int8_qat`` in PYNATIVE_MODE, batch 8:
  a training-mode forward (what QAT observers and ``int8_ptq`` calibration run) and an eval
  forward (``MindSporePredictor(graph_mode=False)``);
- ``pynative_float``: the float demo network in PYNATIVE_MODE, eval forward and training
  step at batch 8 (``bench_model.py --mode pynative``);
- ``pynative_full_eval``: YOLOv3-DarkNet53 at 416, batch 1, PYNATIVE eval forward;
- ``graph_float``: the float demo network's compiled training step, batch 16: first call
  (compile) and step (``bench_model.py``);
- ``graph_qat``: the trainer's QAT step on the demo network: first step (compile) and step
  (``bench_compile.py --nets demo --kinds quant``).

    python benchmarks/bench_launch_blocking.py [--only pynative_qat,graph_qat] [--pairs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

MODEL = [sys.executable, str(HERE / "bench_model.py")]
COMPILE = [sys.executable, str(HERE / "bench_compile.py")]
DEMO = ["--width", "0.125", "--size", "128", "--num-classes", "5"]


def _model(result: dict, part: str, batch: int) -> dict:
    stats = result[part][str(batch)]
    return {f"{part}_s": stats["median_s"], f"{part}_first_call_s": stats["first_call_s"]}


#: case -> (child command, what to keep of its JSON; None: all of it)
CASES: dict[str, tuple[list[str], Callable[[dict], dict] | None]] = {
    "pynative_qat": ([sys.executable, __file__, "--child-qat"], None),
    "pynative_float": (
        [*MODEL, "--mode", "pynative", *DEMO, "--batch-sizes", "8", "--repeats", "3"],
        lambda r: {**_model(r, "eval", 8), **_model(r, "train", 8)},
    ),
    "pynative_full_eval": (
        [*MODEL, "--mode", "pynative", "--batch-sizes", "1", "--parts", "eval", "--repeats", "3"],
        lambda r: _model(r, "eval", 1),
    ),
    "graph_float": (
        [*MODEL, *DEMO, "--batch-sizes", "16", "--parts", "train", "--repeats", "5"],
        lambda r: _model(r, "train", 16),
    ),
    "graph_qat": (
        [*COMPILE, "--nets", "demo", "--kinds", "quant", "--steps", "5"],
        lambda r: {
            "first_step_s": r["demo"]["quant"]["first_step_s"]["128"],
            "step_s": r["demo"]["quant"]["step_s"],
        },
    ),
}


def child_qat(repeats: int = 3) -> dict:
    """Runs in the subprocess: PYNATIVE forwards of the QAT demo network."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor

    from yoloqat.core.config import load_config
    from yoloqat.engine import pipeline

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    cfg = load_config("synth_tiny_quant")
    net = pipeline.quantize(
        pipeline.build_model(cfg), pipeline.build_quantizer(cfg), cfg["quantizer"]["name"]
    )
    x = Tensor(np.random.default_rng(0).standard_normal((8, 3, 128, 128)).astype(np.float32))
    out = {}
    for name, train in (("train_forward_s", True), ("eval_forward_s", False)):
        net.set_train(train)
        [o.asnumpy() for o in net(x)]  # warm-up
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            [o.asnumpy() for o in net(x)]
            runs.append(time.perf_counter() - t0)
        out[name] = statistics.median(runs)
    return out


def _run(case: str, blocking: bool) -> dict:
    cmd, extract = CASES[case]
    env = {**os.environ, "MS_DEV_LAUNCH_BLOCKING": "1" if blocking else "0", "GLOG_v": "3"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-3:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    out = result if extract is None else extract(result)
    out["process_s"] = round(time.perf_counter() - t0, 1)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the comparison as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(CASES), help="comma-separated case names")
    p.add_argument("--pairs", type=int, default=1, help="async/blocking pairs per case")
    p.add_argument("--child-qat", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child_qat:
        print(json.dumps(child_qat()))
        return
    result: dict = {
        "benchmark": "launch_blocking",
        "cpu_count": os.cpu_count(),
        "load_avg_start": list(os.getloadavg()),
        "cases": {},
    }
    for case in args.only.split(","):
        runs: dict[str, list[dict]] = {"async": [], "blocking": []}
        for i in range(args.pairs):
            order = (False, True) if i % 2 == 0 else (True, False)
            for blocking in order:
                runs["blocking" if blocking else "async"].append(_run(case, blocking))
        entry: dict = {"async": runs["async"], "blocking": runs["blocking"]}
        ok = all("error" not in r for r in runs["async"] + runs["blocking"])
        if ok:
            keys = [k for k in runs["async"][0] if k != "process_s"]
            entry["async_over_blocking"] = {
                k: round(
                    statistics.median(r[k] for r in runs["async"])
                    / statistics.median(r[k] for r in runs["blocking"]),
                    2,
                )
                for k in keys
            }
        result["cases"][case] = entry
        print(json.dumps({case: entry}), file=sys.stderr)  # progress
    result["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
