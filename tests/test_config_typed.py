"""The typed config (issue 25): one validated :class:`Config` that the code reads, every
default once in the schema, one validation per command.

The source scans below read ``yoloqat/engine`` and ``yoloqat/cli`` (the code that reads
configs) with :mod:`ast`, so comments and docstrings do not count; each names the file
and line of what it finds.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from yoloqat.core import schema
from yoloqat.core.config import as_config, load_config, read
from yoloqat.core.errors import ConfigError
from yoloqat.core.schema import Config

ROOT = Path(__file__).resolve().parents[1] / "yoloqat"
READERS = [ROOT / "engine", ROOT / "cli"]
#: Top-level config sections whose keys have defaults in the schema.
SECTIONS = ("train", "data", "eval", "model")


def _sources() -> Iterator[tuple[Path, ast.AST]]:
    for folder in READERS:
        for path in sorted(folder.rglob("*.py")):
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT.parent)}:{getattr(node, 'lineno', '?')}"


def _schema_fields() -> dict[str, object]:
    """Every section key of the schema (``per_batch_size``, ``train.per_batch_size``, ...)
    with its default."""
    out: dict[str, object] = {}

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            sub = schema._sub_model(model, name)
            if sub is not None and name not in ("backbone", "head"):
                walk(sub, f"{prefix}{name}.")
                continue
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                continue
            value = field.get_default(call_default_factory=True)
            out[f"{prefix}{name}"] = value
            out.setdefault(name, value)

    for section in SECTIONS:
        walk(schema._sub_model(Config, section), f"{section}.")  # type: ignore[arg-type]
    return out


def _is_literal(node: ast.AST) -> bool:
    """A literal value: a constant, or a tuple/list/dict of literals (``(320, 352)``)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return True
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_is_literal(e) for e in node.elts)
    return False


def test_no_dotted_config_reads_with_local_defaults() -> None:
    """(a) No ``get_dotted(cfg, key, default)``, no ``cfg.get("train")``-style section reads
    in the engine or the CLI: they read :class:`Config` attributes (or, for a raw dict
    such as a checkpoint's stored config, :func:`~yoloqat.core.config.read`, whose
    default is the schema's)."""
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "get_dotted" and (len(node.args) > 2 or node.keywords):
                found.append(f"{_where(path, node)}: get_dotted with a default")
            first = node.args[0] if node.args else None
            section = first.value if isinstance(first, ast.Constant) else None
            if name == "get" and section in SECTIONS and isinstance(func, ast.Attribute):
                receiver = ast.unparse(func.value)
                if "cfg" in receiver or "config" in receiver or receiver == "source":
                    found.append(f"{_where(path, node)}: {receiver}.get({section!r})")
            if name in ("_train", "_data", "_eval") and len(node.args) >= 3:
                found.append(f"{_where(path, node)}: {name}(cfg, key, default)")
    assert not found, "config reads with local defaults:\n" + "\n".join(found)


def _config_like(node: ast.AST) -> bool:
    """Source text that names a config (``cfg``, ``config``, ``stored``, a ``section``)."""
    text = ast.unparse(node)
    return any(word in text for word in ("cfg", "config", "stored", "section"))


def test_every_schema_default_is_declared_once() -> None:
    """(b) A schema key is not given a second default in the engine or the CLI: no read of
    a config passes a key's name (``"per_batch_size"`` or ``"train.per_batch_size"``)
    together with a literal (``cfg.get("per_batch_size", 16)``, ``_train(cfg, "seed", 1)``),
    no ``<config read of a key> or <literal>``, and no dict literal maps two or more keys
    of the schema to non-string literals (an ``EVAL_DEFAULTS`` table)."""
    fields = _schema_fields()
    found = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                receiver = func.value if isinstance(func, ast.Attribute) else None
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                args = list(node.args) + [k.value for k in node.keywords]
                on_config = (receiver is not None and _config_like(receiver)) or (
                    bool(node.args) and _config_like(node.args[0])
                )
                strings = [a.value for a in args if isinstance(a, ast.Constant)]
                keys = [v for v in strings if isinstance(v, str) and v in fields]
                literals = [
                    a
                    for a in args
                    if _is_literal(a)
                    and not (isinstance(a, ast.Constant) and isinstance(a.value, str))
                ]
                if on_config and keys and literals and name != "opt":
                    shown = [ast.unparse(a) for a in literals]
                    found.append(f"{_where(path, node)}: {name}(.., {keys[0]!r}, {shown})")
            elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                head, tail = node.values[0], node.values[-1]
                text = ast.unparse(head)
                named = any(f"'{k}'" in text or f".{k}" in text for k in fields)
                if named and _config_like(head) and _is_literal(tail):
                    found.append(f"{_where(path, node)}: {text} or {ast.unparse(tail)}")
            elif isinstance(node, ast.Dict):
                keys = [
                    k.value
                    for k, v in zip(node.keys, node.values)
                    if isinstance(k, ast.Constant)
                    and k.value in fields
                    and _is_literal(v)
                    and not (isinstance(v, ast.Constant) and isinstance(v.value, str))
                ]
                if len(keys) >= 2:
                    found.append(f"{_where(path, node)}: a table of defaults {keys}")
    assert not found, "defaults declared outside the schema:\n" + "\n".join(found)


def test_train_flags_default_to_not_given() -> None:
    """Every ``yoloqat train`` flag that sets a config key defaults to None (not given: the
    config's value holds) and its help names the config key it falls back to."""
    import inspect

    from yoloqat.cli.train import train
    from yoloqat.engine.training.setup import FLAG_TO_KEY

    for name, param in inspect.signature(train).parameters.items():
        if name in FLAG_TO_KEY:
            assert param.default.default is None, f"--{name} has a default of its own"
            assert FLAG_TO_KEY[name] in param.default.help, f"--{name}: {param.default.help}"


def test_the_scans_find_what_they_look_for(tmp_path: Path, monkeypatch) -> None:
    """The two scans above fail on the patterns this issue removed (they can fail)."""
    bad = tmp_path / "engine"
    bad.mkdir()
    (bad / "bad.py").write_text(
        "def f(cfg, get_dotted, _train):\n"
        "    a = get_dotted(cfg, 'train.max_epoch', 1)\n"
        "    b = cfg.get('train') or {}\n"
        "    c = _train(cfg, 'per_batch_size', 16)\n"
        "    d = section.get('per_batch_size', 16)\n"
        "    e = cfg.train.ckpt_path or 'outputs'\n"
        "    f = get_dotted(cfg, 'eval.testing_shape') or 416\n"
        "    EVAL = {'score_threshold': 0.001, 'nms_threshold': 0.5}\n"
    )
    monkeypatch.setattr(__import__(__name__), "READERS", [bad])
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    with pytest.raises(AssertionError) as first:
        test_no_dotted_config_reads_with_local_defaults()
    message = first.value.args[0].split("\nassert")[0]
    assert [f"bad.py:{n}:" in message for n in range(2, 9)] == [1, 1, 1, 0, 0, 0, 0], message
    with pytest.raises(AssertionError) as second:
        test_every_schema_default_is_declared_once()
    message = second.value.args[0].split("\nassert")[0]
    assert [f"bad.py:{n}:" in message for n in range(2, 9)] == [1, 0, 1, 1, 1, 1, 1], message


def test_config_is_read_by_attribute_with_the_schema_defaults() -> None:
    cfg = as_config(load_config("synth_tiny_quant"))
    assert cfg.train.per_batch_size == 16 and cfg.train.max_epoch == 3
    assert cfg.quantizer is not None and cfg.quantizer.name == "int8_qat"
    assert cfg.quantizer.params["ema_init"] == "first_batch"
    empty = as_config({})
    assert empty.train.per_batch_size == 16 and empty.eval.testing_shape == 416
    assert empty.data.multi_scale == [320, 352, 384, 416, 448, 480, 512, 544, 576, 608]
    assert as_config(cfg) is cfg  # a Config is not validated again
    assert as_config(cfg.to_dict()) == cfg
    # a raw dict (a checkpoint's stored config) reads the same defaults
    assert read({}, "eval.testing_shape") == 416 == read(empty, "eval.testing_shape")
    assert read({"train": {"seed": 5}}, "train.seed") == 5
    with pytest.raises(ConfigError, match=r"train\.per_batch_sise is not a known key"):
        as_config({"train": {"per_batch_sise": 2}})
    with pytest.raises(ConfigError, match=r"loss: expected a mapping with a 'name' key"):
        as_config({"loss": {"ignore_threshold": 0.5}})


def test_a_train_run_validates_its_config_once(tmp_path: Path, monkeypatch) -> None:
    """One ``yoloqat train`` (CLI, in-process) checks the config's sections once: the
    trainer and everything below it take the validated Config."""
    from tiny import cli

    from yoloqat.data.synth import make_synthetic_coco

    synth = tmp_path / "data"
    make_synthetic_coco(synth, train=8, val=2, size=64, seed=7, num_classes=3)

    calls = []
    original = schema.check_sections
    monkeypatch.setattr(schema, "check_sections", lambda cfg: (calls.append(1), original(cfg)))
    res = cli(
        "train", "--config", "synth_tiny", "--data_dir", str(synth),
        "--ckpt_path", str(tmp_path / "runs"), "--max_epoch", "1", "--per_batch_size", "8",
        "--training_shape", "64", "--set", "model.backbone.width=0.0625",
        "--set", "model.head.width=0.0625", "--set", "model.backbone.blocks=[1, 1, 1, 1, 1]",
        "--set", "model.num_classes=3", "--set", "train.log_interval=1",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert len(calls) == 1, f"the config was validated {len(calls)} times"
    # the checkpoint stores the resolved config: every default filled in, paths absolute
    from yoloqat.engine.checkpoints import read_checkpoint

    (ckpt,) = (tmp_path / "runs").glob("*/ckpt_0/0-1_*.ckpt")
    stored = read_checkpoint(ckpt)[1]["config"]
    assert stored["train"]["need_profiler"] == 0  # in no file: the schema's default
    assert stored["train"]["per_batch_size"] == 8  # the flag
    assert stored["dataset"]["data_dir"] == str(synth.resolve())
    assert as_config(stored).to_dict() == stored
