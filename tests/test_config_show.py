"""``yoloqat config show``: the resolved config, each value with where it came from
(``default``, ``file NAME`` including a base file, ``family NAME``, ``flag --NAME``,
``--set``, ``checkpoint PATH``), as YAML comments (the output stays valid YAML)."""

from __future__ import annotations

from pathlib import Path

import yaml
from tiny import cli, tiny_cfg

from yoloqat.core.config import provenance


def _sources(stdout: str) -> dict[str, str]:
    """``dotted.key -> source`` from the comments of ``config show``'s YAML."""
    out, stack = {}, []
    for line in stdout.splitlines():
        text, _, source = line.partition("  # ")
        depth = (len(text) - len(text.lstrip())) // 2
        key = text.strip().split(":", 1)[0]
        stack[depth:] = [key]
        if source:
            out[".".join(stack)] = source.strip()
    return out


def test_config_show_says_where_each_value_came_from(tmp_path: Path) -> None:
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("_base_: synth_yolov3_tiny_quant\ntrain: {log_interval: 2}\n")
    res = cli(
        "config", "show", str(recipe), "--per_batch_size", "4", "--lr", "0.002",
        "--set", "train.seed=9",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    shown = yaml.safe_load(res.stdout)  # comments aside, the config
    assert shown["train"]["per_batch_size"] == 4 and shown["train"]["seed"] == 9
    sources = _sources(res.stdout)
    assert sources["train.log_interval"] == f"file {recipe}"  # the file itself
    assert sources["train.max_epoch"] == "file synth_yolov3_tiny_quant.yaml"  # its base
    assert sources["scheduler.eta_min"] == "file synth_yolov3_tiny.yaml"  # the base's base
    assert sources["model.backbone.name"] == "family yolov3_tiny"  # the preset
    assert sources["model.backbone.width"] == "file synth_yolov3_tiny.yaml"  # over the preset
    assert sources["train.per_batch_size"] == "flag --per_batch_size"
    assert sources["scheduler.lr"] == "flag --lr"
    assert sources["train.seed"] == "--set"
    assert sources["data.normalize"] == "default"  # in no file: the schema's
    assert sources["train.need_profiler"] == "default"
    assert set(sources) == set(_leaves(shown))  # every value has its source


def _leaves(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict) and value:
        return [k for key, v in value.items() for k in _leaves(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def test_a_null_block_left_to_the_family_is_the_familys() -> None:
    res = cli("config", "show", "yolov3_tiny")  # its base's blocks set to null
    assert res.returncode == 0, res.stderr[-2000:]
    sources = _sources(res.stdout)
    assert sources["model.backbone.name"] == "family yolov3_tiny"
    assert sources["loss.name"] == "family yolov3_tiny"
    assert sources["train.max_epoch"] == "file yolov3_darknet53.yaml"


def test_config_show_of_a_checkpoint_says_checkpoint(tmp_path: Path) -> None:
    from yoloqat.engine import pipeline
    from yoloqat.engine.checkpoints import save_checkpoint

    cfg = tiny_cfg(tmp_path / "data", tmp_path / "out")
    ckpt = save_checkpoint(pipeline.build_model(cfg), tmp_path / "a.ckpt", {"config": cfg})
    res = cli("config", "show", str(ckpt), "--set", "train.max_epoch=7")
    assert res.returncode == 0, res.stderr[-2000:]
    sources = _sources(res.stdout)
    assert sources["model.num_classes"] == f"checkpoint {ckpt}"
    assert sources["train.max_epoch"] == "--set"
    assert sources["data.normalize"] == "default"  # not stored: the schema's


def test_provenance_takes_the_last_layer_that_sets_a_value() -> None:
    resolved = {"a": {"b": 1, "c": [1, 2]}, "d": 3, "e": {"f": 1}, "g": {"h": 1, "i": 2}}
    layers = [
        ("one", {"a": {"b": 0, "c": [0]}, "g": {"h": 1, "i": 0}}),
        ("two", {"a": {"c": [1, 2]}, "e": {"f": 1}}),
        ("three", {"g": None}),  # unsets g.*: the preset below fills it
    ]
    under = [("preset", {"g": {"h": 1, "i": 2}, "a": {"b": 5}})]
    assert provenance(resolved, layers, under) == {
        "a.b": "one",  # a layer wins over the preset
        "a.c": "two",
        "d": "default",
        "e.f": "two",
        "g.h": "preset",
        "g.i": "preset",
    }
