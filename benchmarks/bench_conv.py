"""One 3x3 conv + BN + LeakyReLU training step in MindSpore GRAPH_MODE (the kernel bound).

The train-step issue's unit of work: a 3x3 256->256 conv with BatchNorm and LeakyReLU at
52x52, batch 4: forward, backward and a Momentum update, compiled as one graph. Prints one
JSON object with the median seconds per step, the GFLOP/s of the conv's three products
(forward, input gradient, weight gradient) and the load average; compare with
``bench_torch_reference.py --conv`` (the same step in PyTorch eager) in the same sitting.

    python benchmarks/bench_conv.py                      # ONEDNN_MAX_CPU_ISA=AVX2 (the default)
    python benchmarks/bench_conv.py --onednn-isa default # oneDNN's own choice (AVX-512 here)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

from bench_model import LossSetup, make_train_step  # the same ms.jit step as bench_model.py


def conv_flops(batch: int, channels: int, size: int) -> float:
    """FLOPs of forward + both backward products of a 3x3 ``channels``->``channels`` conv."""
    return 3 * 2 * batch * size * size * channels * channels * 9


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the timing as one JSON object."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--channels", type=int, default=256)
    p.add_argument("--size", type=int, default=52)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--onednn-isa", default="AVX2", help="ONEDNN_MAX_CPU_ISA ('default': ALL)")
    args = p.parse_args(argv)
    # ALL: oneDNN's own choice (AVX-512 here)
    os.environ["ONEDNN_MAX_CPU_ISA"] = "ALL" if args.onednn_isa == "default" else args.onednn_isa
    os.environ.setdefault("GLOG_v", "3")
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn, ops

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    c = args.channels
    net = nn.SequentialCell(
        [nn.Conv2d(c, c, 3, pad_mode="pad", padding=1), nn.BatchNorm2d(c), nn.LeakyReLU(0.1)]
    )
    net.set_train(True)
    opt = nn.Momentum(net.trainable_params(), learning_rate=1e-3, momentum=0.9)

    def loss_fn(out):
        return ops.sum(out)

    step = make_train_step(net, LossSetup(loss_fn=loss_fn, targets=()), opt, compile_graph=True)
    x = Tensor(np.random.default_rng(0).normal(size=(args.batch, c, args.size, args.size)))
    x = x.astype(ms.float32)
    step(x).asnumpy()
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        step(x).asnumpy()
        runs.append(time.perf_counter() - t0)
    median = statistics.median(runs)
    print(
        json.dumps(
            {
                "benchmark": "conv_step",
                "framework": f"mindspore {ms.__version__}",
                "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
                "median_s": round(median, 4),
                "gflops": round(conv_flops(args.batch, c, args.size) / median / 1e9, 1),
                "load_avg": list(os.getloadavg()),
            }
        )
    )


if __name__ == "__main__":
    main()
