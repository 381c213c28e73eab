"""Layer sensitivity finds the layer that is known to be the worst.

A tiny QAT network gets real observer ranges and BN statistics from a few training-mode
passes; the ground truth is its own float detections, so the float AP is high. Then one
layer (``backbone.conv2``, which every path to the heads goes through) gets an activation
range a thousand times too small: quantizing it alone clips its output to almost nothing.
The ranking must put it first, far ahead of layers with sane ranges, and rank every
quantized layer the patterns (exact paths and a glob) select.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
from mindspore import Tensor

from yoloqat.core.config import apply_overrides, load_config
from yoloqat.core.scoring import DetectionEngine
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.evaluate import load_batches
from yoloqat.engine.pipeline import build_dataset, build_model, build_quantizer
from yoloqat.engine.report import layer_sensitivity

pytestmark = pytest.mark.slow

WORST = "backbone.conv2"
PATTERNS = (
    "backbone.conv1",
    WORST,
    "backbone.layer1.0.conv*",  # the residual block's two convs
    "head.conv1",
    "head.backblock1.conv6",
)


def test_sensitivity_ranks_the_broken_layer_first(tmp_path: Path) -> None:
    import mindspore as ms

    from yoloqat.core.contracts.quantizer import set_fake_quant

    # the one plugin internal: int8_qat's layers, to break one layer's range on purpose
    from yoloqat.plugins.int8_qat.quantizer import quantized_layers

    make_synthetic_coco(tmp_path, train=2, val=4, size=64, seed=1, num_classes=3)
    cfg = apply_overrides(
        load_config("synth_tiny_quant"),
        [
            f"dataset.data_dir={tmp_path}",
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.head.width=0.0625",
            "quantizer.ema_init=first_batch",
        ],
    )
    ms.set_seed(0)
    net = build_model(cfg)
    dataset = build_dataset(cfg)
    batch = load_batches(dataset.val_source(), testing_shape=64, batch_size=4)[0]
    images = Tensor(batch["image"])
    # BN statistics of these images, in float: a twin at momentum 0.5 gets within 0.1% of
    # them in 10 forwards (0.5**10; the config's 0.9 needs 60: 0.9**60 = 0.2%), then hands
    # its weights and statistics to the network, which keeps the config's momentum
    fast = apply_overrides(cfg, ["model.backbone.bn_momentum=0.5", "model.head.bn_momentum=0.5"])
    twin = build_model(fast)
    ms.load_param_into_net(twin, net.parameters_dict())
    twin.set_train(True)
    for _ in range(10):
        twin(images)
    ms.load_param_into_net(net, twin.parameters_dict())
    net.set_train(True)
    net = build_quantizer(cfg).apply(net)
    for _ in range(2):  # observer ranges
        net(images)
    net.set_train(False)

    # ground truth: the float network's own three best boxes per image
    set_fake_quant(net, False)
    engine = DetectionEngine(dataset.category_ids)
    engine.add_batch([o.asnumpy() for o in net(images)], batch["image_id"], batch["orig_size"])
    set_fake_quant(net, True)
    ann_file = tmp_path / "annotations" / "instances_val.json"
    ann = json.loads(ann_file.read_text())
    ann["annotations"] = []
    for image in ann["images"]:
        dets = [d for d in engine.results() if d["image_id"] == image["id"]]
        for d in sorted(dets, key=lambda d: -d["score"])[:3]:
            box = d["bbox"]
            ann["annotations"].append(
                {
                    "id": len(ann["annotations"]) + 1,
                    "image_id": image["id"],
                    "category_id": d["category_id"],
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
            )
    ann_file.write_text(json.dumps(ann))

    layers = dict(quantized_layers(net))
    fq = layers[WORST].act_quant
    fq.max_value.set_data(Tensor(fq.max_value.asnumpy() * 1e-3))
    try:
        rows = layer_sensitivity(
            net,
            build_dataset(cfg),
            testing_shape=64,
            top=50,
            max_images=4,
            batch_size=4,
            patterns=PATTERNS,
        )
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    names = [r["layer"] for r in rows]
    selected = [p for p in layers if any(fnmatchcase(p, pat) for pat in PATTERNS)]
    assert len(selected) > len(PATTERNS)  # the glob selects several layers
    assert sorted(names) == sorted(selected)  # every selected layer is ranked, once
    drops = [r["AP_drop"] for r in rows]
    assert drops == sorted(drops, reverse=True)
    assert names[0] == WORST, rows
    assert drops[0] > 0.3, rows
    assert drops[0] > 2 * max(drops[1], 0.01), rows  # far ahead of sane layers
