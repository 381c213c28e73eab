"""The example third-party plugin package: built offline, found through its entry point."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "yoloqat-example-plugin"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The example installed with pip (no network, no build isolation) into a folder."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is not installed: the example package cannot be built")
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


def run(site: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout
    )


def test_listed_through_the_entry_point(site: Path) -> None:
    res = run(site, "-m", "yoloqat", "list", "--json")
    assert res.returncode == 0, res.stderr
    comps = {(c["kind"], c["name"]): c for c in json.loads(res.stdout)}
    assert comps[("backbone", "tiny_darknet")]["plugin"] == "example_plugin"
    assert comps[("scheduler", "constant")]["plugin"] == "example_plugin"
    assert comps[("backbone", "tiny_darknet")]["parameters"]["depth"] == 1

    res = run(site, "-m", "yoloqat", "plugins", "--json")
    assert res.returncode == 0, res.stderr
    plugin = {p["name"]: p for p in json.loads(res.stdout)}["example_plugin"]
    assert plugin["status"] == "loaded"
    assert plugin["distribution"] == "yoloqat-example-plugin"
    assert plugin["builtin"] is False
    assert plugin["hooks"] == ["yoloqat_backbones", "yoloqat_schedulers"]

    # without the install folder on the path the plugin is absent
    plain = run(Path("/nonexistent"), "-m", "yoloqat", "list", "backbone", "--json")
    assert plain.returncode == 0, plain.stderr
    assert "tiny_darknet" not in {c["name"] for c in json.loads(plain.stdout)}


def test_create_builds_working_components(site: Path) -> None:
    script = textwrap.dedent(
        """
        import json
        import numpy as np
        import yoloqat
        import mindspore as ms

        backbone = yoloqat.create("backbone", "tiny_darknet", width=0.25, depth=2)
        outs = backbone(ms.Tensor(np.zeros((2, 3, 64, 96), np.float32)))
        lr = yoloqat.create("scheduler", "constant", lr=0.01, warmup_epochs=1).per_step(4, 3)
        print(json.dumps({
            "out_channels": list(backbone.out_channels),
            "shapes": [list(o.shape) for o in outs],
            "lr": [float(v) for v in lr],
        }))
        """
    )
    res = run(site, "-c", script)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(got["shapes"]) == 3
    for channels, stride, shape in zip(got["out_channels"], (8, 16, 32), got["shapes"]):
        assert shape == [2, channels, 64 // stride, 96 // stride]
    assert got["out_channels"] == [32, 64, 128]  # 128/256/512 at width 0.25
    assert got["lr"][:4] == pytest.approx([0.0025, 0.005, 0.0075, 0.01])
    assert got["lr"][4:] == pytest.approx([0.01] * 8)


def test_bad_parameter_is_a_config_error(site: Path) -> None:
    res = run(site, "-m", "yoloqat", "config", "show", "yolov3_darknet53", "--set",
              "model.backbone.name=tiny_darknet", "--set", "model.backbone.depht=2")  # fmt: skip
    assert res.returncode == 3
    assert "Did you mean 'depth'" in res.stderr


def test_trains_with_the_bundled_config(site: Path, tmp_path: Path) -> None:
    """`--set model.backbone.name=tiny_darknet` on a bundled config trains end to end."""
    data = tmp_path / "shapes"
    res = run(site, "-m", "yoloqat", "synth", str(data), "--train", "8", "--val", "2",
              "--size", "64")  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = run(
        site, "-m", "yoloqat", "train", "--config", "synth_tiny", "--data_dir", str(data),
        "--set", "model.backbone.name=tiny_darknet", "--set", "model.backbone.width=0.125",
        "--lr_scheduler", "constant", "--lr", "0.001", "--max_epoch", "1",
        "--per_batch_size", "8", "--training_shape", "64", "--set", "data.multi_scale=[64]",
        "--ckpt_path", str(tmp_path / "runs"),
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ckpts = sorted((tmp_path / "runs").glob("*/ckpt_0/*.ckpt"))
    assert ckpts, res.stderr
    check = run(
        site,
        "-c",
        "import sys, yoloqat; from yoloqat.engine.training.checkpoint import read_checkpoint; "
        "p, m = read_checkpoint(sys.argv[1]); "
        "print(m['config']['model']['backbone']['name'], m['config']['scheduler']['name'], "
        "'backbone.stage5.down.conv.weight' in p)",
        str(ckpts[-1]),
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.split() == ["tiny_darknet", "constant", "True"]
