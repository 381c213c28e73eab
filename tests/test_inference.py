"""Loading checkpoints for inference: configs stored in checkpoints, float vs QAT mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from yoloqat.core.config import apply_overrides, load_config
from yoloqat.core.errors import CheckpointError
from yoloqat.engine.checkpoints import save_checkpoint
from yoloqat.engine.inference import MindSporePredictor, default_testing_shape, load_detector
from yoloqat.engine.pipeline import build_model, build_quantizer

TINY = ["model.backbone.width=0.0625", "model.head.width=0.0625", "model.num_classes=3"]


def _save(cfg: dict, path: Path, quantized: bool) -> Path:
    net = build_model(cfg)
    if quantized:
        build_quantizer(cfg).apply(net)
    return save_checkpoint(net, path, {"quantized": quantized, "config": cfg})


def test_qat_checkpoint_in_float_config_says_so(tmp_path: Path) -> None:
    qat_cfg = apply_overrides(load_config("synth_tiny_quant"), TINY)
    float_cfg = apply_overrides(load_config("synth_tiny"), TINY)
    qat = _save(qat_cfg, tmp_path / "qat.ckpt", quantized=True)
    with pytest.raises(CheckpointError, match=r"QAT .* checkpoint but the config has no quantizer"):
        load_detector(float_cfg, qat, explicit_config=True)
    flt = _save(float_cfg, tmp_path / "float.ckpt", quantized=False)
    with pytest.raises(CheckpointError, match="float checkpoint but the config quantizes"):
        load_detector(qat_cfg, flt, explicit_config=True)
    # without an explicit config the checkpoint's own model and quantizer are used
    net, cfg, meta = load_detector(load_config("yolov3_darknet53"), qat, explicit_config=False)
    assert meta["quantized"] and cfg["quantizer"]["name"] == "int8_qat"
    assert net.num_classes == 3


def test_predictor_pads_partial_batches(tmp_path: Path) -> None:
    import mindspore as ms

    cfg = apply_overrides(load_config("synth_tiny"), TINY)
    net, _, _ = load_detector(cfg, _save(cfg, tmp_path / "f.ckpt", quantized=False))
    pred = MindSporePredictor(net, graph_mode=False)
    try:
        x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
        full = pred(x[:4])  # fixes the batch size at 4
        both = pred(x)  # 4 + 1 padded to 4
        one = pred(x[4:])
        for a, b, c in zip(full, both, one):
            assert b.shape[0] == 5 and c.shape[0] == 1
            np.testing.assert_allclose(b[:4], a, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(b[4:], c, rtol=1e-5, atol=1e-5)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


def test_default_testing_shape_follows_the_checkpoint_config() -> None:
    synth = load_config("synth_tiny")  # eval.testing_shape 128
    seed = load_config("yolov3_darknet53")  # eval.testing_shape 416
    meta = {"config": synth}
    assert default_testing_shape(seed, meta, explicit=False) == 128
    assert default_testing_shape(seed, meta, explicit=True) == 416  # --config wins
    assert default_testing_shape(seed, {}, explicit=False) == 416  # nothing stored
    assert default_testing_shape({}, {}, explicit=True) == 416  # the schema's default
