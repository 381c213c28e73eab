"""Speed of the YOLOv3-DarkNet53 network on CPU: eval forward and one training step.

Prints one JSON object on stdout, for example::

    python benchmarks/bench_model.py                    # full network, 416 px, batch 1 and 8
    python benchmarks/bench_model.py --width 0.25 --batch-sizes 1,2 --repeats 3

Eval latency is the median of ``--repeats`` timed forwards after ``--warmup`` untimed ones
(the first untimed call also compiles the graph; its time is reported as ``first_call_s``).
The training step is forward + backward + ``nn.Momentum(lr=1e-3, momentum=0.9)`` update,
compiled as one graph in GRAPH_MODE: by default the trainer's own ``TrainStep`` Cell
(``--step cell``); ``--step jit`` compiles a ``value_and_grad`` function with ``ms.jit``
instead, which measured 1.4-1.8x slower (full network at 416, batch 1 and 4). ``--loss sum``
uses the sum of the raw outputs as a stand-in loss, ``--loss real`` the real
``yolov3_loss``; others plug in through :data:`LOSSES` (a name mapped to a function
returning a :class:`LossSetup`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@dataclass
class LossSetup:
    """A loss for the training-step benchmark.

    ``loss_fn(outputs, *targets)`` maps the detector's training outputs (a tuple of 3 raw
    ``[N, H, W, A, 5 + C]`` tensors) and the ``targets`` tensors to a scalar; it is traced
    into the compiled train step, so it must be graph-compatible (a function or a Cell).
    """

    loss_fn: Callable
    targets: tuple


def sum_loss(network, batch_size: int, size: int) -> LossSetup:
    """Stand-in loss: the sum of all raw outputs (no targets)."""
    from mindspore import ops

    def loss_fn(outputs):
        return ops.sum(outputs[0]) + ops.sum(outputs[1]) + ops.sum(outputs[2])

    return LossSetup(loss_fn=loss_fn, targets=())


def real_loss(network, batch_size: int, size: int) -> LossSetup:
    """The real ``yolov3_loss`` with targets built from 6 random boxes per image."""
    import numpy as np
    from mindspore import Tensor

    from yoloqat.plugins.yolov3 import yolov3_loss
    from yoloqat.plugins.yolov3.targets import build_targets_batch

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, size * 0.7, (batch_size, 6, 2))
    wh = rng.uniform(size * 0.05, size * 0.3, (batch_size, 6, 2))
    cls = rng.integers(0, network.num_classes, (batch_size, 6, 1))
    boxes = np.concatenate([xy, np.minimum(xy + wh, size), cls], axis=-1)
    targets = build_targets_batch(
        boxes, (size, size), network.anchors, network.anchor_masks, network.num_classes
    )
    loss = yolov3_loss(
        num_classes=network.num_classes,
        anchors=network.anchors.tolist(),
        anchor_masks=[list(m) for m in network.anchor_masks],
    )

    def loss_fn(outputs, *t):
        return loss(outputs[0], outputs[1], outputs[2], *t)

    return LossSetup(loss_fn=loss_fn, targets=tuple(Tensor(a.astype(np.float32)) for a in targets))


#: ``--loss`` choices: name -> function(network, batch_size, size) -> LossSetup.
LOSSES: dict[str, Callable[..., LossSetup]] = {"sum": sum_loss, "real": real_loss}


def make_cell_step(network, loss: LossSetup, optimizer) -> Callable:
    """The trainer's construction: ``TrainStep`` (a Cell with ``GradOperation``) around a
    Cell computing the loss; returns ``step(images, *targets) -> loss``."""
    from mindspore import nn

    from yoloqat.engine.training.step import TrainStep

    class LossNet(nn.Cell):
        def __init__(self) -> None:
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, images, *targets):
            return loss.loss_fn(self.network(images), *targets)

    train_step = TrainStep(LossNet(), optimizer)
    train_step.set_train(True)

    def step(images, *targets):
        return train_step(images, *targets)[0]

    return step


def make_train_step(network, loss: LossSetup, optimizer, *, compile_graph: bool) -> Callable:
    """Return ``step(images, *targets) -> loss`` doing forward, backward and the update."""
    import mindspore as ms

    def forward(images, *targets):
        return loss.loss_fn(network(images), *targets)

    grad_fn = ms.value_and_grad(forward, None, optimizer.parameters)

    def step(images, *targets):
        value, grads = grad_fn(images, *targets)
        optimizer(grads)
        return value

    return ms.jit(step) if compile_graph else step


def _timed(fn: Callable, warmup: int, repeats: int) -> dict:
    """Median time of ``fn()`` over ``repeats`` runs after ``warmup`` untimed runs."""
    first = None
    for i in range(warmup):
        start = time.perf_counter()
        fn()
        if i == 0:
            first = time.perf_counter() - start
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return {"first_call_s": first, "runs_s": runs, "median_s": statistics.median(runs)}


def _repeats_for(batch: int, repeats: int) -> int:
    # Large batches get fewer timed runs to keep the default run short on 2 cores.
    return repeats if batch < 4 else max(1, (repeats + 1) // 2)


def run(args: argparse.Namespace) -> dict:
    """Run the benchmark described by ``args``; return the result dict."""
    import mindspore as ms
    import numpy as np
    from mindspore import Tensor, nn

    from yoloqat.engine.models import yolov3_darknet53

    ms.set_device("CPU")
    graph = args.mode == "graph"
    ms.set_context(mode=ms.GRAPH_MODE if graph else ms.PYNATIVE_MODE)
    if args.jit_level:
        ms.set_context(jit_config={"jit_level": args.jit_level})
    if args.threads:
        from mindspore.device_context.cpu import op_tuning

        op_tuning.threads_num(args.threads)
    ms.set_seed(0)
    net = yolov3_darknet53(width=args.width, num_classes=args.num_classes)
    result: dict = {
        "benchmark": "model",
        "network": "yolov3_darknet53",
        "device": "CPU",
        "mode": args.mode,
        "size": args.size,
        "width": args.width,
        "num_classes": args.num_classes,
        "loss": args.loss,
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "jit_level": args.jit_level or "default",
        "step": args.step,
        "threads": args.threads or "default",
        "cpu_count": os.cpu_count(),
        "load_avg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "mindspore": ms.__version__,
        "trainable_params": sum(int(np.prod(p.shape)) for p in net.trainable_params()),
        "eval": {},
        "train": {},
    }
    rng = np.random.default_rng(0)
    batches = [int(b) for b in args.batch_sizes.split(",")]

    parts = set(args.parts.split(","))
    net.set_train(False)
    for batch in batches if "eval" in parts else []:
        x = Tensor(rng.normal(size=(batch, 3, args.size, args.size)).astype(np.float32))

        def forward(x=x):
            return [o.asnumpy() for o in net(x)]

        stats = _timed(forward, args.warmup, _repeats_for(batch, args.repeats))
        stats["images_per_s"] = batch / stats["median_s"]
        result["eval"][str(batch)] = stats

    net.set_train(True)
    optimizer = nn.Momentum(net.trainable_params(), learning_rate=1e-3, momentum=0.9)
    for batch in batches if "train" in parts else []:
        x = Tensor(rng.normal(size=(batch, 3, args.size, args.size)).astype(np.float32))
        loss = LOSSES[args.loss](net, batch, args.size)
        if args.step == "cell":
            step = make_cell_step(net, loss, optimizer)
        else:
            step = make_train_step(net, loss, optimizer, compile_graph=graph)
        values: list[float] = []

        def train_once(x=x, step=step, loss=loss, values=values):
            values.append(float(step(x, *loss.targets).asnumpy()))

        stats = _timed(train_once, args.warmup, _repeats_for(batch, args.repeats))
        stats["images_per_s"] = batch / stats["median_s"]
        stats["loss_finite"] = bool(np.all(np.isfinite(values)))
        result["train"][str(batch)] = stats
    result["load_avg_end"] = list(os.getloadavg())
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated (default 1,8)")
    p.add_argument("--size", type=int, default=416, help="square input size (multiple of 32)")
    p.add_argument("--width", type=float, default=1.0, help="channel width multiplier")
    p.add_argument("--num-classes", type=int, default=80)
    p.add_argument(
        "--repeats", type=int, default=4, help="timed runs at batch < 4 (half at larger batches)"
    )
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first (>= 1: compiles)")
    p.add_argument("--mode", choices=("graph", "pynative"), default="graph")
    p.add_argument("--loss", choices=sorted(LOSSES), default="sum")
    p.add_argument("--parts", default="eval,train", help="what to time: eval, train or both")
    p.add_argument(
        "--onednn-isa",
        default="AVX2",
        help="value for ONEDNN_MAX_CPU_ISA ('default' leaves oneDNN's choice); on AVX-512 "
        "machines oneDNN otherwise runs NCHW 3x3 convs on a slow reference kernel",
    )
    p.add_argument("--jit-level", choices=("O0", "O1", "O2"), help="MindSpore jit_config level")
    p.add_argument("--threads", type=int, help="MindSpore CPU op threads (default: its own)")
    p.add_argument(
        "--step",
        choices=("cell", "jit"),
        default="cell",
        help="train step: the trainer's TrainStep Cell (cell, default), or ms.jit over a "
        "value_and_grad function (jit: 1.4-1.8x slower at 416)",
    )
    args = p.parse_args(argv)
    if args.size <= 0 or args.size % 32:
        p.error(f"--size {args.size}: expected a positive multiple of 32")
    if not set(args.parts.split(",")) <= {"eval", "train"}:
        p.error(f"--parts {args.parts}: expected eval, train or eval,train")
    if args.warmup < 1 or args.repeats < 1:
        p.error("--warmup and --repeats must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    """Entry point: print the result as one JSON object."""
    args = parse_args(argv)
    # Must be set before MindSpore runs its first oneDNN primitive, and before yoloqat's
    # import sets its AVX2 default: 'default' is oneDNN's own choice, ALL.
    os.environ["ONEDNN_MAX_CPU_ISA"] = "ALL" if args.onednn_isa == "default" else args.onednn_isa
    os.environ.setdefault("GLOG_v", "3")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
