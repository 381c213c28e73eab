"""Cost of one weight-EMA update, against the train step it follows, for several ways to do it.

Alternatives over the same network's floating-point parameters: ``graph`` (the shipped
``ModelEMA``: one compiled HyperMap of ``assign_sub(e, (e - w) * (1 - d))`` plus the decay
ramp), ``graph_mul_add`` (``assign(e, e * d + w * (1 - d))``), ``graph_lerp``
(``assign(e, lerp(e, w, 1 - d))``)
and ``numpy`` (a Python loop of in-place NumPy updates over ``asnumpy()`` views). With
``--step`` the tiny synthetic train step is timed too (same width, 64 px, batch 4), so the
overhead is a ratio. Prints one JSON line, with the load average.

    python benchmarks/bench_ema.py [--width 0.0625] [--repeat 30] [--step]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import yoloqat  # noqa: F401  (sets the fast oneDNN kernel default before MindSpore runs)


def _time(fn, repeat: int) -> float:
    fn()  # compile / warm up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=float, default=0.0625)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--step", action="store_true", help="also time the tiny train step")
    args = ap.parse_args()

    import mindspore as ms
    import numpy as np
    from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

    from yoloqat.engine.models import yolov3_darknet53
    from yoloqat.engine.training.ema import ModelEMA

    ms.set_context(mode=ms.GRAPH_MODE)
    net = yolov3_darknet53(num_classes=3, width=args.width)
    ema = ModelEMA(net, decay=0.9999, ramp=2000)
    params = list(ema.sources)

    mul_add = ops.MultitypeFuncGraph("mul_add")

    @mul_add.register("Tensor", "Tensor", "Tensor")
    def _mul_add(d, e, w):
        return ops.assign(e, e * d + w * (1.0 - d))

    lerp = ops.MultitypeFuncGraph("lerp")

    @lerp.register("Tensor", "Tensor", "Tensor")
    def _lerp(d, e, w):
        return ops.assign(e, ops.lerp(e, w, 1.0 - d))

    class Variant(nn.Cell):
        def __init__(self, fn) -> None:
            super().__init__(auto_prefix=False)
            self.src = ParameterTuple(params)
            self.dst = ParameterTuple(
                Parameter(Tensor(p.asnumpy()), name=f"v.{p.name}") for p in params
            )
            self.fn, self.d, self.hm = fn, Tensor(0.9999, ms.float32), ops.HyperMap()

        def construct(self):
            self.hm(ops.partial(self.fn, self.d), self.dst, self.src)
            return self.d

    shadows = [p.asnumpy().copy() for p in params]

    def numpy_loop() -> None:
        d = np.float32(0.9999)
        for e, p in zip(shadows, params):
            e -= (e - p.asnumpy()) * (1 - d)

    v_mul, v_lerp = Variant(mul_add), Variant(lerp)
    t0 = time.perf_counter()
    ema.update()  # the first call compiles the update graph
    first_ms = (time.perf_counter() - t0) * 1e3
    out = {
        "bench": "ema_update",
        "width": args.width,
        "tensors": len(params),
        "elements": int(sum(p.size for p in params)),
        "graph_first_call_ms": round(first_ms, 1),
        "ms": {
            "graph": _time(ema.update, args.repeat),
            "graph_mul_add": _time(lambda: v_mul().asnumpy(), args.repeat),
            "graph_lerp": _time(lambda: v_lerp().asnumpy(), args.repeat),
            "numpy": _time(numpy_loop, args.repeat),
        },
    }
    if args.step:
        out["ms"]["train_step"] = _train_step_ms(args.width, max(3, args.repeat // 5))
        out["overhead_vs_step"] = {
            k: round(v / out["ms"]["train_step"], 4)
            for k, v in out["ms"].items()
            if k != "train_step"
        }
    out["ratio_vs_graph"] = {k: round(v / out["ms"]["graph"], 3) for k, v in out["ms"].items()}
    out["load_avg"] = os.getloadavg()
    print(json.dumps(out))


def _train_step_ms(width: float, repeat: int) -> float:
    """The tiny synthetic train step (64 px, batch 4) at ``width``, ms per step."""
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.training.trainer import Trainer

    work = Path(tempfile.mkdtemp(prefix="yoloqat_ema_"))
    make_synthetic_coco(work / "data", train=8, val=2, size=64, seed=3, num_classes=3)
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [
            f"dataset.data_dir={work / 'data'}",
            f"train.ckpt_path={work / 'runs'}",
            "model.num_classes=3",
            f"model.backbone.width={width}",
            f"model.head.width={width}",
            "data.training_shape=64",
            "train.per_batch_size=4",
        ],
    )
    trainer = Trainer(cfg, run_dir=work / "runs" / "r")
    trainer._build()
    from mindspore import Tensor

    batch = next(iter(trainer.loader.epoch(0)))
    inputs = [Tensor(a) for a in batch["inputs"]]
    return _time(lambda: trainer.step_cell(*inputs)[0].asnumpy(), repeat)


if __name__ == "__main__":
    main()
