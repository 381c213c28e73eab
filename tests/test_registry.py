"""Registry, hook collection, third-party plugins (as installed dist-infos), config checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from yoloqat.core.config import (
    apply_overrides,
    check_config,
    load_config,
    parse_override,
    resolve_config_path,
)
from yoloqat.core.errors import ConfigError, PluginError
from yoloqat.registry import Registry

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env_extra: dict[str, str] | None = None, path: Path | None = None):
    env = dict(os.environ)
    env.pop("YOLOQAT_DISABLE_PLUGINS", None)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "yoloqat", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )


def make_dist(root: Path, dist: str, module: str, source: str, entry: str | None = None) -> None:
    """Install a fake third-party plugin: a module plus a dist-info with entry_points.txt."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"  # wheel-style escaping
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[yoloqat.plugins]\n{entry or module} = {module}\n")


GOOD_PLUGIN = '''
from yoloqat import hookimpl

def tinynet(*, depth: int = 2, width: float = 0.5):
    """A tiny third-party backbone for tests."""
    from mindspore import nn

    class TinyNet(nn.Cell):
        def __init__(self):
            super().__init__()
            self.depth, self.width = depth, width
            self.out_channels = (8, 16, 32)
            self.strides = (8, 16, 32)

        def construct(self, x):
            return x, x, x

    return TinyNet()

@hookimpl
def yoloqat_backbones():
    return {"tinynet": tinynet}
'''


def test_builtins_registered() -> None:
    reg = Registry(entry_points=False)
    names = {(c.kind, c.name) for c in reg.components()}
    assert ("backbone", "darknet53") in names
    assert ("head", "yolov3_head") in names
    for c in reg.components():
        assert c.summary, f"{c.kind} {c.name} has no one-line summary"
        assert not c.accepts_any, f"{c.kind} {c.name} has a **kwargs sink"


def test_unknown_name_and_parameter_suggest() -> None:
    reg = Registry(entry_points=False)
    with pytest.raises(ConfigError, match=r"Did you mean 'darknet53'\?"):
        reg.get("backbone", "darknet35")
    with pytest.raises(ConfigError, match=r"no parameter 'widht'.*Did you mean 'width'\?"):
        reg.check("backbone", "darknet53", {"widht": 0.5})
    with pytest.raises(ConfigError, match="unknown component kind"):
        reg.components("backbones")


def test_blocked_builtin_is_not_resolvable() -> None:
    reg = Registry(entry_points=False, disabled=["darknet53"])
    status = {p.name: p.status for p in reg.plugins()}
    assert status["darknet53"] == "blocked"
    with pytest.raises(ConfigError, match="blocked plugins: darknet53"):
        reg.get("backbone", "darknet53")


def test_third_party_plugin_discovered_and_usable(tmp_path: Path) -> None:
    make_dist(tmp_path, "yoloqat-tinynet", "yq_tinynet", GOOD_PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        reg = Registry()
        comp = reg.get("backbone", "tinynet")
        assert comp.plugin == "yq_tinynet"
        info = {p.name: p for p in reg.plugins()}["yq_tinynet"]
        assert (info.distribution, info.version, info.status) == (
            "yoloqat-tinynet",
            "1.2.3",
            "loaded",
        )
        assert info.hooks == ["yoloqat_backbones"]
        built = reg.create("backbone", "tinynet", depth=3)
        assert (built.depth, built.width, built.out_channels) == (3, 0.5, (8, 16, 32))
        blocked = Registry(disabled=["yq_tinynet"])
        with pytest.raises(ConfigError):
            blocked.get("backbone", "tinynet")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("yq_tinynet", None)


def test_clash_names_both_plugins(tmp_path: Path) -> None:
    clash = GOOD_PLUGIN.replace('"tinynet": tinynet', '"darknet53": tinynet')
    make_dist(tmp_path, "yoloqat-clash", "yq_clash", clash)
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(PluginError, match=r"'darknet53'.*'darknet53'.*'yq_clash'"):
            Registry().components()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("yq_clash", None)


def test_cli_third_party_list_block_and_broken(tmp_path: Path) -> None:
    make_dist(tmp_path, "yoloqat-tinynet", "yq_tinynet", GOOD_PLUGIN)
    make_dist(tmp_path, "yoloqat-broken", "yq_broken", "raise ImportError('boom: missing dep')\n")

    res = run_cli("list", "backbone", "--json", path=tmp_path)
    assert res.returncode == 0, res.stderr
    names = {c["name"] for c in json.loads(res.stdout)}
    assert {"darknet53", "tinynet"} <= names
    assert "yq_broken" in res.stderr and "boom: missing dep" in res.stderr  # a warning

    res = run_cli("--disable-plugin", "yq_tinynet", "list", "backbone", "--json", path=tmp_path)
    assert "tinynet" not in {c["name"] for c in json.loads(res.stdout)}
    res = run_cli(
        "list", "--json", path=tmp_path, env_extra={"YOLOQAT_DISABLE_PLUGINS": "yq_tinynet"}
    )
    assert "tinynet" not in {c["name"] for c in json.loads(res.stdout)}

    res = run_cli("plugins", "--json", path=tmp_path)
    status = {p["name"]: p["status"] for p in json.loads(res.stdout)}
    assert status["yq_broken"] == "failed" and status["yq_tinynet"] == "loaded"

    res = run_cli("--strict-plugins", "list", path=tmp_path)
    assert res.returncode == 4
    assert "yq_broken" in res.stderr


def test_cli_unknown_component_exit_3_one_line() -> None:
    res = run_cli("config", "show", "yolov3_darknet53", "--set", "model.backbone.name=darknet35")
    assert res.returncode == 3
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Did you mean 'darknet53'?" in lines[0]
    res = run_cli("config", "show", "yolov3_darknet53", "--set", "model.backbone.widht=1")
    assert res.returncode == 3 and "Did you mean 'width'?" in res.stderr


def test_config_overrides_and_errors(tmp_path: Path) -> None:
    assert parse_override("train.max_epoch=3") == (["train", "max_epoch"], 3)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match=r"expected dotted\.key=value"):
        parse_override("train.max_epoch")
    cfg = apply_overrides({"train": {"max_epoch": 1}}, ["train.max_epoch=5", "new.key=x"])
    assert cfg == {"train": {"max_epoch": 5}, "new": {"key": "x"}}
    with pytest.raises(ConfigError, match=r"train\.max_epoch is a int"):
        apply_overrides({"train": {"max_epoch": 1}}, ["train.max_epoch.x=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone: {name: darknet53\n")
    with pytest.raises(ConfigError, match=r"invalid YAML in .*bad.yaml line \d+"):
        load_config(bad)
    with pytest.raises(ConfigError, match=r"config file not found: nope\.yaml"):
        resolve_config_path("nope.yaml")


@pytest.mark.parametrize("name", ["yolov3_darknet53", "yolov3_darknet53_quant"])
def test_bundled_configs_name_real_components(name: str) -> None:
    cfg = load_config(name)
    assert (REPO / "configs" / f"{name}.yaml").is_file()
    check_config(cfg, Registry(entry_points=False))
