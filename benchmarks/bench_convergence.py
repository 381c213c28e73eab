"""Convergence on CPU: train a small-width YOLOv3 on a `yoloqat synth` dataset, evaluate it.

Prints one JSON object: the settings, wall time of training and evaluation, the final loss
and the COCO table (AP, AP50, ...) on the synthetic val split. The issue's bar: AP50 >= 0.90
within 20 minutes on a 2-core machine.

    python benchmarks/bench_convergence.py [--epochs 30] [--train 400] [--val 100] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yoloqat  # noqa: F401  (sets the fast oneDNN kernel default before MindSpore runs)
from yoloqat.core.config import apply_overrides, load_config
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.evaluate import evaluate_source
from yoloqat.engine.inference import MindSporePredictor, load_detector
from yoloqat.engine.pipeline import build_dataset
from yoloqat.engine.training.trainer import Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="synth_tiny")
    ap.add_argument("--epochs", type=int, default=None, help="default: the config's max_epoch")
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--val", type=int, default=100)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()

    work = Path(args.out or tempfile.mkdtemp(prefix="yoloqat_conv_"))
    data = work / "data"
    if not (data / "annotations" / "instances_val.json").is_file():
        make_synthetic_coco(data, train=args.train, val=args.val, size=args.size, seed=args.seed)
    overrides = [f"dataset.data_dir={data}", f"train.ckpt_path={work / 'runs'}"]
    if args.epochs:
        overrides += [f"train.max_epoch={args.epochs}", f"scheduler.T_max={args.epochs}"]
    cfg = apply_overrides(load_config(args.config), overrides + args.overrides)

    t0 = time.perf_counter()
    result = Trainer(cfg).run()
    train_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    network, _, _ = load_detector(cfg, result.checkpoints[-1])
    dataset = build_dataset(cfg)
    shape = int(cfg.get("eval", {}).get("testing_shape", args.size))
    ev = evaluate_source(
        MindSporePredictor(network),
        dataset.val_source(),
        dataset.category_ids,
        testing_shape=shape,
        batch_size=8,
    )
    eval_s = time.perf_counter() - t1
    print(
        json.dumps(
            {
                "benchmark": "convergence",
                "config": args.config,
                "epochs": cfg["train"]["max_epoch"],
                "train_images": args.train,
                "val_images": args.val,
                "image_size": args.size,
                "train_seconds": round(train_s, 1),
                "eval_seconds": round(eval_s, 1),
                "total_minutes": round((train_s + eval_s) / 60, 2),
                "final_loss": round(sum(result.losses[-10:]) / max(1, len(result.losses[-10:])), 3),
                "checkpoint": str(result.checkpoints[-1]),
                "coco": {k: round(v, 4) for k, v in ev.stats.items()},
                "AP50_target_met": ev.stats["AP50"] >= 0.90,
            }
        )
    )


if __name__ == "__main__":
    main()
