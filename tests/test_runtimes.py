"""Runtimes (``yoloqat_runtimes``): the contract, ONNX Runtime vs OpenVINO on the same tiny
float and int8 models, OpenVINO's op statistics, ``--runtime`` on the command line, and the
error when ``openvino`` is not installed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli_misc import _calibrate_bn, _own_detections_as_ground_truth, _val_images
from test_export import tiny
from test_registry import make_dist
from tiny import tiny_cfg
from typer.testing import CliRunner

from yoloqat.cli import app
from yoloqat.core.errors import ConfigError, PluginError
from yoloqat.data.synth import make_synthetic_coco
from yoloqat.engine.runtimes import open_model, runtime_names
from yoloqat.registry import Registry

pytest.importorskip("openvino")

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def _calibrated_int8(seed: int = 0):
    """The tiny network quantized by int8_qat, observers set by training-mode forwards."""
    from mindspore import Tensor

    from yoloqat.plugins.int8_qat import int8_qat

    net = int8_qat().apply(tiny(seed=seed))
    rng = np.random.default_rng(seed)
    net.set_train(True)
    for _ in range(4):
        net(Tensor(rng.standard_normal((2, 3, SIZE, SIZE)).astype(np.float32)))
    net.set_train(False)
    return net


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """Tiny float, int8 (dynamic batch), int8 without the Concat split (batch 1) and int8
    with the seed's input quantization models."""
    import mindspore as ms

    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.deploy.qdq import SEED_INPUT_QUANT

    ms.set_context(mode=ms.PYNATIVE_MODE)
    out = tmp_path_factory.mktemp("runtimes")
    q = _calibrated_int8()
    return {
        "float": export_onnx(tiny(), out / "float.onnx", input_size=SIZE, batch=None),
        "int8": export_onnx(q, out / "int8.onnx", input_size=SIZE, batch=None, int8=True),
        "int8_nosplit": export_onnx(
            q, out / "int8_nosplit.onnx", input_size=SIZE, batch=1, int8=True, split_concat=False
        ),
        "int8_input": export_onnx(
            q, out / "int8_input.onnx", input_size=SIZE, int8=True, input_quant=SEED_INPUT_QUANT
        ),
    }


def _images(n: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_bundled_runtimes_conform(models) -> None:
    from yoloqat.plugins.onnxruntime import onnxruntime
    from yoloqat.plugins.openvino import openvino
    from yoloqat.testing import check_runtime

    assert {"onnxruntime", "openvino"} <= set(runtime_names(Registry(entry_points=False)))
    for factory in (onnxruntime, openvino):
        for path in (models["float"], models["int8_nosplit"]):  # dynamic and fixed batch
            model = check_runtime(factory, path=path)
            assert model.name == factory.__name__
            assert model.input_size == SIZE and model.metadata["input_size"] == str(SIZE)
    ov = open_model(models["int8"], "openvino", threads=1)
    ort = open_model(models["int8"], threads=1)
    assert ov.metadata == ort.metadata and ov.metadata["int8"] == "true"
    assert (ov.batch, ort.batch) == (None, None)


def test_openvino_matches_onnxruntime_on_the_float_model(models) -> None:
    images = _images(3)
    ort = open_model(models["float"], threads=1)(images)
    ov = open_model(models["float"], "openvino", threads=1)(images)
    # both compute in float32 (OpenVINO is told f32, not its bf16 default on this CPU):
    # they differ only by summation order
    for a, b in zip(ort, ov):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=1e-5)


def test_openvino_matches_onnxruntime_on_the_int8_model(models) -> None:
    images = _images(3)
    ort = open_model(models["int8"], threads=1)(images)
    ov = open_model(models["int8"], "openvino", threads=1)(images)
    nosplit = open_model(models["int8_nosplit"], threads=1)(images)
    for a, b in zip(ort, nosplit):  # splitting the route convs is exact
        np.testing.assert_allclose(b, a, atol=1e-5)
    # Both run the same int8 codes but round in different places (ONNX Runtime requantizes
    # the int32 sums in one step, OpenVINO dequantizes to f32 and rounds in FakeQuantize), so
    # a value on a rounding boundary lands one code apart and shifts what follows it. Most
    # outputs agree to 1e-3; none may be further apart than the bound the end-to-end check
    # allows between an int8 engine and the fake-quant network (0.15). An export or
    # scale error moves nearly every output far beyond that.
    diffs = np.concatenate([np.abs(a - b).ravel() for a, b in zip(ort, ov)])
    assert float(np.mean(diffs <= 1e-3)) >= 0.5, float(np.mean(diffs <= 1e-3))
    assert float(diffs.max()) <= 0.15
    assert float(np.abs(ort[1] - ov[1]).mean()) <= 0.01  # the scores


def test_every_conv_runs_int8_in_openvino(models) -> None:
    import onnx

    from yoloqat.deploy.openvino_stats import int8_op_stats

    onnx_convs = sum(n.op_type == "Conv" for n in onnx.load(str(models["int8"])).graph.node)
    # with the seed's input quantization every conv runs in int8
    stats = int8_op_stats(models["int8_input"], threads=1)
    assert stats["convolutions"] == onnx_convs
    assert stats["int8_convolutions"] == stats["convolutions"], stats["float_convolutions"]
    # the default export keeps the image float (exact): all but the first conv run in int8
    default = int8_op_stats(models["int8"], threads=1)
    assert default["convolutions"] == onnx_convs
    assert default["int8_convolutions"] == onnx_convs - 1, default["float_convolutions"]
    # without the split, the two convs after the head's Concats fall back to float as well
    before = int8_op_stats(models["int8_nosplit"], threads=1)
    assert before["int8_convolutions"] == before["convolutions"] - 3
    assert before["convolutions"] == onnx_convs - 2
    float_stats = int8_op_stats(models["float"], threads=1)
    assert float_stats["int8_convolutions"] == 0 and float_stats["convolutions"] > 0


BROKEN = '''
from pathlib import Path

from yoloqat import hookimpl


class NoSize:
    name = "nosize"
    batch = None
    metadata = {}

    def __init__(self, path):
        self.path = Path(path)

    def __call__(self, images):
        return []


def nosize(*, path: str, threads: int | None = None):
    """A runtime without input_size."""
    return NoSize(path)


@hookimpl
def yoloqat_runtimes():
    return {"nosize": nosize}
'''


def test_a_broken_third_party_runtime_is_a_plugin_error(tmp_path: Path, models) -> None:
    make_dist(tmp_path, "yoloqat-nosize", "yq_nosize", BROKEN)
    sys.path.insert(0, str(tmp_path))
    try:
        reg = Registry()
        want = r"runtime 'nosize' from plugin 'yq_nosize'.*missing attribute 'input_size'"
        with pytest.raises(PluginError, match=want):
            open_model(models["float"], "nosize", registry=reg)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("yq_nosize", None)


def test_unknown_runtime_is_a_config_error(models) -> None:
    with pytest.raises(ConfigError, match=r"unknown runtime 'openvin'\. Did you mean 'openvino'"):
        open_model(models["float"], "openvin")
    res = CliRunner().invoke(app, ["eval", "--onnx", str(models["float"]), "--runtime", "x"])
    assert res.exit_code == 3, res.output
    assert "Available: " in res.output and "openvino" in res.output


def test_missing_openvino_is_a_clear_error(models, tmp_path: Path) -> None:
    import cv2

    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.full((SIZE, SIZE, 3), 127, np.uint8))
    # a child interpreter where `import openvino` fails as if it were not installed
    blocker = "import sys; sys.modules['openvino'] = None\n"
    code = blocker + (
        "from yoloqat.cli import main\n"
        f"sys.argv = ['yoloqat', 'predict', {str(image)!r}, '--onnx', "
        f"{str(models['float'])!r}, '--runtime', 'openvino', '--output', {str(tmp_path)!r}]\n"
        "main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "GLOG_v": "3"}
    env.pop("YOLOQAT_DEBUG", None)
    res = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "running with OpenVINO needs the 'openvino' package" in res.stderr
    assert 'pip install "yoloqat[openvino]"' in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_eval_and_predict_with_openvino_agree_with_onnxruntime(tmp_path: Path) -> None:
    import mindspore as ms

    from yoloqat.core.contracts.quantizer import set_fake_quant
    from yoloqat.deploy.onnx_export import export_onnx
    from yoloqat.engine import pipeline

    synth = tmp_path / "synth"
    make_synthetic_coco(synth, train=2, val=3, size=SIZE, seed=6, num_classes=3)
    cfg = tiny_cfg(synth, tmp_path, quant=True)
    ms.set_seed(3)
    net = pipeline.build_model(copy.deepcopy(cfg))
    # BN statistics on the float network (a PYNATIVE QAT forward costs 20 float ones), then
    # a few QAT forwards set the observers
    _calibrate_bn(net, _val_images(synth))
    net = pipeline.quantize(net, pipeline.build_quantizer(cfg), cfg["quantizer"]["name"])
    gt = _own_detections_as_ground_truth(net, synth, tmp_path, calibrate_steps=3)
    int8 = export_onnx(net, tmp_path / "int8.onnx", input_size=SIZE, batch=None, int8=True)
    set_fake_quant(net, False)
    fp32 = export_onnx(net, tmp_path / "float.onnx", input_size=SIZE, batch=None)
    data = ["--images", str(synth / "val"), "--annotations", str(gt)]
    runner = CliRunner()
    stats = {}
    for name, path in (("float", fp32), ("int8", int8)):
        for runtime in ("onnxruntime", "openvino"):
            out = tmp_path / f"{name}_{runtime}"
            args = ["eval", "--onnx", str(path), "--runtime", runtime, *data]
            res = runner.invoke(app, [*args, "--output", str(out)])
            assert res.exit_code == 0, res.output
            stats[name, runtime] = json.loads(next(out.glob("*/eval.json")).read_text())["stats"]
    assert stats["int8", "onnxruntime"]["AP50"] > 0.5, "the ground truth is the network's own"
    for key in ("AP", "AP50"):  # float: the same numbers up to float32 summation order
        assert abs(stats["float", "openvino"][key] - stats["float", "onnxruntime"][key]) <= 0.005
    # int8 on this untrained 1/16-width network: its activations sit on few codes, so the
    # rounding differences between the engines (see the int8 output test) move single
    # detections, each worth points of AP on 3 images (measured: 0.924 vs 0.856). An
    # export or scale error drops the AP to near 0; the 0.5-point check belongs on a trained
    # model (the demo's int8 model).
    for key in ("AP", "AP50"):
        assert abs(stats["int8", "openvino"][key] - stats["int8", "onnxruntime"][key]) <= 0.1
    args = ["predict", str(synth / "val"), "--onnx", str(int8), "--runtime", "openvino"]
    # an untrained network scores low (the ground truth is its top detections, any score)
    args += ["--score_threshold", "0.001", "--json"]
    res = runner.invoke(app, [*args, "--output", str(tmp_path / "pred")])
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert len(report) == 3 and any(r["detections"] for r in report)


def test_openvino_compiles_without_the_mindspore_isa_cap(monkeypatch) -> None:
    """The AVX2 cap yoloqat sets for MindSpore is lifted only while OpenVINO compiles."""
    import os

    from yoloqat.core.device import ISA_CAP, uncapped_isa

    monkeypatch.setenv(ISA_CAP, "AVX2")
    with uncapped_isa():
        assert ISA_CAP not in os.environ
    assert os.environ[ISA_CAP] == "AVX2"
    with pytest.raises(RuntimeError), uncapped_isa():  # put back after an error too
        raise RuntimeError("compile failed")
    assert os.environ[ISA_CAP] == "AVX2"
