"""``yoloqat list``, ``yoloqat plugins`` and ``yoloqat config show``."""

from __future__ import annotations

import json
from typing import Optional

import typer
import yaml
from rich.table import Table

from yoloqat.cli.common import SET_HELP, handle_errors
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


def _checkpoint_config(path: str, overrides: list[str]) -> dict:
    """The config stored in checkpoint ``path`` (what it was trained with), after
    ``overrides``; a CheckpointError when it stores none."""
    from yoloqat.core.config import apply_overrides
    from yoloqat.core.errors import CheckpointError
    from yoloqat.core.schema import check_sections
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
    cfg = apply_overrides(stored, overrides)
    check_sections(cfg)
    return cfg


def config_show(
    config: str = typer.Argument(
        ...,
        help="Config file, bundled config name, or a checkpoint (.ckpt: the config it was "
        "trained with).",
    ),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Show a config (or the one a checkpoint stores) after overrides (its family filled
    in), and build its network,
    quantizer and loss as train would (CPU, no data): a component that breaks its contract,
    or a head and loss that do not match, fail here (exit 4) as in train."""
    from yoloqat.core.config import check_config, component_blocks, load_config, resolve_family
    from yoloqat.engine.pipeline import describe

    cfg = _checkpoint_config(config, set_) if _is_checkpoint(config) else load_config(config, set_)
    reg = _registry()
    cfg = resolve_family(cfg, reg)
    check_config(cfg, reg)
    summary = describe(cfg, reg)
    if as_json:
        typer.echo(json.dumps(cfg, indent=2))
    else:
        typer.echo(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None).rstrip())
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
