"""The PyTorch-eager reference for the train-step benchmark: the same YOLOv3-DarkNet53.

The issue's reference figure (PyTorch eager, batch 4 at 416) needs PyTorch, which yoloqat
does not depend on; run this in its own environment, in the same sitting as
``bench_model.py`` / ``bench_train_alternatives.py``::

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch==2.13.0 numpy
    /tmp/torchenv/bin/python benchmarks/bench_torch_reference.py --batch-sizes 1,4

The network mirrors ``yoloqat.engine.models.yolov3_darknet53`` (ReLU DarkNet-53 backbone
with 1, 2, 8, 8, 4 residual blocks; LeakyReLU(0.1) neck and heads; BatchNorm after every
conv but the three 1x1 output convs, which have a bias; 2x nearest upsampling; 80 classes,
3 anchors per scale; k//2 padding), and the step is the one ``bench_model.py`` times: the
sum of the three raw output maps as the loss, backward, and SGD with momentum 0.9 at
lr 1e-3. Prints one JSON object: median seconds per step over ``--repeats`` after one
untimed step, per batch size, and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def build(num_classes: int = 80):
    """YOLOv3-DarkNet53 as a ``torch.nn.Module`` (training outputs: 3 raw maps)."""
    import torch
    from torch import nn

    def unit(cin: int, cout: int, k: int, stride: int = 1, act: str = "leaky") -> nn.Module:
        layers = [
            nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
            nn.BatchNorm2d(cout, momentum=0.1, eps=1e-5),
            nn.ReLU() if act == "relu" else nn.LeakyReLU(0.1),
        ]
        return nn.Sequential(*layers)

    class Residual(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            half = c // 2
            self.body = nn.Sequential(unit(c, half, 1, act="relu"), unit(half, c, 3, act="relu"))

        def forward(self, x):
            return x + self.body(x)

    class Backbone(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = unit(3, 32, 3, act="relu")
            self.stages = nn.ModuleList()
            cin = 32
            for blocks, c in zip((1, 2, 8, 8, 4), (64, 128, 256, 512, 1024)):
                stage = [unit(cin, c, 3, 2, act="relu")] + [Residual(c) for _ in range(blocks)]
                self.stages.append(nn.Sequential(*stage))
                cin = c

        def forward(self, x):
            x = self.stem(x)
            outs = []
            for stage in self.stages:
                x = stage(x)
                outs.append(x)
            return outs[2], outs[3], outs[4]

    class Block(nn.Module):
        def __init__(self, cin: int, mid: int, out: int) -> None:
            super().__init__()
            self.route = nn.Sequential(
                unit(cin, mid, 1),
                unit(mid, 2 * mid, 3),
                unit(2 * mid, mid, 1),
                unit(mid, 2 * mid, 3),
                unit(2 * mid, mid, 1),
            )
            self.out = nn.Sequential(unit(mid, 2 * mid, 3), nn.Conv2d(2 * mid, out, 1))

        def forward(self, x):
            r = self.route(x)
            return r, self.out(r)

    class YoloV3(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            out = 3 * (5 + num_classes)
            self.backbone = Backbone()
            self.block0 = Block(1024, 512, out)
            self.conv1 = unit(512, 256, 1)
            self.block1 = Block(512 + 256, 256, out)
            self.conv2 = unit(256, 128, 1)
            self.block2 = Block(256 + 128, 128, out)
            self.up = nn.Upsample(scale_factor=2, mode="nearest")

        def forward(self, x):
            c3, c4, c5 = self.backbone(x)
            r0, big = self.block0(c5)
            r1, medium = self.block1(torch.cat([self.up(self.conv1(r0)), c4], 1))
            _, small = self.block2(torch.cat([self.up(self.conv2(r1)), c3], 1))
            return big, medium, small

    return YoloV3()


def conv_step(torch, batch: int = 4, channels: int = 256, size: int = 52) -> dict:
    """``bench_conv.py``'s step in PyTorch eager: median seconds and conv GFLOP/s."""
    from bench_conv import conv_flops  # imports no MindSpore at module level
    from torch import nn

    net = nn.Sequential(
        nn.Conv2d(channels, channels, 3, 1, 1), nn.BatchNorm2d(channels), nn.LeakyReLU(0.1)
    )
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, channels, size, size)
    runs = []
    for i in range(11):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        net(x).sum().backward()
        opt.step()
        if i:
            runs.append(time.perf_counter() - t0)
    median = statistics.median(runs)
    flops = conv_flops(batch, channels, size)
    return {
        "benchmark": "conv_step",
        "framework": f"torch {torch.__version__}",
        "median_s": round(median, 4),
        "gflops": round(flops / median / 1e9, 1),
        "load_avg": list(os.getloadavg()),
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the timings as one JSON object."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,4")
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--repeats", type=int, default=4, help="timed steps (half at batch >= 4)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument(
        "--conv",
        action="store_true",
        help="time bench_conv.py's step instead (3x3 256->256 conv + BN + LeakyReLU, 52x52, "
        "batch 4)",
    )
    args = p.parse_args(argv)
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    if args.conv:
        print(json.dumps(conv_step(torch)))
        return
    net = build()
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    out: dict = {
        "benchmark": "torch_reference",
        "torch": torch.__version__,
        "threads": args.threads,
        "size": args.size,
        "params": sum(p.numel() for p in net.parameters()),
        "load_avg_start": list(os.getloadavg()),
        "train": {},
    }
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        x = torch.randn(batch, 3, args.size, args.size)

        def step(x=x) -> float:
            opt.zero_grad(set_to_none=True)
            loss = sum(o.sum() for o in net(x))
            loss.backward()
            opt.step()
            return float(loss)

        t0 = time.perf_counter()
        step()
        first = time.perf_counter() - t0
        repeats = args.repeats if batch < 4 else max(1, (args.repeats + 1) // 2)
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            runs.append(time.perf_counter() - t0)
        out["train"][str(batch)] = {
            "first_call_s": round(first, 3),
            "runs_s": [round(r, 3) for r in runs],
            "median_s": round(statistics.median(runs), 3),
        }
    out["load_avg_end"] = list(os.getloadavg())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
