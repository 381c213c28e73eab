"""``yoloqat list``, ``yoloqat plugins`` and ``yoloqat config show``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Optional

import typer

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry
import yaml
from rich.table import Table

from yoloqat.cli.common import SET_HELP, handle_errors, opt
from yoloqat.cli.render import err_console, out_console
from yoloqat.core.hookspecs import KINDS

config_app = typer.Typer(help="Inspect configs.", no_args_is_help=True)


def _registry():
    from yoloqat.registry import default_registry

    reg = default_registry()
    reg.load()
    for msg in reg.warnings:
        err_console.print(f"[yellow]warning:[/] {msg}", highlight=False)
    return reg


def list_components(
    kind: Optional[str] = typer.Argument(
        None, help=f"Only this kind: {', '.join(KINDS)}.", show_default=False
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the available components (backbones, heads, quantizers, losses, ...)."""
    reg = _registry()
    comps = reg.components(kind)
    if as_json:
        typer.echo(json.dumps([c.to_dict() for c in comps], indent=2))
        return
    table = Table(title="yoloqat components", show_lines=False)
    for col in ("kind", "name", "plugin", "summary"):
        table.add_column(col)
    from rich.markup import escape

    for c in comps:  # a docstring's "[yolo]" is text, not Rich markup
        table.add_row(c.kind, c.name, c.plugin, escape(c.summary))
    out_console.print(table)


def list_plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List plugins: name, distribution, version, hooks and status (loaded/blocked/failed)."""
    reg = _registry()
    plugins = reg.plugins()
    if as_json:
        typer.echo(json.dumps([p.to_dict() for p in plugins], indent=2))
        return
    table = Table(title="yoloqat plugins")
    for col in ("name", "distribution", "version", "hooks", "status"):
        table.add_column(col)
    colours = {"loaded": "green", "blocked": "yellow", "failed": "red"}
    for p in plugins:
        hooks = ", ".join(h.removeprefix("yoloqat_") for h in p.hooks)
        status = f"[{colours[p.status]}]{p.status}[/]"
        if p.error:
            status += f" ({p.error})"
        table.add_row(p.name, p.distribution, p.version, hooks, status)
    out_console.print(table)


def _is_checkpoint(config: str) -> bool:
    """A ``.ckpt`` file (MindSpore reads checkpoints by that suffix only)."""
    from pathlib import Path

    path = Path(config).expanduser()
    return path.suffix.lower() == ".ckpt" and path.is_file()


def _checkpoint_config(path: str) -> dict:
    """The config stored in checkpoint ``path`` (what it was trained with); a
    CheckpointError when it stores none."""
    from yoloqat.core.errors import CheckpointError
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.inference import stored_config

    _params, meta = read_checkpoint(path)
    stored = stored_config(meta)
    if stored is None:
        raise CheckpointError(
            f"checkpoint {path} stores no config (not written by yoloqat train)",
            hint="show the config it was trained with: yoloqat config show CONFIG",
        )
    where = []
    if meta.get("epoch") is not None:
        base = int(meta.get("epoch_base", 0))
        where.append(f"epoch {int(meta['epoch']) - base + 1}")
    if meta.get("global_step") is not None:
        where.append(f"step {meta['global_step']}")
    err_console.print(
        f"the config stored in {path}" + (f" ({', '.join(where)})" if where else ""),
        highlight=False,
    )
    return stored


def _file_label(path: Any) -> str:
    """``file NAME`` for a bundled config, ``file PATH`` for another."""
    from yoloqat.core.config import BUNDLED_DIR

    return f"file {path.name}" if path.parent == BUNDLED_DIR.resolve() else f"file {path}"


def _nested(dotted: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    keys = dotted.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


def assemble(
    config: str, overrides: list[str], flags: dict[str, Any], registry: ComponentRegistry
) -> tuple[Any, list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The checked :class:`~yoloqat.core.schema.Config` of ``config`` (a config file, a
    bundled name or a checkpoint), its family preset filled in, with train ``flags`` and
    ``--set`` ``overrides`` applied (train's precedence); and, for
    :func:`~yoloqat.core.config.provenance`, the layers it was made of (lowest precedence
    first) and the family preset that fills what they leave unset."""
    from yoloqat.core.config import (
        apply_overrides,
        check_config,
        family_block,
        load_layers,
        merge_layer,
        parse_override,
        resolve_family,
    )
    from yoloqat.engine.training.setup import FLAG_TO_KEY, apply_flags

    layers: list[tuple[str, Any]] = []
    if _is_checkpoint(config):
        raw = _checkpoint_config(config)
        layers.append((f"checkpoint {config}", raw))
    else:
        raw = {}
        for path, data in load_layers(config):
            raw = merge_layer(raw, data)
            layers.append((_file_label(path), data))
    raw = apply_flags(raw, dict(flags), registry)
    layers += [(f"flag --{k}", _nested(FLAG_TO_KEY[k], v)) for k, v in flags.items()]
    raw = apply_overrides(raw, overrides)
    for item in overrides:
        keys, value = parse_override(item)
        layers.append(("--set", _nested(".".join(keys), value)))
    under: list[tuple[str, Any]] = []
    found = family_block(raw)
    if found is not None:  # fills what the layers leave unset (resolve_family)
        preset = resolve_family({"family": raw["family"]}, registry)
        preset.pop("family")
        under.append((f"family {found[0]}", preset))
    return check_config(resolve_family(raw, registry), registry), layers, under


def _yaml_lines(value: Any, sources: dict[str, str], prefix: str = "", indent: int = 0) -> list:
    """``value`` as block YAML, each leaf followed by ``# <where it came from>``."""
    lines = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        pad = "  " * indent
        if isinstance(item, dict) and item:
            lines.append((f"{pad}{key}:", ""))
            lines += _yaml_lines(item, sources, f"{path}.", indent + 1)
            continue
        text = yaml.safe_dump(item, default_flow_style=True, width=10**9).strip()
        text = text.removesuffix("...").strip()
        lines.append((f"{pad}{key}: {text}", sources.get(path, "default")))
    return lines


def render_with_sources(cfg: dict[str, Any], sources: dict[str, str]) -> str:
    """The YAML of ``cfg`` with a source comment on every value (still valid YAML)."""
    lines = _yaml_lines(cfg, sources)
    width = max(len(text) for text, _ in lines)
    return "\n".join(
        f"{text.ljust(width)}  # {source}" if source else text for text, source in lines
    )


def config_show(
    config: str = typer.Argument(
        ...,
        help="Config file, bundled config name, or a checkpoint (.ckpt: the config it was "
        "trained with).",
    ),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
    per_batch_size: Optional[int] = opt(None, "per_batch_size", help="As train's flag."),
    max_epoch: Optional[int] = opt(None, "max_epoch", help="As train's flag."),
    lr: Optional[float] = opt(None, "lr", help="As train's flag."),
    data_dir: Optional[str] = opt(None, "data_dir", help="As train's flag."),
    as_json: bool = typer.Option(
        False, "--json", help="Print JSON (the config, without the sources) instead of YAML."
    ),
) -> None:
    """Show the resolved config (file with its _base_ files, family preset, train flags,
    --set; defaults filled in), each value with where it came from: default, file NAME,
    family NAME, flag --NAME, --set or checkpoint PATH. Then build its network,
    quantizer and loss as train would (CPU, no data): a component that breaks its contract,
    or a head and loss that do not match, fail here (exit 4) as in train."""
    from yoloqat.core.config import component_blocks, provenance
    from yoloqat.engine.pipeline import describe

    reg = _registry()
    given = {"per_batch_size": per_batch_size, "max_epoch": max_epoch, "lr": lr}
    flags = {k: v for k, v in {**given, "data_dir": data_dir}.items() if v is not None}
    checked, layers, under = assemble(config, list(set_), flags, reg)
    cfg = checked.to_dict()
    summary = describe(cfg, reg)
    if as_json:
        typer.echo(json.dumps(cfg, indent=2))
    else:
        typer.echo(render_with_sources(cfg, provenance(cfg, layers, under)))
    table = Table(title="components")
    for col in ("block", "kind", "name", "plugin"):
        table.add_column(col)
    for dotted, kind, name, _params in component_blocks(cfg):
        plugin = "-" if name == "none" else reg.get(kind, name).plugin
        table.add_row(dotted, kind, name, plugin)
    err_console.print(table)
    strides = "/".join(str(s) for s in summary["strides"])
    err_console.print(
        f"network: {summary['parameters']:,} parameters ({summary['backbone_parameters']:,} in "
        f"the backbone), {len(summary['strides'])} output(s) at stride {strides}, outputs "
        f"'{summary['output_format']}', targets {summary['targets']}, input sides multiples "
        f"of {summary['input_multiple']}" + (", quantized" if summary["quantized"] else ""),
        highlight=False,
    )


config_app.command("show")(handle_errors(config_show))


def register(app: typer.Typer) -> None:
    app.command("list")(handle_errors(list_components))
    app.command("plugins")(handle_errors(list_plugins))
    app.add_typer(config_app, name="config")
