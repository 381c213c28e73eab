"""mkdocs hook: the config and command references, generated at build time from the code.

``reference/config.md`` comes from the config schema (``yoloqat.core.schema``: every section,
key, type, default and description) and the registered components' factories (their
parameters are the component blocks' keys); ``reference/cli.md`` from the Typer app (every
command, option, default and help). Nothing is written into ``docs/``: the pages exist only
in the built site, so they cannot drift from the code.
"""

from __future__ import annotations

import inspect
from typing import Any

from mkdocs.structure.files import File


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _type(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) or str(annotation)
    for noise in ("typing.", "Annotated[", "NoneType", "pydantic.types."):
        text = text.replace(noise, "")
    return text


def _default(value: Any) -> str:
    from pydantic_core import PydanticUndefined

    if value is PydanticUndefined or value is inspect.Parameter.empty:
        return "(required)"
    return f"`{value!r}`"


def _section_rows(prefix: str, model: Any) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        sub = None
        from yoloqat.core.schema import Block, _sub_model

        sub = _sub_model(model, name)
        if sub is Block:  # a component block: its keys are its factory's (below)
            sub = None
        rows.append(
            f"| `{prefix}.{name}` | {_md(_type(field.annotation))} | {_default(field.default)} "
            f"| {_md(field.description or '')} |"
        )
        if sub is not None:
            rows.extend(_section_rows(f"{prefix}.{name}", sub))
    return rows


def config_reference() -> str:
    from yoloqat.core.schema import SECTIONS
    from yoloqat.registry import Registry

    out = [
        "# Config keys",
        "",
        "Generated from the code at build time: the schema of the config sections "
        "(`yoloqat/core/schema.py`) and the factories of the bundled components (a "
        "component block's keys are its factory's parameters; `yoloqat list KIND` shows "
        "installed plugins' too). See [Configuration](../configuration.md) for how configs "
        "are written, inherited and overridden.",
        "",
    ]
    for section, model in SECTIONS.items():
        if model is None:
            continue
        out += [
            f"## `{section}`",
            "",
            _md(inspect.getdoc(model) or ""),
            "",
            "| key | type | default | meaning |",
            "|---|---|---|---|",
            *_section_rows(section, model),
            "",
        ]
    out += ["## Component blocks", ""]
    registry = Registry(entry_points=False)
    for comp in registry.components():
        params = comp.parameters
        out += [f"### {comp.kind} `{comp.name}`", "", _md(comp.summary), ""]
        if params:
            out += ["| parameter | default |", "|---|---|"]
            out += [f"| `{n}` | {_default(p.default)} |" for n, p in params.items()]
        out.append("")
    return "\n".join(out)


def cli_reference() -> str:
    import typer

    from yoloqat.cli import app

    group = typer.main.get_command(app)
    # typer's own vendored click: its Context, and groups told apart by list_commands
    ctx = type(group).__mro__[1].__module__  # e.g. typer._click.core
    import importlib

    ctx = importlib.import_module(ctx).Context(group, info_name="yoloqat")
    out = [
        "# Commands",
        "",
        "Generated from the command definitions at build time (`yoloqat COMMAND --help` "
        "prints the same). Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 config or "
        "data error, 4 plugin error, 130 interrupted.",
        "",
        "## Global options",
        "",
        *_options(group),
    ]

    def walk(command: Any, path: str) -> None:
        nonlocal out
        if hasattr(command, "list_commands"):
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), f"{path} {name}")
            return
        out += [f"## `{path}`", "", _md(command.help or ""), "", *_options(command), ""]

    for name in group.list_commands(ctx):
        walk(group.get_command(ctx, name), f"yoloqat {name}")
    return "\n".join(out)


def _options(command: Any) -> list[str]:
    rows = []
    for param in command.params:  # typer's own parameter classes: duck-typed
        kind = getattr(param, "param_type_name", "")
        if kind == "argument":
            help_text = _md(getattr(param, "help", "") or "")
            rows.append(f"| `{param.name.upper()}` (argument) | | {help_text} |")
            continue
        if kind != "option" or getattr(param, "hidden", False):
            continue
        names = ", ".join(f"`{o}`" for o in (*param.opts, *param.secondary_opts))
        empty = param.default in (None, ()) or (param.is_flag and not param.default)
        default = "(required)" if param.required else ("" if empty else f"`{param.default}`")
        rows.append(f"| {names} | {default} | {_md(param.help or '')} |")
    if not rows:
        return []
    return ["| option | default | meaning |", "|---|---|---|", *rows, ""]


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the site."""
    files.append(File.generated(config, "reference/config.md", content=config_reference()))
    files.append(File.generated(config, "reference/cli.md", content=cli_reference()))
    return files
