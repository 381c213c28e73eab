"""Train-step time of a quantized network relative to its float twin (GRAPH_MODE).

``python benchmarks/qat_step.py --net yolov3 --width 0.25 --size 128`` builds the
network twice from the same seed, quantizes one copy, compiles a train step (forward, loss,
backward, Momentum update) for each and times them in alternating steps, so that machine
load affects both alike. Prints one JSON line: median step times and their ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def _tiny_net(width: float):
    from mindspore import nn

    from yoloqat.core.layers import Add, ConvBnAct, OutputConv

    c = max(8, int(32 * width))

    class Block(nn.Cell):
        def __init__(self, ch: int) -> None:
            super().__init__()
            self.conv1 = ConvBnAct(ch, ch // 2, 1)
            self.conv2 = ConvBnAct(ch // 2, ch, 3)
            self.add = Add()

        def construct(self, x):
            return self.add(x, self.conv2(self.conv1(x)))

    class Tiny(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.stem = ConvBnAct(3, c, 3)
            self.down1 = ConvBnAct(c, 2 * c, 3, stride=2)
            self.block1 = Block(2 * c)
            self.down2 = ConvBnAct(2 * c, 4 * c, 3, stride=2)
            self.block2 = Block(4 * c)
            self.neck = ConvBnAct(4 * c, 2 * c, 1, activation="leaky")
            self.out = OutputConv(2 * c, 18)

        def construct(self, x):
            x = self.block1(self.down1(self.stem(x)))
            return (self.out(self.neck(self.block2(self.down2(x)))),)

    return Tiny()


def _build(net_name: str, width: float, quantize: bool):
    import mindspore as ms

    ms.set_seed(0)
    if net_name == "yolov3":
        from yoloqat.engine.models import yolov3_darknet53

        net = yolov3_darknet53(width=width, num_classes=80)
    else:
        net = _tiny_net(width)
    if quantize:
        from yoloqat import create

        create("quantizer", "int8_qat").apply(net)
    return net


def _train_step(net):
    import mindspore as ms
    from mindspore import nn, ops

    opt = nn.Momentum(net.trainable_params(), 1e-4, 0.9)

    def loss_fn(x):
        outs = net(x)
        loss = 0.0
        for o in outs:
            loss = loss + ops.square(o).mean()
        return loss

    grad_fn = ms.value_and_grad(loss_fn, None, opt.parameters)

    @ms.jit
    def step(x):
        loss, grads = grad_fn(x)
        opt(grads)
        return loss

    net.set_train(True)
    return step


def measure(
    net_name: str = "tiny",
    width: float = 0.25,
    size: int = 64,
    batch: int = 2,
    steps: int = 8,
) -> dict:
    """Median train-step seconds of the float and the quantized network, and their ratio."""
    import mindspore as ms
    import numpy as np

    ms.set_context(mode=ms.GRAPH_MODE)
    x = ms.Tensor(np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32))
    steps_fn = {}
    compile_s = {}
    for kind in ("float", "quant"):
        fn = _train_step(_build(net_name, width, kind == "quant"))
        t0 = time.perf_counter()
        fn(x).asnumpy()
        compile_s[kind] = time.perf_counter() - t0
        steps_fn[kind] = fn
    times: dict[str, list[float]] = {"float": [], "quant": []}
    for _ in range(steps):  # alternate single steps: load changes hit both alike
        for kind, fn in steps_fn.items():
            t0 = time.perf_counter()
            fn(x).asnumpy()
            times[kind].append(time.perf_counter() - t0)
    f, q = statistics.median(times["float"]), statistics.median(times["quant"])
    ratios = [b / a for a, b in zip(times["float"], times["quant"])]
    return {
        "net": net_name,
        "width": width,
        "input": [batch, 3, size, size],
        "float_step_s": round(f, 4),
        "quant_step_s": round(q, 4),
        "ratio_of_medians": round(q / f, 3),
        "median_ratio": round(statistics.median(ratios), 3),
        "ratio_of_minima": round(min(times["quant"]) / min(times["float"]), 3),
        "compile_s": {k: round(v, 1) for k, v in compile_s.items()},
    }


def main(argv: list[str] | None = None) -> None:
    """Command-line entry: print the measurement as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--net", choices=("tiny", "yolov3"), default="tiny")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per network")
    parser.add_argument("--device", default="CPU")
    args = parser.parse_args(argv)
    import mindspore as ms

    ms.set_device(args.device)
    result = measure(args.net, args.width, args.size, args.batch, args.steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
