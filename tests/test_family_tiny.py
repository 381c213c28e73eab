"""The YOLOv3-tiny family: Darknet's layout and pooling, two outputs, and the whole pipeline
(train -> QAT -> export --int8 -> eval --onnx on both runtimes -> predict) through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from mindspore import Tensor

from yoloqat.core.config import load_config
from yoloqat.engine import pipeline
from yoloqat.plugins.darknet_tiny import darknet_tiny
from yoloqat.plugins.darknet_tiny.model import KeepSizeMaxPool


def darknet_maxpool(
    x: np.ndarray, size: int, stride: int, padding: int | None = None
) -> np.ndarray:
    """Darknet's maxpool_layer: padding (default size - 1), offset -pad // 2, out-of-range
    cells not read; output side (w + pad - size) // stride + 1."""
    n, c, h, w = x.shape
    pad = size - 1 if padding is None else padding
    oh, ow = (h + pad - size) // stride + 1, (w + pad - size) // stride + 1
    out = np.full((n, c, oh, ow), -np.inf, np.float32)
    off = -(pad // 2)
    for i in range(oh):
        for j in range(ow):
            for di in range(size):
                for dj in range(size):
                    y, xx = off + i * stride + di, off + j * stride + dj
                    if 0 <= y < h and 0 <= xx < w:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, y, xx])
    return out


@pytest.mark.parametrize("hw", [(13, 13), (6, 9)])
def test_keep_size_maxpool_is_darknets_stride_1_pool(hw) -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, *hw)).astype(np.float32)
    got = KeepSizeMaxPool()(Tensor(x)).asnumpy()
    assert got.shape == x.shape  # the size is kept
    np.testing.assert_array_equal(got, darknet_maxpool(x, 2, 1))


def cfg_sections(path: Path) -> list[dict[str, str]]:
    """A minimal .cfg reader (independent of yoloqat's): sections with their options."""
    sections: list[dict[str, str]] = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("["):
            sections.append({"type": line.strip("[]")})
        elif "=" in line:
            key, value = (p.strip() for p in line.split("=", 1))
            sections[-1][key] = value
    return sections


def test_full_size_matches_darknets_yolov3_tiny_cfg(darknet_cfg: Path) -> None:
    """Parameters and output grids of the family at width 1 against Darknet's own
    yolov3-tiny.cfg: every conv's weights, its BN (scale, shift) or bias."""
    sections = cfg_sections(darknet_cfg / "yolov3-tiny.cfg")
    channels, outs, params = [3], [], 0
    for s in sections[1:]:
        if s["type"] == "convolutional":
            cin, cout, k = channels[-1], int(s["filters"]), int(s["size"])
            params += cin * cout * k * k + (2 * cout if s.get("batch_normalize") else cout)
            channels.append(cout)
        elif s["type"] == "route":
            idx = [int(v) for v in s["layers"].split(",")]
            idx = [i if i >= 0 else len(channels) - 1 + i for i in idx]
            channels.append(sum(channels[i + 1] for i in idx))
        elif s["type"] == "yolo":
            outs.append(len(s["mask"].split(",")))
            channels.append(channels[-1])
        else:  # maxpool, upsample keep the channels
            channels.append(channels[-1])
    cfg = load_config("yolov3_tiny")
    net = pipeline.build_model(cfg)
    count = sum(int(np.prod(p.shape)) for p in net.trainable_params())
    assert count == params == 8_852_366
    assert outs == [len(m) for m in net.head.anchor_masks] == [3, 3]
    assert net.strides == (32, 16)
    assert len(net.backbone.conv_units()) + len(net.head.conv_units()) == sum(
        s["type"] == "convolutional" for s in sections
    )
    net.set_train(True)
    raws = net(Tensor(np.zeros((1, 3, 416, 416), np.float32)))
    assert [tuple(o.shape) for o in raws] == [(1, 255, 13, 13), (1, 255, 26, 26)]


def test_family_preset_and_float_export(tmp_path: Path) -> None:
    from yoloqat.core.config import resolve_family
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.plugins.onnxruntime.session import OnnxPredictor
    from yoloqat.registry import default_registry

    cfg = load_config("synth_yolov3_tiny")
    resolved = resolve_family(cfg, default_registry())
    assert resolved["model"]["backbone"]["name"] == "darknet_tiny"
    assert resolved["model"]["head"]["name"] == "yolov3_tiny_head"
    assert resolved["loss"]["name"] == "yolov3_loss"
    net = pipeline.build_model(cfg)
    net.set_train(False)
    x = np.random.default_rng(1).standard_normal((2, 3, 96, 96)).astype(np.float32)
    want = [o.asnumpy() for o in net(Tensor(x))]
    got = OnnxPredictor(export_onnx(net, tmp_path / "t.onnx", input_size=96, batch=None))(x)
    assert [g.shape for g in got] == [(2, 3 * (3 * 3 + 6 * 6), 4), (2, 135, 5)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_darknet_tiny_parameters_are_checked() -> None:
    from yoloqat.core.errors import ConfigError

    for bad in ({"width": 0}, {"activation": "swish"}, {"bn_momentum": 1.0}, {"in_channels": 0}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            darknet_tiny(**bad)


@pytest.mark.slow
def test_train_qat_export_eval_predict_through_the_cli(tmp_path: Path) -> None:
    """The family end to end with the real commands at toy size: a float epoch, a QAT epoch
    from its checkpoint (which keeps the family's network and loss), int8 export (every conv
    int8), evaluation on ONNX Runtime and OpenVINO, and predictions."""
    from tiny import cli

    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.testing import count_int8_convs

    data = tmp_path / "data"
    make_synthetic_coco(data, train=8, val=4, size=64, seed=2, num_classes=3)
    common = ["--data_dir", str(data), "--ckpt_path", str(tmp_path / "runs"), "--max_epoch",
              "1", "--per_batch_size", "4", "--training_shape", "64", "--set",
              "model.num_classes=3", "--set", "model.backbone.width=0.0625", "--set",
              "model.head.width=0.0625", "--set", "eval.testing_shape=64"]  # fmt: skip
    res = cli("train", "--config", "synth_yolov3_tiny", *common, "--run_name", "float")
    assert res.returncode == 0, res.stderr
    (float_ckpt,) = (tmp_path / "runs" / "float" / "ckpt_0").glob("0-*.ckpt")
    res = cli("train", "--config", "synth_yolov3_tiny_quant", *common, "--run_name", "qat",
              "--resume_yolov3", str(float_ckpt))  # fmt: skip
    assert res.returncode == 0, res.stderr
    (qat_ckpt,) = (tmp_path / "runs" / "qat" / "ckpt_0").glob("0-*.ckpt")
    _, meta = read_checkpoint(qat_ckpt)
    assert meta["quantized"] and meta["config"]["family"] == "yolov3_tiny"
    assert meta["config"]["model"]["head"]["name"] == "yolov3_tiny_head"
    assert meta["config"]["model"]["head"]["width"] == 0.0625

    onnx_path = tmp_path / "tiny_int8.onnx"
    res = cli("export", "--checkpoint", str(qat_ckpt), "--int8", "--output", str(onnx_path))
    assert res.returncode == 0, res.stderr
    int8, convs = count_int8_convs(onnx_path)
    assert int8 == convs >= 7 + 6  # every conv of backbone and head (split convs included)
    results = {}
    for runtime in ("onnxruntime", "openvino"):
        res = cli("eval", "--onnx", str(onnx_path), "--data_dir", str(data), "--runtime",
                  runtime, "--output", str(tmp_path / runtime))  # fmt: skip
        assert res.returncode == 0, res.stderr
        (report,) = (tmp_path / runtime).glob("*/eval.json")
        results[runtime] = json.loads(report.read_text())["stats"]
        assert all(np.isfinite(v) for v in results[runtime].values())
    assert results["onnxruntime"]["AP50"] == pytest.approx(results["openvino"]["AP50"], abs=0.05)
    res = cli("predict", str(data / "val"), "--checkpoint", str(qat_ckpt), "--json",
              "--output", str(tmp_path / "pred"))  # fmt: skip
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert len(found) == 4
    assert all((tmp_path / "pred" / Path(r["source"]).name).is_file() for r in found)
