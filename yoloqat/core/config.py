"""YAML configs: loading, bundled-config lookup and ``--set dotted.key=value`` overrides.

Precedence (lowest first): factory defaults < config file < command-line flags < ``--set``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from yoloqat.core.errors import ConfigError
from yoloqat.core.schema import DEFAULT_CALLBACKS, Config, as_config

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

__all__ = ["DEFAULT_CALLBACKS", "Config", "as_config"]  # and every public name below


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-4`` / ``5E3`` as floats (YAML 1.1 wants ``1.0e-4``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)?\.?[0-9_]*[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


BUNDLED_DIR = Path(__file__).resolve().parents[1] / "configs"

#: Config blocks that name a component: dotted path -> component kind.
COMPONENT_BLOCKS: dict[str, str] = {
    "model.backbone": "backbone",
    "model.head": "head",
    "quantizer": "quantizer",
    "loss": "loss",
    "scheduler": "scheduler",
    "dataset": "dataset",
}


#: Parameters the pipeline passes to a block's factory itself (not written in configs). A
#: loss may also declare any key of its head's ``loss_params``; those are checked when built.
PROVIDED: dict[str, tuple[str, ...]] = {
    "model.head": ("in_channels", "in_strides", "num_classes"),
    "loss": ("num_classes", "strides"),
}

#: Preset keys of a family (:mod:`yoloqat.core.contracts.family`) -> config block paths.
FAMILY_BLOCKS: dict[str, str] = {
    "backbone": "model.backbone",
    "head": "model.head",
    "loss": "loss",
}


def bundled_configs() -> list[str]:
    """Names of the configs shipped with yoloqat (without ``.yaml``)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def resolve_config_path(config: str | Path) -> Path:
    """A path as given if it exists, else a bundled config of that name."""
    path = Path(config)
    if path.exists() and not path.is_dir():  # a device or pipe is refused when read
        return path
    for candidate in (BUNDLED_DIR / path.name, BUNDLED_DIR / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"config file not found: {config}",
        hint=f"bundled configs: {', '.join(bundled_configs()) or 'none'}",
    )


def plain(cfg: Config | Mapping[str, Any]) -> Mapping[str, Any]:
    """A :class:`Config` as its dict (:meth:`Config.to_dict`); a mapping as it is."""
    return cfg.to_dict() if isinstance(cfg, Config) else cfg


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors naming the file and line."""
    from yoloqat.core.limits import read_input_bytes

    try:
        text = read_input_bytes(path, "config", error=ConfigError, what="config").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config {path} is not UTF-8 text ({exc})") from None
    try:
        data = yaml_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML in {path}{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into keys and a YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    key, raw = item.split("=", 1)
    keys = [k.strip() for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"--set {item!r}: empty key in '{key}'")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
    return keys, value


def set_dotted(cfg: dict[str, Any], keys: list[str], value: Any) -> None:
    """Set ``cfg[k1][k2]...`` creating intermediate mappings."""
    node = cfg
    for i, key in enumerate(keys[:-1]):
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        if not isinstance(child, dict):
            dotted = ".".join(keys[: i + 1])
            raise ConfigError(f"cannot set {'.'.join(keys)}: {dotted} is a {type(child).__name__}")
        node = child
    node[keys[-1]] = value


def get_dotted(cfg: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """Read ``cfg`` at a dotted path, ``default`` where missing."""
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


_MISSING = object()


def lookup(cfg: Mapping[str, Any], dotted: str) -> tuple[bool, Any]:
    """``(True, value)`` when ``cfg`` holds the dotted path, else ``(False, None)``."""
    value = get_dotted(cfg, dotted, _MISSING)
    return (False, None) if value is _MISSING else (True, value)


def read(cfg: Config | Mapping[str, Any] | None, dotted: str) -> Any:
    """A section key of ``cfg`` (``"eval.testing_shape"``): its value, or the schema's
    default when ``cfg`` (a raw dict, e.g. a checkpoint's stored config, not validated)
    leaves it out or null. A :class:`Config` is read by attribute."""
    from yoloqat.core.schema import default

    if isinstance(cfg, Config):
        node: Any = cfg
        for part in dotted.split("."):
            node = getattr(node, part)
        return node
    value = get_dotted(cfg or {}, dotted)
    return default(dotted) if value is None else value


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``cfg`` with every ``dotted.key=value`` applied in order."""
    out = copy.deepcopy(cfg)
    for item in overrides:
        keys, value = parse_override(item)
        set_dotted(out, keys, value)
    return out


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``base`` (mappings merge, other values replace)."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: The key naming the config(s) a config inherits from.
BASE_KEY = "_base_"


def load_layers(config: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The files a config is made of, lowest precedence first: each ``(path, its keys)``
    (without ``_base_``). ``_base_`` names one config or a list (later ones win), each a
    path relative to the naming file or a bundled config's name; its own bases come first.
    A missing base is an error naming the file and the key, a cycle one naming the chain."""
    return _layers(resolve_config_path(config).resolve(), ())


def _layers(path: Path, chain: tuple[Path, ...]) -> list[tuple[Path, dict[str, Any]]]:
    if path in chain:
        names = " -> ".join(str(p) for p in (*chain[chain.index(path) :], path))
        raise ConfigError(f"config inheritance cycle: {names}", hint=f"remove one {BASE_KEY}")
    data = load_yaml(path)
    bases = data.pop(BASE_KEY, None)
    if bases is None:
        bases = []
    elif isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list) or not all(isinstance(b, str) and b for b in bases):
        raise ConfigError(f"{path}: {BASE_KEY}={bases!r}: expected a config name or a list")
    layers: list[tuple[Path, dict[str, Any]]] = []
    for base in bases:
        layers += _layers(_base_path(base, path), (*chain, path))
    layers.append((path, data))
    return layers


def _base_path(base: str, owner: Path) -> Path:
    """Where ``_base_: base`` of config ``owner`` is: beside ``owner``, else bundled."""
    beside = owner.parent / Path(base).expanduser()
    if beside.is_file():
        return beside.resolve()
    for candidate in (BUNDLED_DIR / base, BUNDLED_DIR / f"{base}.yaml"):
        if candidate.is_file():
            return candidate.resolve()
    raise ConfigError(
        f"{owner}: {BASE_KEY}: {base!r} not found (no file {beside}, no bundled config {base!r})",
        hint=f"bundled configs: {', '.join(bundled_configs()) or 'none'}",
    )


def merge_layer(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`merge` for config layers: a component block naming another component than
    the base's replaces it whole (its parameters belong to the other factory)."""
    out = merge(base, update)
    for dotted in COMPONENT_BLOCKS:
        mine, theirs = get_dotted(update, dotted), get_dotted(base, dotted)
        if (
            isinstance(mine, Mapping)
            and isinstance(theirs, Mapping)
            and mine.get("name", theirs.get("name")) != theirs.get("name")
        ):
            set_dotted(out, dotted.split("."), copy.deepcopy(dict(mine)))
    return out


def load_raw(config: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """A config file (or bundled config name) with its bases merged in and ``--set``
    overrides applied: the raw dict, not yet checked (:func:`load_config` checks it)."""
    cfg: dict[str, Any] = {}
    for _path, data in load_layers(config):
        cfg = merge_layer(cfg, data)
    return apply_overrides(cfg, overrides)


def load_config(config: str | Path, overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Load a config file (or bundled config name, bases merged), apply ``--set``
    overrides, check sections.

    The non-component sections are checked against :mod:`yoloqat.core.schema` (unknown
    keys, types, ranges); component blocks are checked by :func:`check_config`.
    """
    from yoloqat.core.schema import check_sections

    cfg = load_raw(config, overrides)
    check_sections(cfg)
    return cfg


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """The leaves of a nested mapping by dotted path (lists and empty mappings are leaves)."""
    if isinstance(value, Mapping) and (value or not prefix):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def provenance(
    resolved: Mapping[str, Any],
    layers: Iterable[tuple[str, Any]],
    under: Iterable[tuple[str, Any]] = (),
) -> dict[str, str]:
    """Where each leaf of ``resolved`` came from: the last of ``layers`` (``(source,
    mapping)``, lowest precedence first) that sets it, else the first of ``under`` that
    holds it (a family preset: it fills what the layers leave unset), else ``default``
    (the schema's). A null in a layer unsets what lower layers set below it
    (``backbone: null`` leaves the block to the family)."""
    paths = list(leaves(resolved))
    where: dict[str, str] = {}
    for source, layer in layers:
        for key, value in leaves(layer).items():
            below = [p for p in paths if p == key or p.startswith(key + ".")]
            for path in below:
                if value is None and path != key:
                    where.pop(path, None)
                else:
                    where[path] = source
    for source, layer in under:
        for key in leaves(layer):
            for path in paths:
                if (path == key or path.startswith(key + ".")) and path not in where:
                    where[path] = source
    return {path: where.get(path, "default") for path in paths}


def component_blocks(cfg: Config | Mapping[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """The component blocks present in ``cfg``: (dotted path, kind, name, params)."""
    cfg = plain(cfg)
    found = []
    for dotted, kind in COMPONENT_BLOCKS.items():
        block = get_dotted(cfg, dotted)
        if block is None:
            continue
        if isinstance(block, str):
            block = {"name": block}
        if not isinstance(block, Mapping) or "name" not in block:
            raise ConfigError(f"{dotted}: expected a mapping with a 'name' key, got {block!r}")
        params = {k: v for k, v in block.items() if k != "name"}
        found.append((dotted, kind, str(block["name"]), params))
    return found


def callback_blocks(cfg: Config | Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``train.callbacks`` as (where, name, params): each entry a name or a ``name`` block."""
    cfg = plain(cfg)
    entries = get_dotted(cfg, "train.callbacks")
    if entries is None:
        entries = list(DEFAULT_CALLBACKS)
    if not isinstance(entries, (list, tuple)):
        raise ConfigError(
            f"train.callbacks={entries!r} is not valid: expected a list of callback names",
            hint=f"e.g. train.callbacks: [{', '.join(DEFAULT_CALLBACKS)}, tensorboard]",
        )
    found = []
    for index, entry in enumerate(entries):
        where = f"train.callbacks[{index}]"
        block = {"name": entry} if isinstance(entry, str) else entry
        if not isinstance(block, Mapping) or "name" not in block:
            raise ConfigError(f"{where}: expected a name or a mapping with 'name', got {entry!r}")
        params = {k: v for k, v in block.items() if k != "name"}
        found.append((where, str(block["name"]), params))
    names = [name for _, name, _ in found]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"train.callbacks names {', '.join(twice)} more than once")
    return found


def family_block(cfg: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(name, params)`` of the config's ``family`` (a name or a ``name`` block), or None."""
    block = cfg.get("family")
    if block is None:
        return None
    if isinstance(block, str):
        return block, {}
    if not isinstance(block, Mapping) or not isinstance(block.get("name"), str):
        raise ConfigError(
            f"family: expected a family name or a mapping with a 'name', got {block!r}",
            hint="e.g. family: yolov3_tiny (yoloqat list family)",
        )
    return block["name"], {k: v for k, v in block.items() if k != "name"}


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """A warning event, once per process (configs are resolved several times a command)."""
    if message not in _WARNED:
        from yoloqat.core import events

        _WARNED.add(message)
        events.warn(message)


def resolve_family(cfg: Config | Mapping[str, Any], registry: ComponentRegistry) -> dict[str, Any]:
    """``cfg`` with its ``family`` preset filled in (a copy; ``cfg`` itself when it names no
    family). The preset's backbone, head and loss blocks are the base; a config block that
    names the same component (or none) overrides single parameters, one that names another
    component replaces the preset's; the preset's ``data`` and ``eval`` defaults go under
    the config's own. Resolving twice gives the same config."""
    cfg = plain(cfg)
    found = family_block(cfg)
    if found is None:
        return dict(cfg)
    name, params = found
    try:
        preset = registry.create("family", name, **params)
    except ConfigError as exc:
        if not exc.message.startswith("family"):
            exc.message = f"family: {exc.message}"
            exc.args = (exc.message,)
        raise
    out = copy.deepcopy(dict(cfg))
    for key, dotted in FAMILY_BLOCKS.items():
        base = dict(preset[key])
        mine = get_dotted(out, dotted)
        if isinstance(mine, str):
            mine = {"name": mine}
        if mine is None:
            block = base
        elif isinstance(mine, Mapping) and mine.get("name", base["name"]) == base["name"]:
            block = merge(base, mine)
        else:
            block = mine
            _warn_once(
                f"family {name}: {dotted} names '{block.get('name')}', not the family's "
                f"'{base['name']}'; the config's block is used (--set {dotted}=null takes the "
                "family's)"
            )
        set_dotted(out, dotted.split("."), block)
    for section in ("data", "eval"):
        if section in preset:
            mine = out.get(section)
            out[section] = merge(preset[section], mine if isinstance(mine, Mapping) else {})
    return out


def check_config(cfg: Config | Mapping[str, Any], registry: ComponentRegistry) -> Config:
    """Check every section, component name and parameter before anything is built; return
    the validated :class:`Config` (a raw ``cfg`` is validated here, a Config is not again).

    ``quantizer: {name: none}`` means no quantization and is always accepted. A block that
    holds parameters its component does not take (typically left over from the component
    it named before ``--set model.backbone.name=X``) is an error naming them; nothing is
    dropped silently.
    """
    config = as_config(cfg)
    cfg = resolve_family(config.to_dict(), registry)
    for dotted, kind, name, params in component_blocks(cfg):
        if kind == "quantizer" and name == "none":
            continue
        _check_leftovers(dotted, kind, name, params, registry)
        try:
            registry.check(kind, name, params, where=dotted, provided=PROVIDED.get(dotted, ()))
        except ConfigError as exc:
            if not exc.message.startswith(dotted):
                exc.message = f"{dotted}: {exc.message}"
                exc.args = (exc.message,)
            raise
    for where, name, params in callback_blocks(cfg):
        try:
            registry.check("callback", name, params, where=where)
        except ConfigError as exc:
            if not exc.message.startswith(where):
                exc.message = f"{where}: {exc.message}"
                exc.args = (exc.message,)
            raise
    return config


def _check_leftovers(
    dotted: str, kind: str, name: str, params: Mapping[str, Any], registry: ComponentRegistry
) -> None:
    """Parameters ``name`` does not accept, none of them a near-miss of one it does."""
    import difflib

    try:
        comp = registry.get(kind, name)
    except Exception:  # an unknown name: registry.check says so, with suggestions
        return
    if getattr(comp, "accepts_any", False):
        return
    accepted = list(comp.parameters)
    foreign = [k for k in params if k not in accepted]
    if not foreign or any(difflib.get_close_matches(k, accepted, n=1) for k in foreign):
        return  # a misspelt parameter: registry.check suggests the right one
    kept = ", ".join(f"{k}: {params[k]!r}" for k in params if k in accepted)
    example = f"{{name: {name}{', ' + kept if kept else ''}, ...}}"
    raise ConfigError(
        f"{dotted}: {kind} '{name}' does not take the parameter(s) {', '.join(foreign)} "
        f"still in the block (left from the component it named before?); nothing is dropped "
        f"silently. Parameters of '{name}': {', '.join(accepted) or 'none'}",
        hint=f"replace the whole block: --set '{dotted}={example}'",
    )
