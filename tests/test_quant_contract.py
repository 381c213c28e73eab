"""The quantizer contract end to end: pattern quantization of plain MindSpore cells, int8
export through the ExportPlan, PTQ calibration, refusal of float convs (exit 4)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import mindspore as ms
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from mindspore import Tensor, nn, ops

from yoloqat import create
from yoloqat.core.contracts.quantizer import Quantizer
from yoloqat.core.detector import Detector
from yoloqat.core.errors import PluginError
from yoloqat.deploy.onnx_export import export_onnx
from yoloqat.engine.pipeline import quantize

REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 2


def conv_bn_silu(cin: int, cout: int, stride: int = 1, group: int = 1) -> nn.SequentialCell:
    return nn.SequentialCell(
        [
            nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, group=group),
            nn.BatchNorm2d(cout),
            nn.SiLU(),
        ]
    )


class Inverted(nn.Cell):
    """Depthwise + pointwise with a residual written in construct (no Add cell)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = conv_bn_silu(c, c, group=c)
        self.pw = nn.Conv2d(c, c, 1, has_bias=True)  # stand-alone: no BN pattern
        self.bn = nn.BatchNorm2d(c)

    def construct(self, x):
        return x + self.bn(self.pw(self.dw(x)))


class PlainBackbone(nn.Cell):
    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_silu(3, 8, stride=2)
        self.s8 = nn.SequentialCell([conv_bn_silu(8, 8, stride=2), conv_bn_silu(8, 16, 2)])
        self.b8 = Inverted(16)
        self.s16 = conv_bn_silu(16, 24, stride=2)
        self.s32 = conv_bn_silu(24, 32, stride=2)
        self.out_channels = (16, 24, 32)
        self.strides = (8, 16, 32)

    def construct(self, x):
        c3 = self.b8(self.s8(self.stem(x)))
        c4 = self.s16(c3)
        return c3, c4, self.s32(c4)


def plain_detector(seed: int = 0) -> Detector:
    ms.set_seed(seed)
    head = create(
        "head", "yolov3_head", in_channels=(16, 24, 32), num_classes=NUM_CLASSES, width=0.0625
    )
    net = Detector(PlainBackbone(), head)
    rng = np.random.default_rng(seed)
    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            n = cell.gamma.shape[0]
            cell.gamma.set_data(Tensor(rng.uniform(0.5, 1.5, n).astype(np.float32)))
            cell.moving_variance.set_data(Tensor(rng.uniform(0.5, 2.0, n).astype(np.float32)))
            cell.moving_mean.set_data(Tensor(rng.uniform(-0.2, 0.2, n).astype(np.float32)))
    return net


def conv_weight_kinds(path: Path) -> Counter:
    """Per Conv node: 'int8' when its weight is DequantizeLinear of an INT8 initializer."""
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    kinds: Counter = Counter()
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        src = producers.get(node.input[1])
        ok = (
            src is not None
            and src.op_type == "DequantizeLinear"
            and inits[src.input[0]].data_type == onnx.TensorProto.INT8
        )
        kinds["int8" if ok else "float"] += 1
    return kinds


def plain_outputs(path: Path, images: np.ndarray) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": images})


def warm(net: nn.Cell, images: np.ndarray, steps: int = 2) -> None:
    net.set_train(True)
    for _ in range(steps):
        net(Tensor(images))
    net.set_train(False)


@pytest.mark.parametrize("name", ["int8_qat", "int8_ptq"])
def test_quantizers_conform_to_the_protocol(name: str) -> None:
    q = create("quantizer", name)
    assert isinstance(q, Quantizer)


def test_plain_cells_are_quantized_by_pattern_and_export_int8(tmp_path: Path) -> None:
    net = plain_detector()
    q = create("quantizer", "int8_qat", ema_decay=0.5)
    net = quantize(net, q, "int8_qat")
    summary = q.summary(net)
    # 6 backbone convs + 23 head convs + 1 stand-alone pointwise conv
    assert summary.quantized_convs == summary.total_convs == 30
    assert not summary.unsupported
    kinds = Counter(layer.kind for layer in summary.quantized)
    assert kinds["conv"] == 27 and kinds["output_conv"] == 3
    images = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    warm(net, images)
    want = [o.asnumpy() for o in net(Tensor(images))]
    path = export_onnx(net, tmp_path / "q.onnx", input_size=64, batch=None, int8=True)
    # 30 convs, the one over the head's Concat split into one per input (+ Add, exact)
    assert conv_weight_kinds(path) == Counter({"int8": 31})
    for got, ref in zip(plain_outputs(path, images), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_ptq_calibrates_and_exports_the_same_arithmetic(tmp_path: Path) -> None:
    net = plain_detector(1)
    q = create("quantizer", "int8_ptq", method="minmax")
    net = quantize(net, q, "int8_ptq")
    rng = np.random.default_rng(2)
    batches = [rng.standard_normal((2, 3, 64, 64)).astype(np.float32) for _ in range(2)]
    assert q.calibrate(net, batches) == 4
    stem = net.backbone.stem[0]
    # minmax: the stored range covers every calibration value of the stem's output
    lo, hi = stem.act_quant.min_value.asnumpy()[0], stem.act_quant.max_value.asnumpy()[0]
    assert lo < 0 < hi  # SiLU outputs reach slightly below 0
    images = rng.standard_normal((1, 3, 64, 64)).astype(np.float32)
    want = [o.asnumpy() for o in net(Tensor(images))]
    path = export_onnx(net, tmp_path / "p.onnx", input_size=64, int8=True)
    assert conv_weight_kinds(path) == Counter({"int8": 31})  # one conv split over a Concat
    for got, ref in zip(plain_outputs(path, images), want):
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


class OddConv(nn.Conv2d):
    """A conv subclass with its own construct: no pattern the quantizer may assume."""

    def construct(self, x):
        return ops.relu(super().construct(x))


def test_unsupported_conv_is_reported_and_int8_export_refused(tmp_path: Path) -> None:
    net = plain_detector(2)
    net.backbone.s32[0] = OddConv(24, 32, 3, stride=2, pad_mode="pad", padding=1)
    q = create("quantizer", "int8_qat")
    net = quantize(net, q, "int8_qat")
    summary = q.summary(net)
    assert summary.unsupported == ["backbone.s32.0"]
    assert (summary.quantized_convs, summary.total_convs) == (29, 30)
    with pytest.raises(PluginError, match=r"1 conv\(s\) are not quantized.*backbone\.s32\.0") as e:
        export_onnx(net, tmp_path / "q.onnx", input_size=64, int8=True)
    assert e.value.exit_code == 4
    assert not (tmp_path / "q.onnx").exists()
    # skipping it on purpose is allowed, and it stays float in the file
    net2 = plain_detector(2)
    net2.backbone.s32[0] = OddConv(24, 32, 3, stride=2, pad_mode="pad", padding=1)
    q2 = create("quantizer", "int8_qat", skip_layers=["backbone.s32.*"])
    net2 = quantize(net2, q2, "int8_qat")
    assert q2.summary(net2).skipped == ["backbone.s32.0"]
    path = export_onnx(net2, tmp_path / "s.onnx", input_size=64, int8=True)
    assert conv_weight_kinds(path) == Counter({"int8": 30, "float": 1})  # + the split conv


PLUGIN = '''
from mindspore import nn, ops
from yoloqat import hookimpl


class OddConv(nn.Conv2d):
    def construct(self, x):
        return ops.relu(super().construct(x))


class Odd(nn.Cell):
    def __init__(self):
        super().__init__()
        self.c3 = nn.SequentialCell([nn.Conv2d(3, 8, 3, stride=8), nn.BatchNorm2d(8), nn.ReLU()])
        self.c4 = OddConv(8, 8, 3, stride=2)
        self.c5 = nn.SequentialCell([nn.Conv2d(8, 8, 3, stride=2), nn.BatchNorm2d(8), nn.ReLU()])
        self.out_channels = (8, 8, 8)
        self.strides = (8, 16, 32)

    def construct(self, x):
        c3 = self.c3(x)
        c4 = self.c4(c3)
        return c3, c4, self.c5(c4)


def odd_backbone():
    """A backbone with a conv subclass the quantizer cannot see into."""
    return Odd()


@hookimpl
def yoloqat_backbones():
    return {"odd_backbone": odd_backbone}
'''


def test_cli_export_int8_refuses_float_convs_with_exit_4(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "odd_plugin").mkdir(parents=True)
    (site / "odd_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "odd_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: odd-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[yoloqat.plugins]\nodd = odd_plugin\n")
    script = textwrap.dedent(
        """
        import sys
        from yoloqat.core import events
        from yoloqat.core.config import apply_overrides, load_config
        from yoloqat.engine import pipeline
        from yoloqat.engine.checkpoints import save_checkpoint
        cfg = apply_overrides(load_config("synth_tiny_quant"), [
            "model.backbone={name: odd_backbone}", "model.num_classes=2",
            "model.head.width=0.0625"])
        events.subscribe(lambda e: print(e.data.get("message"), file=sys.stderr))
        net = pipeline.build_model(cfg)
        net = pipeline.quantize(net, pipeline.build_quantizer(cfg), "int8_qat")
        save_checkpoint(net, sys.argv[1], {"quantized": True, "config": cfg})
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(REPO)]))
    ckpt = tmp_path / "odd.ckpt"
    made = subprocess.run(
        [sys.executable, "-c", script, str(ckpt)], capture_output=True, text=True, env=env
    )
    assert made.returncode == 0, made.stderr
    # 2 of the backbone's 3 convs and the head's 23
    assert "int8_qat quantized 25/26 convs" in made.stderr and "backbone.c4" in made.stderr
    res = subprocess.run(
        [sys.executable, "-m", "yoloqat", "export", "--checkpoint", str(ckpt), "--int8",
         "--testing_shape", "64", "--output", str(tmp_path / "odd.onnx")],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == 4, res.stderr
    assert "not quantized and not in skip_layers: backbone.c4" in res.stderr
    assert not (tmp_path / "odd.onnx").exists()


def test_cli_calibrate_then_export_and_eval(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from yoloqat.cli import app
    from yoloqat.core.config import apply_overrides, load_config
    from yoloqat.data.synth import make_synthetic_coco
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.training.trainer import Trainer

    data = tmp_path / "data"
    make_synthetic_coco(data, train=8, val=4, size=64, seed=5, num_classes=2)
    cfg = apply_overrides(
        load_config("synth_tiny"),
        [
            f"dataset.data_dir={data}",
            f"train.ckpt_path={tmp_path / 'runs'}",
            "model.num_classes=2",
            "model.backbone.width=0.0625",
            "model.backbone.blocks=[1, 1, 1, 1, 1]",
            "model.head.width=0.0625",
            "data.training_shape=64",
            "data.multi_scale=[64]",
            "eval.testing_shape=64",
            "train.per_batch_size=4",
            "train.max_epoch=1",
            "scheduler.T_max=1",
            "scheduler.warmup_epochs=0",
        ],
    )
    float_ckpt = Trainer(cfg, run_dir=tmp_path / "float").run().checkpoints[-1]
    runner = CliRunner()
    ptq = tmp_path / "ptq.ckpt"
    res = runner.invoke(
        app,
        ["calibrate", "--checkpoint", str(float_ckpt), "--images", "4", "--output", str(ptq)],
    )
    assert res.exit_code == 0, res.output
    # one residual block per stage: 16 backbone conv units, 20 in the neck and heads, 3 outputs
    convs = 16 + 20 + 3
    assert f"calibrated int8_ptq on 4 images: {convs}/{convs} convs int8" in res.output
    _, meta = read_checkpoint(ptq)
    assert meta["quantized"] and meta["config"]["quantizer"]["name"] == "int8_ptq"
    onnx_path = tmp_path / "ptq.onnx"
    res = runner.invoke(
        app, ["export", "--checkpoint", str(ptq), "--int8", "--output", str(onnx_path)]
    )
    assert res.exit_code == 0, res.output
    # the 2 convs over the head's Concats split into one per input (exact)
    assert conv_weight_kinds(onnx_path) == Counter({"int8": convs + 2})
    res = runner.invoke(app, ["eval", "--onnx", str(onnx_path), "--data_dir", str(data)])
    assert res.exit_code == 0, res.output
    assert "Average Precision" in res.output
    (tmp_path / "afile").write_text("x")
    blocked = runner.invoke(
        app,
        ["calibrate", "--checkpoint", str(float_ckpt), "--output", str(tmp_path / "afile" / "p")],
    )
    assert blocked.exit_code == 3 and "--output" in blocked.output
    again = runner.invoke(app, ["calibrate", "--checkpoint", str(ptq)])
    assert again.exit_code == 1 and "already quantized" in again.output


def test_disabling_int8_qat_removes_it_everywhere() -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run(
        [sys.executable, "-m", "yoloqat", "--disable-plugin", "int8_qat", "list", "quantizer",
         "--json"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    names = {c["name"] for c in json.loads(res.stdout)}
    assert "int8_qat" not in names and "int8_ptq" in names
    res = subprocess.run(
        [sys.executable, "-m", "yoloqat", "--disable-plugin", "int8_qat", "config", "show",
         "synth_tiny_quant"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == 3
    assert (
        "unknown quantizer 'int8_qat'" in res.stderr and "blocked plugins: int8_qat" in res.stderr
    )
    # nothing outside the plugin imports it: deploy, engine and cli import without it
    code = (
        "import sys, yoloqat.deploy.onnx_export, yoloqat.engine.report, yoloqat.cli.export, "
        "yoloqat.cli.quant_report; "
        "print(any(m.startswith('yoloqat.plugins.int8_qat') for m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.stdout.strip() == "False", res.stderr


class TwoRuns(nn.Cell):
    """A nested SequentialCell with two conv + BN + activation runs (a plugin's stage)."""

    def __init__(self) -> None:
        super().__init__()

        def run(cin: int, cout: int, act: nn.Cell) -> list[nn.Cell]:
            return [nn.Conv2d(cin, cout, 3, has_bias=False), nn.BatchNorm2d(cout), act]

        self.stage = nn.SequentialCell([*run(3, 4, nn.ReLU()), *run(4, 4, nn.SiLU())])

    def construct(self, x):
        return self.stage(x)


def test_two_runs_in_one_nested_sequential_cell_are_both_quantized() -> None:
    class Outer(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = TwoRuns()

        def construct(self, x):
            return self.backbone(x)

    net = Outer()
    names = {p.name for p in net.get_parameters()}
    quantizer = create("quantizer", "int8_qat")
    quantizer.apply(net)
    summary = quantizer.summary(net)
    assert summary.quantized_convs == 2 and not summary.unsupported
    after = {p.name for p in net.get_parameters()}
    assert names <= after  # every float parameter keeps its name: float checkpoints load
    assert "backbone.stage.3.weight" in after and "backbone.stage.4.gamma" in after
