"""The example third-party plugin, installed with pip, end to end through the CLI.

Its ``mobile_lite`` backbone and its FCOS-style family (``fcos_lite`` head with its own
float decode, ``fcos_loss`` assigning targets inside the loss, ``fcos_lite`` preset) are
made of plain MindSpore cells and have no quantizer, export or yoloqat glue code:
``train`` (float) -> ``train`` (int8_qat, the checkpoint's network and loss kept) ->
``export --int8`` -> ``eval --onnx`` (ONNX Runtime and OpenVINO) -> ``predict``, every
conv int8 in the ONNX file, and ONNX Runtime agreeing with the fake-quant network.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_registry import make_dist

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "yoloqat-example-plugin"
BACKBONE = "model.backbone={name: mobile_lite, width: 0.25}"
#: convs of mobile_lite(width=0.25, depth=1): stem + 4 stages x 2 blocks x 3 convs. (Its
#: run with the bundled yolov3_head is the FCOS test's minus the head: the FCOS test covers
#: the plugin backbone through every command, the yolov3 head is covered by the suite.)
BACKBONE_CONVS = 25
#: The FCOS head and loss, chosen on the command line (no glue code anywhere).
FCOS = ["--set", "model.head={name: fcos_lite, channels: 16}", "--set", "loss={name: fcos_loss}"]
#: convs of fcos_lite(channels=16): 3 levels x (1x1 + two 3x3 tower convs + 3 predictors).
FCOS_HEAD_CONVS = 18
#: Bound on max |ONNX Runtime - fake quant| of the FCOS int8 model (boxes and scores).
#: Measured here: 0 (boxes) and 2.7e-7 (scores), every value within 1e-5.
FCOS_ONNX_BOUND = 1e-5

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example installed with pip (no network, no build isolation) into a folder."""
    root = tmp_path_factory.mktemp("example_plugin")
    src = root / "src"
    # build from a copy, so the build leaves no build/ or egg-info in the repository
    shutil.copytree(
        EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    target = root / "site"
    res = subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
            "--no-index", "--disable-pip-version-check", "--target", str(target), str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert list(target.glob("yoloqat_example_plugin-*.dist-info/entry_points.txt"))
    return target


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """What ``yoloqat synth OUT --train 8 --val 4 --size 64 --classes 3`` writes."""
    from yoloqat.data.synth import make_synthetic_coco

    out = tmp_path_factory.mktemp("shapes") / "shapes"
    make_synthetic_coco(out, train=8, val=4, size=64, num_classes=3)
    return out


def run(site: Path, *args: str, timeout: int = 600, cwd: Path = REPO):
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout
    )


def test_listed_through_the_entry_point(site: Path) -> None:
    res = run(site, "-m", "yoloqat", "list", "--json")
    assert res.returncode == 0, res.stderr
    comps = {(c["kind"], c["name"]): c for c in json.loads(res.stdout)}
    assert comps[("backbone", "mobile_lite")]["plugin"] == "example_plugin"
    assert comps[("scheduler", "constant")]["plugin"] == "example_plugin"
    assert comps[("backbone", "mobile_lite")]["parameters"]["expand"] == 4

    res = run(site, "-m", "yoloqat", "plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugin = {p["name"]: p for p in json.loads(res.stdout)}["example_plugin"]
    assert plugin["status"] == "loaded"
    assert plugin["distribution"] == "yoloqat-example-plugin"
    assert plugin["builtin"] is False
    assert plugin["hooks"] == [
        "yoloqat_backbones",
        "yoloqat_families",
        "yoloqat_heads",
        "yoloqat_losses",
        "yoloqat_schedulers",
    ]
    assert comps[("head", "fcos_lite")]["plugin"] == "example_plugin"
    assert comps[("loss", "fcos_loss")]["plugin"] == "example_plugin"
    assert comps[("family", "fcos_lite")]["plugin"] == "example_plugin"

    # without the install folder on the path the plugin is absent
    plain = run(Path("/nonexistent"), "-m", "yoloqat", "list", "backbone", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "mobile_lite" not in {c["name"] for c in json.loads(plain.stdout)}


def test_its_own_tests_pass_through_yoloqat_testing(site: Path) -> None:
    """The plugin's test suite (yoloqat.testing: conformance, QAT, int8 export, eval)."""
    copy = site.parent / "src"  # the copy the package was built from
    res = run(site, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=copy)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "20 passed" in res.stdout


def test_bad_parameter_is_a_config_error(site: Path) -> None:
    res = run(site, "-m", "yoloqat", "config", "show", "synth_tiny", "--set",
              "model.backbone={name: mobile_lite, depht: 2}")  # fmt: skip
    assert res.returncode == 3
    assert "Did you mean 'depth'" in res.stderr


FIGURES = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from yoloqat.core.contracts.quantizer import quantizer_of
    from yoloqat.engine.evaluate import load_batches
    from yoloqat.engine.inference import load_detector
    from yoloqat.engine.pipeline import build_dataset
    from yoloqat.testing import count_int8_convs, onnx_differences
    from yoloqat.testing.end_to_end import MATCH_ATOL
    import onnx

    ckpt, path, data = sys.argv[1:4]
    network, cfg, _ = load_detector({}, ckpt, explicit_config=False)
    summary = quantizer_of(network).summary(network)
    source = build_dataset({"dataset": {"name": "coco", "data_dir": data}}).val_source()
    images = np.concatenate([b["image"] for b in load_batches(source, testing_shape=64)])
    model = onnx.load(path)
    inits = {i.name for i in model.graph.initializer}
    weights = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    conv_weights = sorted(weights.get(n.input[1], n.input[1]) for n in model.graph.node
                          if n.op_type == "Conv")
    int8, convs = count_int8_convs(model)
    diffs = onnx_differences(network, path, images)
    print(json.dumps({
        "backbone": cfg["model"]["backbone"]["name"],
        "head": cfg["model"]["head"]["name"], "loss": cfg["loss"]["name"],
        "output_format": network.output_format,
        "int8_convs": int8, "convs": convs,
        "quantized_convs": summary.quantized_convs, "total_convs": summary.total_convs,
        "float_convs": summary.unsupported + summary.skipped,
        "conv_weights": [w for w in conv_weights if w in inits],
        "max_abs_diff": max(float(d.max()) for d in diffs),
        "output_diffs": [float(d.max()) for d in diffs],
        "match_fraction": float(np.mean(np.concatenate([(d <= MATCH_ATOL).ravel()
                                                        for d in diffs]))),
    }))
    """
)


def test_fcos_family_trains_quantizes_exports_and_runs_without_glue(
    site: Path, data: Path, tmp_path: Path
) -> None:
    """The issue's acceptance: a third-party anchor-free family (FCOS-style head with its
    own decode, loss assigning targets from the padded ground truth) through every CLI
    path with no glue code: float train -> QAT (head and loss kept from the checkpoint)
    -> int8 export -> eval on ONNX Runtime and OpenVINO -> predict from the checkpoint."""
    common = ["--data_dir", str(data), "--set", "model.num_classes=3", "--max_epoch", "1",
              "--per_batch_size", "4", "--training_shape", "64", "--set", "data.multi_scale=[64]",
              "--set", "eval.testing_shape=64"]  # fmt: skip
    res = run(site, "-m", "yoloqat", "train", "--config", "synth_tiny", *common,
              "--set", BACKBONE, *FCOS, "--lr_scheduler", "constant", "--lr", "0.001",
              "--ckpt_path", str(tmp_path / "float"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    (float_ckpt,) = sorted((tmp_path / "float").glob("*/ckpt_0/*.ckpt"))[-1:]

    # no head or loss on this command line: the QAT config's yolov3 blocks give way to the
    # checkpoint's FCOS head and loss
    res = run(site, "-m", "yoloqat", "train", "--config", "synth_tiny_quant", *common,
              "--set", "scheduler.warmup_epochs=0", "--resume_yolov3", str(float_ckpt),
              "--ckpt_path", str(tmp_path / "qat"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "model.head={'name': 'fcos_lite', 'channels': 16} (was {'name': 'yolov3_head'" in (
        res.stderr
    )
    assert "loss={'name': 'fcos_loss'} (was {'name': 'yolov3_loss'" in res.stderr
    assert "left float" not in res.stderr  # int8_qat quantized every conv
    (qat_ckpt,) = sorted((tmp_path / "qat").glob("*/ckpt_0/*.ckpt"))[-1:]

    onnx_path = tmp_path / "fcos_int8.onnx"
    res = run(site, "-m", "yoloqat", "export", "--checkpoint", str(qat_ckpt), "--int8",
              "--batch_size", "0", "--output", str(onnx_path))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    assert "exported int8 QDQ ONNX model (64x64)" in res.stderr

    for runtime in ("onnxruntime", "openvino"):
        res = run(site, "-m", "yoloqat", "eval", "--onnx", str(onnx_path), "--data_dir",
                  str(data), "--runtime", runtime, "--output", str(tmp_path / runtime))  # fmt: skip
        assert res.returncode == 0, f"{runtime}: {res.stderr[-3000:]}"
        assert "Average Precision  (AP) @[ IoU=0.50      | area=   all" in res.stdout
        assert list((tmp_path / runtime).glob("*/eval.json"))

    res = run(site, "-m", "yoloqat", "predict", str(data / "val"), "--checkpoint", str(qat_ckpt),
              "--score_threshold", "0.01", "--json", "--output",
              str(tmp_path / "predict"))  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    found = json.loads(res.stdout)
    assert len(found) == 4
    assert json.loads((tmp_path / "predict" / "results.json").read_text()) == found
    dets = [d for image in found for d in image["detections"]]
    assert dets and all(0 <= d["class_id"] < 3 for d in dets)

    res = run(site, "-c", FIGURES, str(qat_ckpt), str(onnx_path), str(data))
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout.strip().splitlines()[-1])
    print(
        f"fcos_lite int8 ONNX: {got['int8_convs']}/{got['convs']} convs int8, max |ONNX - "
        f"fake quant| = {got['output_diffs']} (boxes, scores; bound {FCOS_ONNX_BOUND:g}), "
        f"{got['match_fraction']:.2%} within 1e-5"
    )
    assert (got["head"], got["loss"], got["output_format"]) == (
        "fcos_lite",
        "fcos_loss",
        "fcos_ltrb",
    )
    assert got["float_convs"] == []  # no skip_layers, nothing unsupported
    total = BACKBONE_CONVS + FCOS_HEAD_CONVS
    assert got["quantized_convs"] == got["total_convs"] == total
    assert got["int8_convs"] == got["convs"] == total  # every conv int8 in the file
    owners = [w.split(".", 1)[0] for w in got["conv_weights"]]
    assert (owners.count("backbone"), owners.count("head")) == (BACKBONE_CONVS, FCOS_HEAD_CONVS)
    assert got["max_abs_diff"] <= FCOS_ONNX_BOUND
    assert got["match_fraction"] >= 0.99


def test_fcos_family_preset_through_the_cli(site: Path) -> None:
    """``family: fcos_lite`` selects the plugin's backbone, head and loss in one line (the
    bundled config's own blocks cleared, else they would replace the preset's), and
    ``config show`` builds the network and loss as train would."""
    res = run(site, "-m", "yoloqat", "config", "show", "synth_tiny", "--json",
              "--set", "model.backbone=null", "--set", "model.head=null", "--set", "loss=null",
              "--set", "family={name: fcos_lite, width: 0.25}")  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    cfg = json.loads(res.stdout)
    assert cfg["model"]["backbone"] == {"name": "mobile_lite", "width": 0.25}
    assert cfg["model"]["head"] == {"name": "fcos_lite", "levels": 3, "channels": 16}
    assert cfg["loss"] == {"name": "fcos_loss"}


NO_CHANNELS = '''
from yoloqat import hookimpl

def no_channels(*, width: float = 1.0):
    """A backbone that forgot its out_channels."""
    from mindspore import nn

    class NoChannels(nn.Cell):
        def construct(self, x):
            return x, x, x

    return NoChannels()

@hookimpl
def yoloqat_backbones():
    return {"no_channels": no_channels}
'''


def test_missing_protocol_member_fails_at_build_time(data: Path, tmp_path: Path) -> None:
    make_dist(tmp_path, "yoloqat-no-channels", "yq_no_channels", NO_CHANNELS)
    res = run(tmp_path, "-m", "yoloqat", "train", "--config", "synth_tiny",
              "--data_dir", str(data), "--set", "model.num_classes=3",
              "--set", "model.backbone={name: no_channels}",
              "--ckpt_path", str(tmp_path / "runs"))  # fmt: skip
    assert res.returncode == 4, res.stderr[-2000:]
    assert (
        "backbone 'no_channels' from plugin 'yq_no_channels' breaks the backbone contract: "
        "missing attribute 'out_channels'"
    ) in res.stderr
    assert "Traceback" not in res.stderr
