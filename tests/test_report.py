"""quant-report pieces: per-layer sensitivity ranking and latency timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloqat.core.config import apply_overrides, load_config
from yoloqat.core.pipeline import build_dataset, build_model, build_quantizer
from yoloqat.core.report import latency_ms, layer_sensitivity
from yoloqat.data.synth import make_synthetic_coco

pytestmark = pytest.mark.slow


def test_layer_sensitivity_ranks_every_quantized_layer(tmp_path: Path) -> None:
    import mindspore as ms

    from yoloqat.core.inference import MindSporePredictor
    from yoloqat.plugins.int8_qat.quantizer import quantized_layers

    make_synthetic_coco(tmp_path, train=4, val=2, size=64, seed=1, num_classes=3)
    cfg = apply_overrides(
        load_config("synth_tiny_quant"),
        [
            f"dataset.data_dir={tmp_path}",
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.head.width=0.0625",
        ],
    )
    net = build_model(cfg)
    build_quantizer(cfg).apply(net)
    try:
        names = {path for path, _ in quantized_layers(net)}
        assert len(names) == 72 + 3 + 23
        picked = ("backbone.layer1.*", "head.backblock0.conv6")
        rows = layer_sensitivity(
            net, build_dataset(cfg), testing_shape=64, top=3, max_images=2, patterns=picked
        )
        assert len(rows) == 3 and all(r["layer"] in names for r in rows)
        assert all(r["layer"].startswith(("backbone.layer1.", "head.backblock0")) for r in rows)
        drops = [r["AP_drop"] for r in rows]
        assert drops == sorted(drops, reverse=True)
        assert latency_ms(MindSporePredictor(net, graph_mode=False), 64, repeats=2) > 0
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
