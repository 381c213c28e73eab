"""Recipes that inherit (``_base_``), and the bundled recipes' resolved values.

``tests/data/recipes/<name>.json`` holds what each bundled config resolved to (file plus
family preset) before the quant recipes were rewritten as their float recipe plus the
differences; every bundled config must still resolve to exactly those values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from yoloqat.core.config import (
    BUNDLED_DIR,
    bundled_configs,
    load_config,
    load_layers,
    load_raw,
    resolve_family,
)
from yoloqat.core.errors import ConfigError
from yoloqat.registry import Registry

RECIPES = Path(__file__).parent / "data" / "recipes"


@pytest.mark.parametrize("name", bundled_configs())
def test_every_bundled_config_resolves_to_its_stored_values(name: str) -> None:
    stored = json.loads((RECIPES / f"{name}.json").read_text())
    resolved = resolve_family(load_config(name), Registry(entry_points=False))
    assert json.loads(json.dumps(resolved)) == stored


def test_every_bundled_config_has_stored_values() -> None:
    assert sorted(p.stem for p in RECIPES.glob("*.json")) == bundled_configs()


@pytest.mark.parametrize(
    ("quant", "base"),
    [
        ("yolov3_darknet53_quant", "yolov3_darknet53"),
        ("synth_tiny_quant", "synth_tiny"),
        ("synth_yolov3_tiny_quant", "synth_yolov3_tiny"),
        ("synth_yolov8_quant", "synth_yolov8"),
    ],
)
def test_the_bundled_quant_recipes_are_their_float_recipe_plus_differences(
    quant: str, base: str
) -> None:
    layers = load_layers(quant)
    assert [p.name for p, _ in layers] == [f"{base}.yaml", f"{quant}.yaml"]
    own = layers[-1][1]
    assert set(own) <= {"model", "quantizer", "scheduler", "train"}  # the differences only
    assert "data" not in own and "eval" not in own


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_base_by_relative_path_merges_deeply_and_lists_replace(tmp_path: Path) -> None:
    _write(
        tmp_path / "bases" / "float.yaml",
        "train: {max_epoch: 10, per_batch_size: 8}\n"
        "data: {multi_scale: [64, 96, 128], max_boxes: 20}\n"
        "scheduler: {name: cosine_annealing, lr: 0.1, T_max: 10}\n",
    )
    child = _write(
        tmp_path / "recipes" / "quant.yaml",
        "_base_: ../bases/float.yaml\n"
        "train: {max_epoch: 3}\n"
        "data: {multi_scale: [64]}\n"
        "scheduler: {lr: 0.001}\n",
    )
    cfg = load_raw(child)
    assert cfg["train"] == {"max_epoch": 3, "per_batch_size": 8}  # mappings merge
    assert cfg["data"] == {"multi_scale": [64], "max_boxes": 20}  # lists replace
    assert cfg["scheduler"] == {"name": "cosine_annealing", "lr": 0.001, "T_max": 10}
    assert "_base_" not in cfg


def test_a_component_block_naming_another_component_replaces_the_base_block(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "a.yaml", "scheduler: {name: cosine_annealing, lr: 0.1, T_max: 10}\n")
    child = _write(tmp_path / "b.yaml", "_base_: a.yaml\nscheduler: {name: exponential, lr: 0.1}\n")
    assert load_raw(child)["scheduler"] == {"name": "exponential", "lr": 0.1}


def test_a_base_by_bundled_name_and_a_list_of_bases(tmp_path: Path) -> None:
    _write(tmp_path / "short.yaml", "train: {max_epoch: 2, seed: 7}\n")
    _write(tmp_path / "small.yaml", "train: {max_epoch: 5, per_batch_size: 4}\n")
    child = _write(
        tmp_path / "mine.yaml",
        "_base_: [synth_tiny, short.yaml, small.yaml]\ntrain: {log_interval: 1}\n",
    )
    cfg = load_raw(child)
    paths = [p for p, _ in load_layers(child)]
    assert paths[0] == (BUNDLED_DIR / "synth_tiny.yaml").resolve()
    assert [p.name for p in paths[1:]] == ["short.yaml", "small.yaml", "mine.yaml"]
    # later bases win over earlier ones, the file over its bases
    assert cfg["train"]["max_epoch"] == 5 and cfg["train"]["seed"] == 7
    assert cfg["train"]["per_batch_size"] == 4 and cfg["train"]["log_interval"] == 1
    assert cfg["model"]["num_classes"] == 5  # from synth_tiny
    load_config(child)  # a valid config


def test_a_missing_base_names_the_file_and_the_key(tmp_path: Path) -> None:
    child = _write(tmp_path / "child.yaml", "_base_: nowhere.yaml\ntrain: {max_epoch: 1}\n")
    with pytest.raises(ConfigError, match=r"child\.yaml: _base_: 'nowhere\.yaml' not found"):
        load_raw(child)
    bad = _write(tmp_path / "bad.yaml", "_base_: {a: 1}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: _base_=\{'a': 1\}: expected a config"):
        load_raw(bad)


def test_a_cycle_of_bases_names_the_chain(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    _write(tmp_path / "b.yaml", "_base_: c.yaml\n")
    _write(tmp_path / "c.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError) as err:
        load_raw(tmp_path / "a.yaml")
    message = err.value.message
    assert message.startswith("config inheritance cycle: ")
    chain = [Path(p).name for p in message.split(": ", 1)[1].split(" -> ")]
    assert chain == ["a.yaml", "b.yaml", "c.yaml", "a.yaml"]
    _write(tmp_path / "self.yaml", "_base_: self.yaml\n")
    with pytest.raises(ConfigError, match=r"cycle: .*self\.yaml -> .*self\.yaml"):
        load_raw(tmp_path / "self.yaml")


def test_a_diamond_of_bases_is_no_cycle(tmp_path: Path) -> None:
    _write(tmp_path / "root.yaml", "train: {seed: 3}\n")
    _write(tmp_path / "left.yaml", "_base_: root.yaml\ntrain: {max_epoch: 2}\n")
    _write(tmp_path / "right.yaml", "_base_: root.yaml\ntrain: {per_batch_size: 2}\n")
    top = _write(tmp_path / "top.yaml", "_base_: [left.yaml, right.yaml]\n")
    assert load_raw(top)["train"] == {"seed": 3, "max_epoch": 2, "per_batch_size": 2}
