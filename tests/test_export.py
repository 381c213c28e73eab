"""Deployment: ONNX export (float and int8 QDQ) vs MindSpore, ONNX Runtime predictor, CLI."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest
from mindspore import Tensor, nn

from yoloqat.core.errors import CheckpointError, ConfigError, PluginError, UsageError
from yoloqat.core.layers import ConvBnAct
from yoloqat.deploy.onnx_export import OUTPUT_NAMES, export_mindir, export_onnx
from yoloqat.engine.models import yolov3_darknet53
from yoloqat.plugins.onnxruntime.session import OnnxPredictor

WIDTH = 0.0625
NUM_CLASSES = 3
#: One residual block per backbone stage: every kind of layer DarkNet-53 has (stem, stride-2
#: convs, residual adds, the three route outputs) at a third of its convs, which is what the
#: export and its compile cost scale with. The layer counts below follow from it.
BLOCKS = (1, 1, 1, 1, 1)
BACKBONE_CONVS = 1 + len(BLOCKS) + 2 * sum(BLOCKS)  # stem, one stride-2 conv per stage, 2 per block
HEAD_CONV_BLOCKS = 20  # the neck and heads' conv + BN + LeakyReLU units
OUTPUT_CONVS = 3  # one plain conv per scale
CONVS = BACKBONE_CONVS + HEAD_CONV_BLOCKS + OUTPUT_CONVS
ADDS = sum(BLOCKS)  # one per residual block


def randomize_bn(network: nn.Cell, seed: int = 0) -> None:
    """Non-trivial BN statistics, so that a wrong fold cannot go unnoticed."""
    rng = np.random.default_rng(seed)
    for _, cell in network.cells_and_names():
        if isinstance(cell, ConvBnAct):
            n = cell.bn.gamma.shape[0]
            for param, lo, hi in (
                (cell.bn.gamma, 0.5, 1.5),
                (cell.bn.beta, -0.3, 0.3),
                (cell.bn.moving_mean, -0.3, 0.3),
                (cell.bn.moving_variance, 0.3, 2.0),
            ):
                param.set_data(Tensor(rng.uniform(lo, hi, n).astype(np.float32)))


def tiny(activation: str = "relu", padding: str = "symmetric", seed: int = 0):
    import mindspore as ms

    # Seeded weights: a rounding-boundary flip early in the network cascades into many
    # outputs, so the exact-match fractions below must not depend on an unseeded draw.
    ms.set_seed(seed)
    net = yolov3_darknet53(
        num_classes=NUM_CLASSES, width=WIDTH, activation=activation, padding=padding, blocks=BLOCKS
    )
    randomize_bn(net, seed)
    net.set_train(False)
    return net


def mindspore_outputs(net: nn.Cell, images: np.ndarray) -> list[np.ndarray]:
    return [o.asnumpy() for o in net(Tensor(images))]


# each activation and each padding once: the padding is a property of the Conv, the
# activation a node after it, so the four combinations test nothing the two miss
@pytest.mark.parametrize(("activation", "padding"), [("relu", "symmetric"), ("leaky", "same")])
def test_float_onnx_matches_mindspore(tmp_path: Path, padding: str, activation: str) -> None:
    net = tiny(activation, padding)
    rng = np.random.default_rng(1)
    for size, batch in ((64, 2), (96, None)):
        images = rng.standard_normal((2, 3, size, size)).astype(np.float32)
        path = export_onnx(net, tmp_path / f"m{size}.onnx", input_size=size, batch=batch)
        predictor = OnnxPredictor(path, threads=1)
        assert predictor.input_size == size and predictor.batch == batch
        got = predictor(images)
        want = mindspore_outputs(net, images)
        assert len(got) == 2  # boxes, scores
        candidates = 3 * sum((size // s) ** 2 for s in (32, 16, 8))
        assert got[0].shape == want[0].shape == (2, candidates, 4)
        assert got[1].shape == want[1].shape == (2, candidates, NUM_CLASSES)
        assert np.abs(want[0]).max() > 0.5 and np.ptp(want[1]) > 0.05  # they carry signal
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_same_padding_differs_from_symmetric_and_exports(tmp_path: Path) -> None:
    # same weights, other padding: MindSpore's outputs differ by more than the export
    # tolerance, so the float test above would catch a wrong padding
    images = np.random.default_rng(2).standard_normal((1, 3, 64, 64)).astype(np.float32)
    a, b = tiny(padding="same", seed=3), tiny(padding="symmetric", seed=3)
    for src, dst in zip(a.get_parameters(), b.get_parameters()):
        dst.set_data(src.data)
    out_a, out_b = mindspore_outputs(a, images), mindspore_outputs(b, images)
    assert not all(np.allclose(x, y, rtol=1e-4, atol=1e-5) for x, y in zip(out_a, out_b))
    onnx_a = OnnxPredictor(export_onnx(a, tmp_path / "a.onnx", input_size=64))(images)
    for g, w in zip(onnx_a, out_a):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_graph_passes_checker_with_requested_opset(tmp_path: Path, opset: int) -> None:
    path = export_onnx(tiny(), tmp_path / "m.onnx", input_size=64, opset=opset)
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert {o.domain: o.version for o in model.opset_import}[""] == opset
    assert [o.name for o in model.graph.output] == list(OUTPUT_NAMES)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["input_size"] == "64" and meta["num_classes"] == str(NUM_CLASSES)
    assert meta["output_format"] == "yolo" and meta["strides"] == "[32, 16, 8]"
    ops = {n.op_type for n in model.graph.node}
    assert {"Conv", "Relu", "LeakyRelu", "Add", "Resize", "Concat", "Sigmoid", "Exp"} <= ops
    assert "BatchNormalization" not in ops  # folded into the convs
    assert sum(n.op_type == "Conv" for n in model.graph.node) == CONVS


def test_unmappable_op_is_a_clear_error_naming_the_cell(tmp_path: Path) -> None:
    from mindspore import ops

    class Upsample(nn.Cell):  # ops.interpolate has no ONNX mapping in MindSpore 2.10
        def construct(self, x):
            return ops.interpolate(x, size=(x.shape[2], x.shape[3]), mode="nearest")

    net = tiny()
    net.backbone.layer1.append(Upsample())
    with pytest.raises(
        PluginError, match=r"op ResizeNearestNeighborV2 used by the cell backbone\.layer1\.1"
    ) as info:
        export_onnx(net, tmp_path / "m.onnx", input_size=64)
    assert "ResizeNearestNeighbor" in (info.value.hint or "")
    assert not (tmp_path / "m.onnx").exists()


def test_any_construct_of_standard_ops_exports_without_code(tmp_path: Path) -> None:
    class Gate(nn.Cell):  # plain ops in construct: a residual and a sigmoid gate
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.SiLU()

        def construct(self, x):
            return x + self.act(x) * ops.sigmoid(x * 2.0)

    from mindspore import ops

    net = tiny()
    net.backbone.layer1.append(Gate())
    images = np.random.default_rng(4).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = OnnxPredictor(export_onnx(net, tmp_path / "m.onnx", input_size=64))(images)
    for g, w in zip(got, mindspore_outputs(net, images)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_bad_export_arguments(tmp_path: Path) -> None:
    net = tiny()
    with pytest.raises(ConfigError, match="multiple of 32"):
        export_onnx(net, tmp_path / "m.onnx", input_size=100)
    with pytest.raises(UsageError, match="opset"):
        export_onnx(net, tmp_path / "m.onnx", input_size=64, opset=9)
    with pytest.raises(UsageError, match="int8 export needs a quantized"):
        export_onnx(net, tmp_path / "m.onnx", input_size=64, int8=True)
    with pytest.raises(UsageError, match="needs a Detector"):
        export_onnx(net.backbone, tmp_path / "m.onnx", input_size=64)


def test_onnx_predictor_errors(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"ONNX model not found: .*nope\.onnx"):
        OnnxPredictor(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(CheckpointError, match=r"junk\.onnx is not a valid ONNX model"):
        OnnxPredictor(junk)
    predictor = OnnxPredictor(export_onnx(tiny(), tmp_path / "m.onnx", input_size=64, batch=1))
    with pytest.raises(ConfigError, match=r"expects images \[B, 3, 64, 64\]"):
        predictor(np.zeros((1, 3, 96, 96), np.float32))
    # a fixed batch-1 model still serves a batch of 3 (run in chunks)
    outs = predictor(np.zeros((3, 3, 64, 64), np.float32))
    assert [o.shape[0] for o in outs] == [3, 3]


def test_mindir_export_roundtrip(tmp_path: Path) -> None:
    import mindspore as ms

    net = tiny()
    path = export_mindir(net, tmp_path / "model.mindir", 64)
    assert path == tmp_path / "model.mindir" and path.stat().st_size > 0
    images = np.random.default_rng(5).standard_normal((1, 3, 64, 64)).astype(np.float32)
    got = nn.GraphCell(ms.load(str(path)))(Tensor(images))
    for g, w in zip(got, mindspore_outputs(net, images)):
        np.testing.assert_allclose(g.asnumpy(), w, rtol=1e-5, atol=1e-6)


@pytest.fixture
def float_checkpoint(tmp_path: Path) -> tuple[Path, nn.Cell]:
    from yoloqat.core.config import load_config
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import save_checkpoint

    cfg = load_config("yolov3_darknet53")
    cfg["model"]["num_classes"] = NUM_CLASSES
    cfg["model"]["backbone"]["width"] = WIDTH
    cfg["model"]["backbone"]["blocks"] = list(BLOCKS)
    cfg["model"]["head"]["width"] = WIDTH
    net = pipeline.build_model(cfg)
    randomize_bn(net, 6)
    net.set_train(False)
    meta = {"quantized": False, "config": copy.deepcopy(cfg), "epoch": 1}
    return save_checkpoint(net, tmp_path / "float.ckpt", meta), net


def test_cli_export_onnx_and_mindir(tmp_path: Path, float_checkpoint) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app

    ckpt, net = float_checkpoint
    runner = CliRunner()
    out = tmp_path / "out" / "m.onnx"
    res = runner.invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--format",
            "onnx",
            "--testing_shape",
            "64",
            "--output",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    images = np.random.default_rng(7).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for g, w in zip(OnnxPredictor(out)(images), mindspore_outputs(net, images)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    res = runner.invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--format",
            "mindir",
            "--testing-shape",
            "64",
            "--output",
            str(tmp_path / "m.mindir"),
        ],
    )
    assert res.exit_code == 0, res.output
    assert Path(res.stdout.strip().splitlines()[-1]).is_file()


def test_cli_int8_with_float_checkpoint_is_a_clear_error(tmp_path: Path, float_checkpoint) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app

    ckpt, _ = float_checkpoint
    res = CliRunner().invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(ckpt),
            "--format",
            "onnx",
            "--int8",
            "--testing_shape",
            "64",
            "--output",
            str(tmp_path / "q.onnx"),
        ],
    )
    assert res.exit_code == CheckpointError.exit_code == 1
    assert "(--int8) needs a quantized (QAT or PTQ) checkpoint" in res.output
    assert "float checkpoint" in res.output
    assert not (tmp_path / "q.onnx").exists()
    bad = CliRunner().invoke(app, ["export", "--checkpoint", str(ckpt), "--format", "tflite"])
    assert bad.exit_code == 2 and "--format 'tflite' is not valid" in bad.output


# -- int8 QDQ ------------------------------------------------------------------------------------
_QUANTIZED: dict[tuple[str, str], nn.Cell] = {}


def quantized_tiny(activation: str, padding: str):
    """A tiny QAT network whose observers were set by training-mode forwards (cached:
    building one costs a few PYNATIVE forwards; tests only read it)."""
    from yoloqat.plugins.int8_qat import int8_qat

    key = (activation, padding)
    if key not in _QUANTIZED:
        net = int8_qat(ema_decay=0.5).apply(tiny(activation, padding))
        rng = np.random.default_rng(100)
        net.set_train(True)
        for _ in range(3):
            net(Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32)))
        net.set_train(False)
        _QUANTIZED[key] = net
    return _QUANTIZED[key]


def ort_session(path: Path, level: str, optimized: Path | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.intra_op_num_threads = 1
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize(
    ("activation", "padding", "dtype"),
    [("relu", "symmetric", "uint8"), ("leaky", "same", "uint8"), ("leaky", "same", "int8")],
)
def test_int8_qdq_matches_fake_quant_network(
    tmp_path: Path, activation: str, padding: str, dtype: str
) -> None:
    from collections import Counter

    net = quantized_tiny(activation, padding)
    images = np.random.default_rng(8).standard_normal((2, 3, 64, 64)).astype(np.float32)
    want = mindspore_outputs(net, images)
    path = export_onnx(
        net, tmp_path / "q.onnx", input_size=64, batch=None, int8=True, activation_dtype=dtype
    )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    ops = Counter(n.op_type for n in model.graph.node)
    # an int8 weight per conv; fake quants: one per ReLU conv, two per LeakyReLU conv, one per
    # add, plus the two resize outputs kept on their input's grid
    relu_convs = BACKBONE_CONVS if activation == "relu" else 0
    leaky_convs = BACKBONE_CONVS + HEAD_CONV_BLOCKS - relu_convs
    assert ops["QuantizeLinear"] == relu_convs + 2 * leaky_convs + ADDS + 2
    # the two convs after the head's Concats split in one conv per concatenated input
    assert ops["Conv"] == CONVS + 2
    assert ops["DequantizeLinear"] == CONVS + 2 + ops["QuantizeLinear"]
    weights = {i.name: i for i in model.graph.initializer if "weight_int8" in i.name}
    assert len(weights) == CONVS + 2
    assert all(w.data_type == onnx.TensorProto.INT8 for w in weights.values())
    act_zp = [
        i
        for i in model.graph.initializer
        if i.name.endswith("_zero_point") and "weight" not in i.name
    ]
    expected = onnx.TensorProto.INT8 if dtype == "int8" else onnx.TensorProto.UINT8
    assert act_zp and all(z.data_type == expected and list(z.dims) == [] for z in act_zp)

    # The QDQ graph computed as written (no fusion) is the fake-quant network's arithmetic:
    # equal but for the few activations whose float conv result sits on a rounding boundary
    # and lands one code apart (MindSpore's and ONNX Runtime's float convs differ by ~1e-7).
    plain = ort_session(path, "ORT_DISABLE_ALL").run(None, {"images": images})
    for g, w in zip(plain, want):
        same = np.isclose(g, w, rtol=1e-5, atol=1e-5)
        assert same.mean() > 0.98, f"only {same.mean():.3%} of outputs match"
        assert float(np.abs(g - w).max()) < 0.15

    # ONNX Runtime's int8 kernels run it (fused QLinear ops) and stay close: they
    # accumulate exactly in int32 where MindSpore rounds in float32, so a few values
    # land one code apart.
    optimized = tmp_path / "q_opt.onnx"
    fused = ort_session(path, "ORT_ENABLE_EXTENDED", optimized).run(None, {"images": images})
    if dtype == "uint8":  # ONNX Runtime's CPU fast path: uint8 activations, int8 weights
        fused_ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
        # all convs but the first, the four parts of the two split convs after a Concat
        # (their sums are float) and the three output convs
        assert fused_ops["QLinearConv"] == CONVS + 2 - 8
        assert fused_ops["QLinearAdd"] == ADDS
        assert fused_ops["QLinearLeakyRelu"] == leaky_convs
    diffs = [np.abs(g - w) for g, w in zip(fused, want)]
    assert max(float(d.max()) for d in diffs) < 0.15
    assert max(float(d.mean()) for d in diffs) < 5e-3


def test_int8_float_network_and_quantized_without_int8(tmp_path: Path) -> None:
    net = quantized_tiny("relu", "symmetric")
    with pytest.raises(UsageError, match=r"quantized.*int8=True"):
        export_onnx(net, tmp_path / "q.onnx", input_size=64)


def test_quantized_network_with_fake_quant_off_exports_its_float_graph(tmp_path: Path) -> None:
    from yoloqat.plugins.int8_qat.quantizer import set_fake_quant

    net = quantized_tiny("leaky", "same")
    images = np.random.default_rng(3).standard_normal((1, 3, 64, 64)).astype(np.float32)
    set_fake_quant(net, False)
    try:
        want = mindspore_outputs(net, images)
        path = export_onnx(net, tmp_path / "f.onnx", input_size=64)
    finally:
        set_fake_quant(net, True)
    model = onnx.load(str(path))
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
    got = ort_session(path, "ORT_DISABLE_ALL").run(None, {"images": images})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_int8_weights_are_the_fake_quantized_weights(tmp_path: Path) -> None:
    from onnx import numpy_helper

    from yoloqat.core.quant.reference import fake_quant

    net = quantized_tiny("relu", "symmetric")
    cell = net.backbone.layer1[0].conv2
    folded, _ = cell.folded_weight_bias()
    fq = cell.weight_quant
    want = fake_quant(
        folded, fq.min_value.asnumpy(), fq.max_value.asnumpy(), symmetric=True, axis=0
    )
    model = onnx.load(str(export_onnx(net, tmp_path / "q.onnx", input_size=64, int8=True)))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prefix = "backbone.layer1.0.conv2.conv."
    codes = inits[prefix + "weight_int8"].astype(np.float32)
    scale = inits[prefix + "weight_scale"]
    assert scale.shape == (folded.shape[0],)  # per output channel
    assert not inits[prefix + "weight_zero_point"].any()  # symmetric: zero point 0
    assert codes.min() >= -128 and codes.max() <= 127
    np.testing.assert_array_equal(codes * scale[:, None, None, None], want)


def test_int8_narrow_range_and_fewer_bits(tmp_path: Path) -> None:
    from yoloqat.plugins.int8_qat import int8_qat

    net = int8_qat(num_bits=6, narrow_range=True, ema_decay=0.5).apply(tiny("leaky", "same", 9))
    rng = np.random.default_rng(9)
    net.set_train(True)
    for _ in range(2):
        net(Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32)))
    net.set_train(False)
    images = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    path = export_onnx(net, tmp_path / "q6.onnx", input_size=64, int8=True)
    plain = ort_session(path, "ORT_DISABLE_ALL").run(None, {"images": images})
    for g, w in zip(plain, mindspore_outputs(net, images)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_cli_export_int8_from_qat_checkpoint(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app
    from yoloqat.core.config import load_config
    from yoloqat.engine.checkpoints import save_checkpoint

    net = quantized_tiny("relu", "symmetric")
    cfg = load_config("yolov3_darknet53_quant")
    cfg["model"]["num_classes"] = NUM_CLASSES
    cfg["model"]["backbone"]["width"] = WIDTH
    cfg["model"]["backbone"]["blocks"] = list(BLOCKS)
    cfg["model"]["head"]["width"] = WIDTH
    ckpt = save_checkpoint(net, tmp_path / "qat.ckpt", {"quantized": True, "config": cfg})
    runner = CliRunner()
    out = tmp_path / "q.onnx"
    args = ["export", "--checkpoint", str(ckpt), "--testing_shape", "64", "--output", str(out)]
    res = runner.invoke(app, args)  # a quantized checkpoint exports int8 by itself
    assert res.exit_code == 0 and "exported int8 QDQ ONNX model" in res.output, res.output
    assert json_meta(out)["int8"] == "true"
    res = runner.invoke(app, [*args, "--int8"])
    assert res.exit_code == 0, res.output
    assert res.stdout.strip().splitlines()[-1] == str(out)
    images = np.random.default_rng(10).standard_normal((1, 3, 64, 64)).astype(np.float32)
    plain = ort_session(out, "ORT_DISABLE_ALL").run(None, {"images": images})
    for g, w in zip(plain, mindspore_outputs(net, images)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def json_meta(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_dynamic_batch_keeps_the_leading_1_of_constant_reshapes(tmp_path: Path) -> None:
    """A decode that reshapes its grid to (1, H * W, 1) (a constant, not the batch): the
    dynamic-batch export must leave that 1 alone and still follow the images' batch."""
    from mindspore import ops

    from yoloqat.core.detector import Detector
    from yoloqat.plugins.darknet53 import darknet53
    from yoloqat.plugins.onnxruntime.session import OnnxPredictor

    class GridDecode(nn.Cell):  # the PointDecode of docs/plugins.md
        def construct(self, outputs, input_h, input_w):
            raw = outputs[0]
            n, k, h, w = raw.shape
            raw = ops.transpose(ops.reshape(raw, (n, k, h * w)), (0, 2, 1))
            gx = ops.broadcast_to(ops.arange(w).astype(raw.dtype).reshape(1, w), (h, w)) + 0.5
            gy = ops.broadcast_to(ops.arange(h).astype(raw.dtype).reshape(h, 1), (h, w)) + 0.5
            gx, gy = gx.reshape(1, h * w), gy.reshape(1, h * w)  # reshapes of constants
            d = ops.exp(raw[..., 0:4]) * 32.0
            cx = (gx * 32.0 + (d[..., 2] - d[..., 0]) / 2) / input_w
            cy = (gy * 32.0 + (d[..., 3] - d[..., 1]) / 2) / input_h
            bw, bh = (d[..., 0] + d[..., 2]) / input_w, (d[..., 1] + d[..., 3]) / input_h
            boxes = ops.concat((cx[..., None], cy[..., None], bw[..., None], bh[..., None]), -1)
            return boxes, ops.sigmoid(raw[..., 4:])

    class OneLevel(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.num_classes, self.strides, self.output_format = 2, (32,), "grid_test"
            self.in_indices = (2,)
            self.decode = GridDecode()
            self.conv = nn.Conv2d(64, 6, 1, has_bias=True)

        def construct(self, c5):
            return (self.conv(c5),)

    net = Detector(darknet53(width=0.0625, blocks=(1, 1, 1, 1, 1)), OneLevel())
    net.set_train(False)
    images = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    path = export_onnx(net, tmp_path / "grid.onnx", input_size=64, batch=None)
    got = OnnxPredictor(path, threads=1)(images)
    for g, w in zip(got, mindspore_outputs(net, images)):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
