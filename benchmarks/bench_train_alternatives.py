"""Train-step alternatives side by side: one ``bench_model.py`` subprocess per alternative.

Each alternative (oneDNN ISA cap, MindSpore jit level, CPU op threads, execution mode) runs
``bench_model.py --parts train`` in its own process (the ISA cap must be set before MindSpore
starts), one after the other, with a time limit. Prints one JSON object: per alternative the
median seconds per step for each batch size and the ratio to the first alternative (the
project's default: the trainer's ``TrainStep`` Cell, AVX2 cap, default jit level and threads,
GRAPH_MODE), plus the load average. ``bench_torch_reference.py`` times the same step in
PyTorch eager for the comparison.

    python benchmarks/bench_train_alternatives.py                       # bs 1 and 4 at 416
    python benchmarks/bench_train_alternatives.py --width 0.25 --only base,jit_O1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: name -> extra bench_model.py flags. The first one is the baseline of the ratios.
ALTERNATIVES: dict[str, list[str]] = {
    "base": [],
    "jit_function_step": ["--step", "jit"],
    "real_loss": ["--loss", "real"],
    "jit_O1": ["--jit-level", "O1"],
    "jit_O2": ["--jit-level", "O2"],
    "threads_1": ["--threads", "1"],
    "threads_4": ["--threads", "4"],
    "isa_avx2_vnni": ["--onednn-isa", "AVX2_VNNI"],
    "isa_avx512_core": ["--onednn-isa", "AVX512_CORE"],
    "pynative": ["--mode", "pynative"],
}


def run_one(flags: list[str], args: argparse.Namespace) -> dict:
    """One alternative in a subprocess: its JSON result, or the error / time-out."""
    cmd = [sys.executable, str(HERE / "bench_model.py"), "--parts", "train"]
    cmd += ["--batch-sizes", args.batch_sizes, "--size", str(args.size)]
    cmd += ["--width", str(args.width), "--repeats", str(args.repeats), *flags]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout} s"}
    if done.returncode != 0:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:]
        return {"error": tail[0][:300] if tail else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the comparison as one JSON object."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--repeats", type=int, default=4, help="timed steps (half at batch >= 4)")
    p.add_argument("--timeout", type=int, default=900, help="seconds per alternative")
    p.add_argument("--only", default="", help="subset of: " + ",".join(ALTERNATIVES))
    args = p.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(ALTERNATIVES)
    unknown = [n for n in names if n not in ALTERNATIVES]
    if unknown:
        p.error(f"unknown alternative(s) {unknown}; expected some of {list(ALTERNATIVES)}")
    out: dict = {
        "benchmark": "train_alternatives",
        "size": args.size,
        "width": args.width,
        "load_avg_start": list(os.getloadavg()),
        "step_s": {},
        "first_call_s": {},
        "errors": {},
    }
    for name in names:
        r = run_one(ALTERNATIVES[name], args)
        if "error" in r:
            out["errors"][name] = r["error"]
            continue
        out["step_s"][name] = {b: round(v["median_s"], 3) for b, v in r["train"].items()}
        out["first_call_s"][name] = {b: round(v["first_call_s"], 1) for b, v in r["train"].items()}
        print(json.dumps({name: out["step_s"][name]}), file=sys.stderr, flush=True)
    base = out["step_s"].get(names[0], {})
    out["speedup_vs_" + names[0]] = {
        name: {b: round(base[b] / s, 3) for b, s in v.items() if b in base}
        for name, v in out["step_s"].items()
    }
    out["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
