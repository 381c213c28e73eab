"""Darknet models as yoloqat models, through the commands a user types: YOLOv4-tiny at toy
size imported, calibrated (PTQ) and fine-tuned (QAT), exported int8 and evaluated on ONNX
Runtime and OpenVINO; and the round trip export-darknet -> OpenCV / import-darknet for
YOLOv4-tiny and for a seed-style YOLOv3 checkpoint (ReLU, BN eps 1e-5, ImageNet input)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny import cli

import yoloqat  # noqa: F401  (sets the oneDNN ISA before any conv runs)
from yoloqat.core.config import load_config
from yoloqat.deploy.darknet_format import conv_specs
from yoloqat.engine.checkpoints import read_checkpoint, save_checkpoint
from yoloqat.engine.inference import load_detector, preprocessing
from yoloqat.testing.darknet import (
    darknet_weights,
    differences,
    network_outputs,
    opencv_outputs,
    toy_cfg,
)

SIZE = 64
NAMES = ["cat", "dog", "bird"]


def load(ckpt: Path):
    net, cfg, meta = load_detector(load_config("yolov3_darknet53"), ckpt, explicit_config=False)
    return net, cfg, meta


def conv_arrays(net) -> list[np.ndarray]:
    """The network's conv tensors in Darknet file order (whatever the parameter names)."""
    values = {p.name: p.asnumpy() for p in net.get_parameters()}
    return [values[n] for spec in conv_specs(net) for n in spec.names]


@pytest.fixture(scope="module")
def v4(darknet_cfg: Path, tmp_path_factory) -> dict:
    """YOLOv4-tiny at 1/16 width, 3 classes, 64 px, random weights (realistic BN statistics),
    imported with `import-darknet --names`; synthetic data of 3 classes."""
    from yoloqat.data.synth import make_synthetic_coco

    root = tmp_path_factory.mktemp("v4tiny")
    cfg = root / "yolov4-tiny-toy.cfg"
    cfg.write_text(toy_cfg((darknet_cfg / "yolov4-tiny.cfg").read_text(), size=SIZE))
    image = np.random.default_rng(3).random((1, 3, SIZE, SIZE)).astype(np.float32)
    weights = darknet_weights(cfg, image, root / "toy.weights")
    names = root / "toy.names"
    names.write_text("\n".join(NAMES) + "\n")
    ckpt = root / "v4.ckpt"
    res = cli("import-darknet", str(weights), "--cfg", str(cfg), "--names", str(names),
              "--output", str(ckpt))  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["network"] == "darknet_cfg" and summary["convs"] == 21
    assert "class names: " + str(names) in res.stderr
    data = root / "data"
    make_synthetic_coco(data, train=8, val=4, size=SIZE, seed=2, num_classes=3)
    return {"root": root, "cfg": cfg, "weights": weights, "ckpt": ckpt, "data": data,
            "image": image}  # fmt: skip


def eval_onnx(onnx: Path, data: Path, runtime: str, out: Path) -> dict:
    res = cli("eval", "--onnx", str(onnx), "--data_dir", str(data), "--runtime", runtime,
              "--output", str(out))  # fmt: skip
    assert res.returncode == 0, res.stderr
    (report,) = out.glob("*/eval.json")  # one run folder per eval
    stats = json.loads(report.read_text())["stats"]
    assert all(np.isfinite(v) for v in stats.values()), stats
    return stats


@pytest.mark.slow
def test_yolov4_tiny_ptq_and_qat_to_int8_onnx_on_both_runtimes(v4) -> None:
    """calibrate (PTQ) and train --resume_yolov3 (QAT) from the imported checkpoint, with no
    flags about the model; export --int8 (every conv int8; the ONNX graph computes the
    fake-quant network's boxes and scores); eval --onnx on ONNX Runtime and OpenVINO."""
    import onnx as onnx_lib

    from yoloqat.testing import count_int8_convs, onnx_differences

    root, data = v4["root"], v4["data"]
    ptq = root / "ptq.ckpt"
    res = cli("calibrate", "--checkpoint", str(v4["ckpt"]), "--data_dir", str(data), "--set",
              "dataset.name=coco", "--images", "8", "--output", str(ptq))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "21/21 convs int8" in res.stderr
    res = cli("train", "--config", "synth_tiny_quant", "--data_dir", str(data), "--ckpt_path",
              str(root / "runs"), "--run_name", "qat", "--resume_yolov3", str(v4["ckpt"]),
              "--max_epoch", "1", "--per_batch_size", "4", "--training_shape", str(SIZE),
              "--set", "scheduler.warmup_epochs=0",
              "--set", f"eval.testing_shape={SIZE}")  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "loaded initial weights from" in res.stderr
    (qat,) = (root / "runs" / "qat" / "ckpt_0").glob("*-1_*.ckpt")
    _, meta = read_checkpoint(qat)
    assert meta["quantized"] and meta["config"]["model"]["backbone"]["name"] == "darknet_cfg"
    assert meta["config"]["model"]["head"]["scale_x_y"] == [1.05, 1.05]
    assert meta["config"]["data"]["normalize"] == "unit" and meta["config"]["eval"]["letterbox"]

    for name, ckpt in (("ptq", ptq), ("qat", qat)):
        onnx = root / f"{name}.onnx"
        res = cli("export", "--checkpoint", str(ckpt), "--int8", "--output", str(onnx))
        assert res.returncode == 0, res.stderr
        int8, convs = count_int8_convs(onnx)
        assert int8 == convs >= 21, (name, int8, convs)  # split concat convs included
        props = {p.key: p.value for p in onnx_lib.load(str(onnx)).metadata_props}
        # PTQ keeps the imported names; QAT trained on the data: the dataset's names
        names = NAMES if name == "ptq" else (data / "names.txt").read_text().split()
        assert json.loads(props["class_names"]) == names and props["normalize"] == "unit"
        net, _, _ = load(ckpt)
        images = np.random.default_rng(7).random((1, 3, SIZE, SIZE)).astype(np.float32)
        diffs = onnx_differences(net, onnx, images)
        match = np.mean(np.concatenate([(d <= 1e-5).ravel() for d in diffs]))
        assert match > 0.5 and max(float(d.max()) for d in diffs) < 0.15, (name, match)
        ort = eval_onnx(onnx, data, "onnxruntime", root / f"{name}_ort")
        ov = eval_onnx(onnx, data, "openvino", root / f"{name}_ov")
        assert ort["AP50"] == pytest.approx(ov["AP50"], abs=0.05), (name, ort, ov)


def test_yolov4_tiny_round_trip(v4, tmp_path) -> None:
    """export-darknet writes a .cfg + .weights pair that OpenCV DNN reads (its outputs are the
    model's) and that import-darknet turns back into the same model: bit-exact weights, the
    same outputs, preprocessing and class names."""
    net, cfg, meta = load(v4["ckpt"])
    assert meta["class_names"] == NAMES
    weights, cfg_out, names = tmp_path / "out.weights", tmp_path / "out.cfg", tmp_path / "o.names"
    res = cli("export-darknet", str(v4["ckpt"]), "--output", str(weights), "--cfg", str(cfg_out),
              "--names", str(names))  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert weights.read_bytes() == v4["weights"].read_bytes()  # the file it came from
    assert names.read_text().split() == NAMES
    text = cfg_out.read_text()
    assert '# yoloqat: {"class_names": ["cat", "dog", "bird"], "normalize": "unit"' in text
    assert "scale_x_y = 1.05" in text or "scale_x_y=1.05" in text

    ours = network_outputs(net, v4["image"])
    worst, at_scale = differences(ours, opencv_outputs(cfg_out, weights, v4["image"], tmp_path))
    assert max(worst.values()) < 1e-4 and max(at_scale.values()) < 2e-5, (worst, at_scale)

    again = tmp_path / "again.ckpt"
    res = cli("import-darknet", str(weights), "--cfg", str(cfg_out), "--output", str(again))
    assert res.returncode == 0, res.stderr
    net2, cfg2, meta2 = load(again)
    assert meta2["class_names"] == NAMES
    assert preprocessing(meta2["config"]) == preprocessing(meta["config"])
    assert cfg2["model"] == cfg["model"] | {"backbone": cfg2["model"]["backbone"]}
    a, b = conv_arrays(net), conv_arrays(net2)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    for x, y in zip(ours, network_outputs(net2, v4["image"])):
        np.testing.assert_array_equal(x, y)


def seed_style_checkpoint(path: Path) -> Path:
    """A checkpoint as the seed's recipe trains it: ReLU DarkNet-53 (1/16 width, one block
    per stage), BN eps 1e-5, ImageNet-normalised stretched input, named classes."""
    from mindspore import Tensor

    from yoloqat.engine import pipeline

    cfg = load_config("synth_tiny")
    cfg["model"]["num_classes"] = 3
    cfg["model"]["backbone"].update(width=0.0625, blocks=[1, 1, 1, 1, 1])
    cfg["model"]["head"]["width"] = 0.0625
    cfg["eval"]["testing_shape"] = SIZE
    net = pipeline.build_model(cfg)
    rng = np.random.default_rng(4)
    for p in net.get_parameters():
        value = rng.standard_normal(p.shape) * 0.3
        if p.name.endswith("moving_variance"):
            value = np.abs(value) + 0.5
        p.set_data(Tensor(value.astype(np.float32)))
    meta = {"quantized": False, "num_classes": 3, "class_names": NAMES, "config": cfg}
    return save_checkpoint(net, path, meta)


def test_seed_yolov3_round_trip(tmp_path) -> None:
    """The case measured in the issue: export-darknet of a seed-style YOLOv3 (ReLU, BN eps
    1e-5, ImageNet input) then import-darknet of the .cfg yoloqat wrote gives back its
    outputs, preprocessing and class names, with bit-exact weights."""
    ckpt = seed_style_checkpoint(tmp_path / "seed.ckpt")
    net, cfg, _ = load(ckpt)
    assert preprocessing(cfg) == {"normalize": "imagenet", "letterbox": False}
    weights, cfg_out = tmp_path / "seed.weights", tmp_path / "seed.cfg"
    res = cli("export-darknet", str(ckpt), "--output", str(weights), "--cfg", str(cfg_out))
    assert res.returncode == 0, res.stderr
    assert "activation=relu" in res.stderr and "imagenet-normalised input" in res.stderr
    again = tmp_path / "again.ckpt"
    res = cli("import-darknet", str(weights), "--cfg", str(cfg_out), "--output", str(again))
    assert res.returncode == 0, res.stderr
    net2, cfg2, meta2 = load(again)
    assert meta2["class_names"] == NAMES
    assert preprocessing(cfg2) == {"normalize": "imagenet", "letterbox": False}
    assert cfg2["model"]["backbone"]["bn_eps"] == 1e-5
    a, b = conv_arrays(net), conv_arrays(net2)
    assert len(a) == len(b) == 5 * 36 + 2 * 3  # 39 convs: 36 with BN (5 arrays), 3 outputs (2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    image = np.random.default_rng(5).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    for x, y in zip(network_outputs(net, image)[:2], network_outputs(net2, image)[:2]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_darknet_style_yolov3_export_is_read_by_opencv(tmp_path) -> None:
    """A YOLOv3 set up as Darknet runs it (leaky, BN eps 1e-6, RGB/255): the exported pair
    computes its outputs in OpenCV DNN, and export-darknet has nothing to warn about."""
    ckpt = seed_style_checkpoint(tmp_path / "seed.ckpt")
    _, meta = read_checkpoint(ckpt)
    cfg = meta["config"]
    cfg["model"]["backbone"].update(activation="leaky", bn_eps=1e-6)
    cfg["model"]["head"]["bn_eps"] = 1e-6
    cfg["data"]["normalize"] = "unit"
    params, _ = read_checkpoint(ckpt)
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import load_weights

    net = pipeline.build_model(cfg)
    load_weights(net, params, source=ckpt)
    dark = save_checkpoint(net, tmp_path / "dark.ckpt", {**meta, "config": cfg})
    weights, cfg_out = tmp_path / "d.weights", tmp_path / "d.cfg"
    res = cli("export-darknet", str(dark), "--output", str(weights), "--cfg", str(cfg_out))
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr
    net, _, _ = load(dark)
    image = np.random.default_rng(6).random((1, 3, SIZE, SIZE)).astype(np.float32)
    ours = network_outputs(net, image)
    worst, at_scale = differences(ours, opencv_outputs(cfg_out, weights, image, tmp_path))
    assert max(at_scale.values()) < 1e-4, (worst, at_scale)


def test_yolov3_tiny_family_exports_to_darknet(darknet_cfg: Path, tmp_path) -> None:
    """The bundled yolov3_tiny family is Darknet's yolov3-tiny.cfg layer for layer (full
    size); a toy checkpoint of it set up as Darknet runs it exports a pair that OpenCV DNN
    computes as the model does, and that imports back to the same outputs and names."""
    from yoloqat.core.config import apply_overrides
    from yoloqat.deploy.darknet_cfg import check_cfg_matches
    from yoloqat.engine import pipeline
    from yoloqat.testing.darknet import randomize

    check_cfg_matches(
        darknet_cfg / "yolov3-tiny.cfg", pipeline.build_model(load_config("yolov3_tiny"))
    )

    darknet = ["model.backbone.bn_eps=1e-6", "model.head.bn_eps=1e-6", "data.normalize=unit",
               "eval.letterbox=true", f"eval.testing_shape={SIZE}"]  # fmt: skip
    cfg = apply_overrides(load_config("synth_yolov3_tiny"), [
        "model.num_classes=3", "model.backbone.width=0.0625", "model.head.width=0.0625",
        "model.backbone.bn_momentum=0.0", "model.head.bn_momentum=0.0", *darknet])  # fmt: skip
    net = pipeline.build_model(cfg)
    image = np.random.default_rng(8).random((1, 3, SIZE, SIZE)).astype(np.float32)
    randomize(net, image)
    meta = {"quantized": False, "num_classes": 3, "class_names": NAMES, "config": cfg}
    ckpt = save_checkpoint(net, tmp_path / "tiny.ckpt", meta)
    weights, cfg_out = tmp_path / "t.weights", tmp_path / "t.cfg"
    res = cli("export-darknet", str(ckpt), "--output", str(weights), "--cfg", str(cfg_out))
    assert res.returncode == 0, res.stderr
    assert "YOLOv3-tiny layout" in cfg_out.read_text()
    net, _, _ = load(ckpt)
    ours = network_outputs(net, image)
    worst, at_scale = differences(ours, opencv_outputs(cfg_out, weights, image, tmp_path))
    assert max(worst.values()) < 1e-4 and max(at_scale.values()) < 2e-5, (worst, at_scale)
    again = tmp_path / "again.ckpt"
    res = cli("import-darknet", str(weights), "--cfg", str(cfg_out), "--output", str(again))
    assert res.returncode == 0, res.stderr
    net2, _, meta2 = load(again)
    assert meta2["class_names"] == NAMES
    assert all(np.array_equal(x, y) for x, y in zip(conv_arrays(net), conv_arrays(net2)))
    for x, y in zip(ours[:2], network_outputs(net2, image)[:2]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
