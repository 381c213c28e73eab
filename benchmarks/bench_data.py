"""Data-pipeline throughput: augmented training images/s at 416 (1 and 2 workers) and eval
images/s, on ../shared/data/coco128 (or a synthetic set when it is absent).

Prints one JSON line. ``*_img_s`` counts every image from the start of the epoch (worker
start-up included); ``*_steady_img_s`` leaves out the first batch.

    python benchmarks/bench_data.py [--data DIR] [--epochs 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _dataset(data: Path):
    from yoloqat.plugins.coco import coco

    ann = data / "annotations" / "instances_train2017.json"
    if ann.is_file():
        img = str(data / "images" / "train2017")
        return "coco128", coco(
            train_images=img, train_annotations=str(ann), val_images=img, val_annotations=str(ann)
        )
    from yoloqat.data.synth import make_synthetic_coco

    out = Path(tempfile.mkdtemp(prefix="bench_data_"))
    make_synthetic_coco(out, train=128, val=128, size=512, seed=0)
    return "synth-512px (coco128 not found)", coco(data_dir=str(out))


def _time_train(source, *, workers: int, epochs: int, batch: int, shape: int | None) -> dict:
    from yoloqat.data.loader import TrainLoader
    from yoloqat.plugins.yolov3 import ANCHORS

    loader = TrainLoader(
        source,
        batch_size=batch,
        anchors=ANCHORS,
        num_classes=80,
        training_shape=shape,
        num_workers=workers,
        seed=1,
    )
    images, steady_images, total, steady = 0, 0, 0.0, 0.0
    for e in range(epochs):
        start = time.perf_counter()
        first = None
        for b in loader.epoch(e):
            n = len(b["image"])
            images += n
            if first is None:
                first = time.perf_counter()
            else:
                steady_images += n
        end = time.perf_counter()
        total += end - start
        steady += end - (first or end)
    return {"img_s": images / total, "steady_img_s": steady_images / max(steady, 1e-9)}


def _time_eval(source, *, workers: int, shape: int) -> float:
    from yoloqat.data.loader import EvalLoader

    loader = EvalLoader(source, batch_size=1, testing_shape=shape, num_workers=workers)
    start = time.perf_counter()
    n = sum(len(b["image"]) for b in loader)
    return n / (time.perf_counter() - start)


def _time_in_process(source, shape: int) -> float:
    """Read + augment + normalise per image in this process (no pipeline), images/s."""
    import numpy as np

    from yoloqat.data.augment import augment, normalize

    start = time.perf_counter()
    for i in range(len(source)):
        s = source.load(i)
        canvas, _ = augment(s.image, s.boxes, (shape, shape), np.random.default_rng(i))
        normalize(canvas)
    return len(source) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "coco128")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("GLOG_v", "3")

    name, ds = _dataset(args.data)
    train, val = ds.train_source(), ds.val_source()
    result: dict = {
        "bench": "data",
        "data": name,
        "train_images": len(train),
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    result["in_process_416_img_s"] = _time_in_process(train, 416)
    for workers in (1, 2):
        r = _time_train(
            train, workers=workers, epochs=args.epochs, batch=args.batch_size, shape=416
        )
        result[f"train_416_w{workers}_img_s"] = r["img_s"]
        result[f"train_416_w{workers}_steady_img_s"] = r["steady_img_s"]
    r = _time_train(train, workers=2, epochs=1, batch=args.batch_size, shape=None)
    result["train_multiscale_w2_img_s"] = r["img_s"]
    result["eval_416_w1_img_s"] = _time_eval(val, workers=1, shape=416)
    result["eval_416_w2_img_s"] = _time_eval(val, workers=2, shape=416)
    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
