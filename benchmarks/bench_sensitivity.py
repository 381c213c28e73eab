"""Layer sensitivity: one gated GRAPH_MODE graph vs re-running PyNative per layer.

Times ``layer_sensitivity`` (fake quants switched by Parameters in one compiled graph)
against the approach it replaced (``set_fake_quant`` per layer, evaluated in PyNative
mode) on the same layers and pre-decoded images of a synthetic val split, for the
``synth_tiny_quant`` network (the demo's, untrained: the timing does not depend on the
weights). Prints one JSON object with both times (each including its float baseline
evaluation, and for the graph its compilation), the per-evaluation times, their ratio, and
whether both give the same AP drops.

    python benchmarks/bench_sensitivity.py [--layers 12] [--images 50] [--size 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import yoloqat  # noqa: F401  (sets the fast oneDNN kernel default before MindSpore runs)
from yoloqat.core.config import apply_overrides, load_config
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.evaluate import Subset, evaluate_source, load_batches
from yoloqat.engine.pipeline import build_dataset, build_model, build_quantizer
from yoloqat.engine.report import layer_sensitivity


def pynative_sensitivity(net, dataset, layers, *, size: int, images: int) -> list[dict]:
    """The replaced approach: one PyNative evaluation per layer, switched in Python."""
    import mindspore as ms

    from yoloqat.engine.inference import MindSporePredictor
    from yoloqat.plugins.int8_qat.quantizer import set_fake_quant

    ms.set_context(mode=ms.PYNATIVE_MODE)
    source = Subset(dataset.val_source(), images)
    batches = load_batches(source, testing_shape=size, batch_size=8)
    pred = MindSporePredictor(net, graph_mode=False)

    def ap() -> float:
        return evaluate_source(
            pred, source, dataset.category_ids, testing_shape=size, batch_size=8, batches=batches
        ).stats["AP"]

    set_fake_quant(net, False)
    base = ap()
    rows = []
    for path in layers:
        set_fake_quant(net, False)
        set_fake_quant(net, True, (path,))
        rows.append({"layer": path, "AP_drop": round(base - ap(), 5)})
    set_fake_quant(net, True)
    return sorted(rows, key=lambda r: -r["AP_drop"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12, help="quantized layers to rank")
    ap.add_argument("--images", type=int, default=50)
    ap.add_argument("--size", type=int, default=128)
    args = ap.parse_args()

    import mindspore as ms
    from mindspore import Tensor

    from yoloqat.plugins.int8_qat.quantizer import quantized_layers

    work = Path(tempfile.mkdtemp(prefix="yoloqat_sens_"))
    make_synthetic_coco(work, train=0, val=args.images, size=args.size, seed=0)
    cfg = apply_overrides(load_config("synth_tiny_quant"), [f"dataset.data_dir={work}"])
    dataset = build_dataset(cfg)
    ms.set_seed(0)
    net = build_quantizer(cfg).apply(build_model(cfg))
    rng = np.random.default_rng(0)
    net.set_train(True)  # give the observers real ranges
    for _ in range(2):
        x = rng.standard_normal((2, 3, args.size, args.size)).astype(np.float32)
        net(Tensor(x))
    net.set_train(False)
    layers = [path for path, _ in quantized_layers(net)][:: max(1, 98 // args.layers)]
    layers = layers[: args.layers]

    t0 = time.perf_counter()
    old = pynative_sensitivity(net, dataset, layers, size=args.size, images=args.images)
    old_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    new = layer_sensitivity(
        net,
        dataset,
        testing_shape=args.size,
        top=len(layers),
        max_images=args.images,
        patterns=tuple(layers),
    )
    new_s = time.perf_counter() - t1
    ms.set_context(mode=ms.PYNATIVE_MODE)
    print(
        json.dumps(
            {
                "benchmark": "layer_sensitivity",
                "config": "synth_tiny_quant",
                "layers": len(layers),
                "images": args.images,
                "image_size": args.size,
                "pynative_s": round(old_s, 2),
                "gated_graph_s": round(new_s, 2),
                "pynative_s_per_layer": round(old_s / (len(layers) + 1), 3),
                "gated_graph_s_per_layer": round(new_s / (len(layers) + 1), 3),
                "speedup": round(old_s / new_s, 2),
                "same_ranking": [r["layer"] for r in old] == [r["layer"] for r in new],
                "max_AP_drop_difference": max(
                    abs(a["AP_drop"] - b["AP_drop"])
                    for a, b in zip(
                        sorted(old, key=lambda r: r["layer"]),
                        sorted(new, key=lambda r: r["layer"]),
                    )
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
