"""Config typos and bad values fail with exit code 3 and a clear line (issue 11, point 5).

The train and eval cases run the real command in-process (Typer's runner: the same code,
exit code and stderr, without an interpreter start each); the plugin cases run it in a
subprocess, where the fake plugin's entry point is on the path. All fail before any work.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tiny import cli

from yoloqat.core.config import apply_overrides, load_config
from yoloqat.core.errors import ConfigError
from yoloqat.core.schema import check_sections
from yoloqat.data.synth import make_synthetic_coco

BASE = [sys.executable, "-m", "yoloqat"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    make_synthetic_coco(out, train=8, val=2, size=64, seed=3, num_classes=3)
    return out


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*BASE, *args], capture_output=True, text=True, timeout=300, env=env
    )  # fmt: skip


def train(synth: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    return cli(
        "train", "--config", "synth_tiny", "--data_dir", str(synth), "--ckpt_path", str(out),
        "--set", "model.num_classes=3", *args,
    )  # fmt: skip


NOT_VALID = r" is not valid: expected "
CASES = [
    (["--set", "train.max_epok=1"],
     r"train\.max_epok is not a known key\. Did you mean 'train\.max_epoch'\?"),
    (["--set", "foo.bar=1"],
     r"'foo' is not a config section\..*\n.*hint: sections: family, model, "),
    (["--set", "trian.max_epoch=1"], r"'trian' is not a config section\. Did you mean 'train'\?"),
    (["--set", "train.max_epoch=abc"], r"train\.max_epoch='abc'" + NOT_VALID + "an integer"),
    (["--set", "train.per_batch_size=2.5"],
     r"train\.per_batch_size=2\.5" + NOT_VALID + "an integer"),
    (["--ckpt_interval", "-1"], r"train\.ckpt_interval=-1" + NOT_VALID + "a value >= 1"),
    (["--training_shape", "0"],
     r"data\.training_shape=0" + NOT_VALID + "a positive multiple of 32"),
    (["--set", "data.multi_scale=[96, 100]"], r"data\.multi_scale\[1\]=100 is not valid"),
    (["--set", "train.loss_scale_semantics=sed"], r"expected 'seed' or 'standard'"),
    (["--set", "model.backbone.widht=0.5"], r"has no parameter 'widht'\. Did you mean 'width'\?"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(c[0]) for c in CASES])
def test_train_refuses_bad_config_with_exit_3(synth, tmp_path, args, message) -> None:
    res = train(synth, tmp_path, *args)
    assert res.returncode == 3, res.stderr
    assert __import__("re").search(message, res.stderr), res.stderr
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # nothing was started, no run folder


def test_eval_testing_shape_0_is_an_error_not_the_default(synth, tmp_path) -> None:
    res = cli("eval", "--pretrained", str(tmp_path / "x.ckpt"), "--testing_shape", "0")
    assert res.returncode == 3, res.stderr
    assert "input height 0 is not valid; expected a positive multiple of 32" in res.stderr


def test_eval_refuses_a_misspelt_set(synth, tmp_path) -> None:
    res = cli("eval", "--pretrained", str(tmp_path / "x.ckpt"), "--set", "eval.letterbx=true")
    assert res.returncode == 3, res.stderr
    assert "eval.letterbx is not a known key. Did you mean 'eval.letterbox'?" in res.stderr


def test_bundled_configs_pass_the_schema() -> None:
    for name in ("synth_tiny", "synth_tiny_quant", "yolov3_darknet53", "yolov3_darknet53_quant"):
        check_sections(load_config(name))


def test_schema_messages_name_key_value_and_expectation() -> None:
    cfg = load_config("synth_tiny")
    for override, message in [
        ("train.is_save_on_master=2", "train.is_save_on_master=2 is not valid: expected true "
         "or false or 0 or 1"),
        ("eval.score_threshold=1.5", "eval.score_threshold=1.5 is not valid: expected a value "
         "<= 1.0"),
        ("train.momentum=1", "train.momentum=1 is not valid: expected a value < 1.0"),
        ("data=3", "data=3 is not valid: expected a mapping"),
        ("train.ema.decay=1.5", "train.ema.decay=1.5 is not valid: expected a value < 1.0"),
        ("train.ema.decy=0.9", "train.ema.decy is not a known key. Did you mean "
         "'train.ema.decay'?"),
        ("train.ema=3", "train.ema=3 is not valid: expected a mapping of its keys (or null)"),
    ]:  # fmt: skip
        with pytest.raises(ConfigError) as info:
            check_sections(apply_overrides(cfg, [override]))
        assert message in info.value.message


# -- switching a component by name (issue 10's part in core/config.py) -------------------
PLUGIN = '''
from yoloqat import hookimpl


def plain_backbone(*, depth: int = 1, width: float = 1.0):
    """A backbone with other parameters than darknet53."""
    from mindspore import nn

    class Plain(nn.Cell):
        def __init__(self):
            super().__init__()
            self.out_channels, self.strides = (8, 16, 32), (8, 16, 32)
            self.c3 = nn.Conv2d(3, 8, 3, stride=8, has_bias=True)
            self.c4 = nn.Conv2d(8, 16, 3, stride=2, has_bias=True)
            self.c5 = nn.Conv2d(16, 32, 3, stride=2, has_bias=True)

        def construct(self, x):
            c3 = self.c3(x)
            c4 = self.c4(c3)
            return c3, c4, self.c5(c4)

    return Plain()


@hookimpl
def yoloqat_backbones():
    return {"plain_backbone": plain_backbone}
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict:
    """A fake installed third-party plugin: a module and a dist-info with an entry point."""
    site = tmp_path_factory.mktemp("site")
    (site / "plain_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "plain_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plain-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[yoloqat.plugins]\nplain = plain_plugin\n")
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def test_switching_component_by_name_names_leftover_parameters(plugin_env) -> None:
    res = run("config", "show", "synth_tiny", "--set", "model.backbone.name=plain_backbone",
              env=plugin_env)  # fmt: skip
    assert res.returncode == 3, res.stderr
    text = " ".join(res.stderr.split())
    assert (
        "model.backbone: backbone 'plain_backbone' does not take the parameter(s) activation, "
        "padding, bn_momentum" in text
    )
    assert "nothing is dropped silently" in text
    assert "hint: replace the whole block: --set 'model.backbone={name: plain_backbone, " in text


def test_a_mapping_value_replaces_the_whole_block(plugin_env) -> None:
    res = run("config", "show", "synth_tiny", "--json", "--set",
              "model.backbone={name: plain_backbone, depth: 2}", env=plugin_env)  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    assert json.loads(res.stdout)["model"]["backbone"] == {"name": "plain_backbone", "depth": 2}
