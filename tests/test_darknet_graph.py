"""The Darknet .cfg graph: every supported section and key against OpenCV DNN at toy size,
its layers against NumPy references of Darknet's code, int8 and ONNX of every layer kind,
and the errors of every unsupported case (file, line, section index, key and value)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from mindspore import Tensor
from test_family_tiny import darknet_maxpool

import yoloqat  # noqa: F401  (sets the oneDNN ISA before any conv runs)
from yoloqat.core.errors import ConfigError
from yoloqat.testing.darknet import (
    cfg_network,
    darknet_weights,
    differences,
    network_outputs,
    opencv_outputs,
)


def section(kind: str, **options: object) -> str:
    return f"[{kind}]\n" + "".join(f"{k}={v}\n" for k, v in options.items()) + "\n"


def conv(filters: int, size: int = 3, stride: int = 1, bn: bool = True, **more: object) -> str:
    opts = {"batch_normalize": 1} if bn else {}
    return section(
        "convolutional", **opts, filters=filters, size=size, stride=stride, pad=1, **more
    )


ANCHORS = "5,6, 10,12, 20,24, 40,30"
#: 64 px, 3 classes: every section type and key yoloqat supports, every activation, in
#: the combinations OpenCV's reader takes (layer indices in the comments).
ZOO = (
    section("net", width=64, height=64, channels=3, batch=64, momentum=0.9, letter_box=1)
    + conv(8, stride=2, activation="mish")  # 0: 32 x 32
    + conv(8, groups=2, activation="logistic")  # 1
    + conv(8, bn=False, activation="relu")  # 2: 3x3 conv with bias
    + section("shortcut", **{"from": -3}, activation="leaky")  # 3
    + section("maxpool", size=3, stride=2)  # 4: 16 x 16, Darknet's padding
    + section("maxpool", size=5, stride=1)  # 5: keeps the size
    + section("route", layers=-1, groups=2, group_id=1)  # 6: 4 channels
    + conv(16, size=1, activation="linear")  # 7
    + conv(16, stride=2, groups=16, activation="leaky")  # 8: depthwise, 8 x 8
    + section("maxpool", size=2, stride=1)  # 9
    + conv(16, activation="relu")  # 10
    + conv(16, size=1, bn=False, activation="linear")  # 11: output, 2 x (5 + 3)
    + section("yolo", mask="2,3", anchors=ANCHORS, classes=3, num=4, scale_x_y=1.1, jitter=0.3)
    + section("route", layers=7)  # 13
    + section("upsample", stride=2)  # 14: 32 x 32
    + section("route", layers="-1, 3")  # 15: 16 + 8 channels
    + conv(8, stride=2, activation="leaky")  # 16: 16 x 16
    + conv(16, size=1, bn=False, activation="linear")  # 17
    + section("yolo", mask="0,1", anchors=ANCHORS, classes=3, num=4, scale_x_y=1.05)
)
HEAD = {
    "anchors": [[5, 6], [10, 12], [20, 24], [40, 30]],
    "anchor_masks": [[2, 3], [0, 1]],
    "strides": [8, 4],
    "scale_x_y": [1.1, 1.05],
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("zoo")
    cfg = root / "zoo.cfg"
    cfg.write_text(ZOO)
    image = np.random.default_rng(0).random((1, 3, 64, 64)).astype(np.float32)
    weights = darknet_weights(cfg, image, root / "zoo.weights")
    return {"root": root, "cfg": cfg, "weights": weights, "image": image}


def test_every_layer_kind_matches_opencv(zoo) -> None:
    """Imported, the toy .cfg computes OpenCV's outputs (measured: ~4e-6 elementwise)."""
    from yoloqat.core.config import load_config
    from yoloqat.engine.darknet import import_darknet
    from yoloqat.engine.inference import load_detector

    ckpt = zoo["root"] / "zoo.ckpt"
    summary = import_darknet(zoo["weights"], ckpt, cfg_file=zoo["cfg"])
    assert summary["network"] == "darknet_cfg" and summary["convs"] == 9
    net, _, meta = load_detector(load_config("yolov3_darknet53"), ckpt, explicit_config=False)
    assert meta["config"]["model"]["head"] == {"name": "darknet_yolo_head", **HEAD}
    assert meta["class_names"] == ["class0", "class1", "class2"]
    assert net.strides == (8, 4) and net.backbone.strides == (4, 8)
    theirs = opencv_outputs(zoo["cfg"], zoo["weights"], zoo["image"], zoo["root"])
    worst, at_scale = differences(network_outputs(net, zoo["image"]), theirs)
    assert max(worst.values()) < 1e-4 and max(at_scale.values()) < 2e-5, (worst, at_scale)


def test_graph_mode_and_onnx_compute_the_same(zoo, tmp_path) -> None:
    """GRAPH_MODE compiles the graph (routes, slices, pools) to the PYNATIVE values, and the
    float ONNX export (MindSpore's exporter maps every layer) runs them on ONNX Runtime."""
    import mindspore as ms

    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.plugins.onnxruntime.session import OnnxPredictor

    net = cfg_network(zoo["cfg"])
    net.set_train(False)
    want = [o.asnumpy() for o in net(Tensor(zoo["image"]))]
    got_onnx = OnnxPredictor(export_onnx(net, tmp_path / "zoo.onnx", input_size=64))(zoo["image"])
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        got_graph = [o.asnumpy() for o in net(Tensor(zoo["image"]))]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    for g, o, w in zip(got_graph, got_onnx, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_int8_qat_quantizes_every_layer_kind_end_to_end() -> None:
    """QAT of mish, logistic, grouped and bias convs and shortcut adds; int8 ONNX with every
    conv int8; ONNX Runtime against the fake-quant network; evaluation."""
    from yoloqat.testing import check_plugin_end_to_end

    report = check_plugin_end_to_end(
        "darknet_cfg", {"cfg": ZOO}, head="darknet_yolo_head", head_params=HEAD
    )
    assert report.int8_convs == report.convs == 9 and not report.float_convs
    assert report.match_fraction > 0.5, report


@pytest.mark.parametrize(
    ("size", "stride", "padding"),
    [(2, 2, 1), (2, 1, 1), (3, 2, 2), (3, 1, 2), (5, 2, 4), (2, 2, 0)],
)
def test_maxpool_is_darknets(size: int, stride: int, padding: int) -> None:
    from yoloqat.plugins.yolov3.darknet_graph import MaxPoolLayer
    from yoloqat.plugins.yolov3.darknet_spec import LayerSpec

    x = np.random.default_rng(size * stride).standard_normal((1, 2, 12, 12)).astype(np.float32)
    spec = LayerSpec(
        0, "maxpool", 1, 2, 1, (12, 12), {"size": size, "stride": stride, "padding": padding}
    )
    got = MaxPoolLayer(spec)(Tensor(x), ()).asnumpy()
    np.testing.assert_array_equal(got, darknet_maxpool(x, size, stride, padding))


def test_route_groups_of_two_layers() -> None:
    """Darknet's route_layer: group ``group_id`` of each input's channels, in order (OpenCV
    cannot read this form, so a NumPy reference)."""
    text = (
        section("net", width=32, height=32)
        + conv(4, activation="linear")
        + conv(6, activation="linear")
        + section("route", layers="-1,-2", groups=2, group_id=1)
        + conv(16, size=1, bn=False, activation="linear")
        + section("yolo", mask="0,1", anchors=ANCHORS, classes=3, num=4)
    )
    from yoloqat.plugins.yolov3 import darknet_cfg

    graph = darknet_cfg(cfg=text)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    a = graph.layers[0](Tensor(x), ())
    b = graph.layers[1](a, ())
    got = graph.layers[2](b, (a, b)).asnumpy()
    want = np.concatenate([b.asnumpy()[:, 3:6], a.asnumpy()[:, 2:4]], axis=1)
    np.testing.assert_array_equal(got, want)


BASE = (
    section("net", width=32, height=32)
    + conv(8, activation="leaky")
    + conv(16, size=1, bn=False, activation="linear")
    + section("yolo", mask="0,1", anchors=ANCHORS, classes=3, num=4)
)


def broken(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


def after_yolo(*sections: str) -> str:
    return BASE + "".join(sections)


NOT_SUPPORTED = "is not supported"
#: (the .cfg, the line named, what the message says after "section N [type]: ")
ERRORS = [
    (broken("[yolo]", "[dropout]\nprobability=.5\n\n[yolo]"), 20,
     r"section 2 \[dropout\]: the section type \[dropout\] is not supported \(supported: "),
    (broken("activation=leaky", "activation=leaky\ndilation=2"), 12,
     r"section 0 \[convolutional\]: dilation=2 is not supported \(keys of \[convolutional\]"),
    (broken("activation=leaky", "activation=swish"), 11,
     r"section 0 \[convolutional\]: activation=swish is not supported; supported: linear, "
     r"leaky, relu, mish, logistic"),
    (broken("classes=3", "classes=3\nnew_coords=1"), 24,
     r"section 2 \[yolo\]: new_coords=1 is not supported"),
    (broken("classes=3", "classes=3\nnms_kind=diounms"), 24,
     r"section 2 \[yolo\]: nms_kind=diounms is not supported"),
    (broken("classes=3", "classes=4"), 23,
     r"section 2 \[yolo\]: classes=4 needs 2 anchors x \(5 \+ 4\) = 18 channels; the conv "
     r"before it has filters=16"),
    (broken("num=4", "num=5"), 24, r"section 2 \[yolo\]: num=5 does not match the 4 anchor"),
    (broken("mask=0,1", "mask=0,7"), 21, r"section 2 \[yolo\]: mask=0,7 is not valid"),
    (broken("filters=8", "filters=eight"), 7,
     r"section 0 \[convolutional\]: filters=eight is not an integer"),
    (broken("[yolo]", "[upsample]\nstride=2\nscale=2\n\n[yolo]"), 22,
     r"section 2 \[upsample\]: scale=2 is not supported"),
    (broken("[yolo]", "[shortcut]\nfrom=-1,-2\n\n[yolo]"), 21,
     r"section 2 \[shortcut\]: from=-1,-2 is not supported; expected one layer"),
    (broken("[yolo]", "[route]\nlayers=5\n\n[yolo]"), 21,
     r"section 2 \[route\]: layers=5 points at layer 5"),
    (broken("[yolo]", "[maxpool]\nsize=2\nstride=2\nstride_x=2\n\n[yolo]"), 23,
     r"section 2 \[maxpool\]: stride_x=2 is not supported"),
    (broken("[net]", "[net]\nflip_everything=1"), 2,
     r"\[net\] section: flip_everything=1 is not supported"),
    (broken("[net]", "[net]\nchannels=1"), 2, r"\[net\] section: channels=1 is not supported"),
    (after_yolo(section("convolutional", filters=4)), 26,
     r"section 3 \[convolutional\]: reads the output of the \[yolo\] layer before it"),
    (after_yolo(section("route", layers=-2), section("convolutional", filters=4)), 26,
     r"section 3 \[route\]: comes after the last \[yolo\] layer"),
    (after_yolo(section("route", layers=-1)), 27,
     r"section 3 \[route\]: layers=-1 reads the \[yolo\] layer 2"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_unsupported_sections_and_keys_name_where(
    tmp_path, text: str, line: int, message: str
) -> None:
    from yoloqat.engine.darknet import import_darknet

    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)
    weights = tmp_path / "any.weights"
    weights.write_bytes(b"\0" * 20)
    with pytest.raises(ConfigError) as err:
        import_darknet(weights, tmp_path / "x.ckpt", cfg_file=cfg)
    assert err.value.message.startswith(f"{cfg}:{line}: "), err.value.message
    assert re.search(message, err.value.message), err.value.message
    assert not (tmp_path / "x.ckpt").exists()


def test_a_stored_cfg_is_checked_as_the_backbone_builds_it() -> None:
    """A config's backbone block holding a broken .cfg names the block and the line."""
    from yoloqat.registry import default_registry

    text = broken("activation=leaky", "activation=leaky\ndilation=2")
    where = r"^model\.backbone\.cfg:12: section 0 \[convolutional\]: dilation=2"
    with pytest.raises(ConfigError, match=where):
        default_registry().create("backbone", "darknet_cfg", cfg=text)


def test_cli_exit_code_3_names_the_line(tmp_path) -> None:
    from tiny import cli

    cfg = tmp_path / "bad.cfg"
    cfg.write_text(broken("activation=leaky", "activation=leaky\ndilation=2"))
    weights = tmp_path / "any.weights"
    weights.write_bytes(b"\0" * 20)
    out = tmp_path / "x.ckpt"
    res = cli("import-darknet", str(weights), "--cfg", str(cfg), "--output", str(out))
    assert res.returncode == ConfigError.exit_code, res.stderr
    assert f"{cfg}:12: section 0 [convolutional]: dilation=2 is not supported" in res.stderr
    assert "Traceback" not in res.stderr and not res.stdout


def test_the_darknet_family_preset(tmp_path) -> None:
    """`family: {name: darknet, cfg: TEXT}` gives the .cfg's network, loss and Darknet's input."""
    from yoloqat.core.config import resolve_family
    from yoloqat.engine import pipeline
    from yoloqat.registry import default_registry

    cfg = {"family": {"name": "darknet", "cfg": ZOO}, "model": {"num_classes": 3}}
    resolved = resolve_family(cfg, default_registry())
    assert resolved["model"]["head"] == {"name": "darknet_yolo_head", **HEAD}
    assert resolved["loss"] == {"name": "yolov3_loss", "ignore_threshold": 0.7}
    assert resolved["data"]["normalize"] == "unit" and resolved["eval"]["letterbox"] is True
    net = pipeline.build_model(cfg)
    loss = pipeline.build_loss(cfg, net)
    assert loss.scale_x_y == (1.1, 1.05) and loss.anchor_masks == ((2, 3), (0, 1))
    assert json.loads(json.dumps(resolved))  # plain values: a checkpoint stores it as is


def test_scale_x_y_decode_and_loss_target() -> None:
    """The decode's centres are Darknet's ``(i + sigmoid(t) * s - (s - 1) / 2) / G``; with
    s = 1 the decode is the YOLOv3 one. The loss's xy target is the sigmoid that decodes to
    the box centre: predicting it exactly gives a zero xy gradient."""
    import mindspore as ms

    from yoloqat.plugins.yolov3 import yolov3_loss
    from yoloqat.plugins.yolov3.decode import YoloPredict, to_anchor_major

    anchors = np.asarray([[10.0, 14.0], [23.0, 27.0]], np.float32)
    rng = np.random.default_rng(2)
    raw = rng.standard_normal((1, 2 * 8, 4, 4)).astype(np.float32)
    s = 1.05
    boxes, _ = YoloPredict([anchors], [s])(((Tensor(raw)),), 128, 128)
    plain, _ = YoloPredict([anchors])(((Tensor(raw)),), 128, 128)
    t = to_anchor_major(Tensor(raw), 2).asnumpy()  # [1, H, W, A, K]
    sig = 1 / (1 + np.exp(-t[..., 0:2].astype(np.float64)))
    gy, gx = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    grid = np.stack([gx, gy], -1)[None, :, :, None, :]
    want = (sig * s - (s - 1) / 2 + grid) / 4
    np.testing.assert_allclose(boxes.asnumpy()[0, :, :2], want.reshape(-1, 2), rtol=1e-6)
    np.testing.assert_allclose(
        plain.asnumpy()[0, :, :2], ((sig + grid) / 4).reshape(-1, 2), rtol=1e-6
    )

    # one box; its cell's xy logits set to the target: no xy gradient from the loss
    loss = yolov3_loss(num_classes=3, anchors=anchors.tolist(), anchor_masks=[[0, 1]],
                       strides=[32], scale_x_y=[s])  # fmt: skip
    gt = np.zeros((1, 4, 4), np.float32)
    gt[0, 0] = [40.0, 50.0, 52.0, 66.0]  # 12 x 16: anchor 0, cell (1, 1) at stride 32
    labels, valid = np.zeros((1, 4), np.int32), np.zeros((1, 4), np.float32)
    valid[0, 0] = 1.0
    extras = loss.build_targets(gt, labels, valid, (128, 128))
    centre = np.floor((gt[0, 0, :2] + gt[0, 0, 2:]) / 2) / 32 - 1  # offset in its cell
    q = (centre + (s - 1) / 2) / s
    pred = np.zeros((1, 2, 8, 4, 4), np.float32)
    pred[0, 0, 0:2, 1, 1] = np.log(q / (1 - q))
    pred = pred.reshape(1, 16, 4, 4)

    def xy_loss(p):
        raw = to_anchor_major(p, 2)
        return loss.blocks[0](raw, Tensor(extras[0]), Tensor(extras[1]))[0]

    grad = ms.grad(xy_loss)(Tensor(pred)).asnumpy().reshape(1, 2, 8, 4, 4)
    assert np.abs(grad[0, 0, 0:2, 1, 1]).max() < 1e-6, grad[0, 0, 0:2, 1, 1]
    wrong = pred.reshape(1, 2, 8, 4, 4).copy()
    wrong[0, 0, 0:2, 1, 1] = np.log(centre / (1 - centre))  # the s = 1 target
    grad = ms.grad(xy_loss)(Tensor(wrong.reshape(1, 16, 4, 4))).asnumpy().reshape(1, 2, 8, 4, 4)
    assert np.abs(grad[0, 0, 0:2, 1, 1]).max() > 1e-3
