"""The ``yoloqat`` command line: a Typer app whose commands live in sibling modules.

Each command module defines ``register(app)`` and wraps its commands with
:func:`yoloqat.cli.common.handle_errors`, which turns a
:class:`~yoloqat.core.errors.YoloqatError` into one clear line, a hint and the exit code of
its class (tracebacks only with ``YOLOQAT_DEBUG=1``). Usage errors exit with 2.
"""

from __future__ import annotations

import importlib
from typing import Optional

import typer

from yoloqat.core.version import __version__

#: Command modules, in ``--help`` order.
COMMAND_MODULES = [
    "demo",
    "train",
    "eval",
    "predict",
    "export",
    "quant_report",
    "benchmark",
    "calibrate",
    "synth",
    "darknet",
    "inspect",
]


def _normalize(token: str) -> str:
    return token.replace("_", "-")


app = typer.Typer(
    name="yoloqat",
    help="Object detection on MindSpore: detector families as plugins, int8 QAT and PTQ, "
    "real int8 deployment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # --per_batch_size and --per-batch-size alike (cli/common.py: normalize_token)
    context_settings={"help_option_names": ["-h", "--help"], "token_normalize_func": _normalize},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"yoloqat {__version__}")
        raise typer.Exit(0)


@app.callback()
def _global(
    version: Optional[bool] = typer.Option(
        None, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
    disable_plugin: list[str] = typer.Option(
        [],
        "--disable-plugin",
        metavar="NAME",
        help="Block a plugin by name (repeatable; also YOLOQAT_DISABLE_PLUGINS=a,b).",
    ),
    strict_plugins: bool = typer.Option(
        False, "--strict-plugins", help="A plugin that fails to load is an error (exit code 4)."
    ),
    max_file_size: Optional[str] = typer.Option(
        None,
        "--max-file-size",
        metavar="SIZE",
        help="Largest input file read, for every kind (e.g. 8G; default per kind: images "
        "256M, annotations 2G, configs 16M, checkpoints 16G, ONNX and .weights 4G; also "
        "YOLOQAT_MAX_FILE_SIZE).",
    ),
    max_image_pixels: Optional[int] = typer.Option(
        None,
        "--max-image-pixels",
        metavar="N",
        help="Largest image decoded, width x height (default 178956970, Pillow's; also "
        "YOLOQAT_MAX_IMAGE_PIXELS).",
    ),
    allow_outside_paths: bool = typer.Option(
        False,
        "--allow-outside-paths",
        help="Let image paths in annotation files and image lists point outside the dataset's "
        "folder (also YOLOQAT_ALLOW_OUTSIDE_PATHS=1).",
    ),
    strict_data: bool = typer.Option(
        False,
        "--strict-data",
        help="Make data warnings errors: annotations naming no image, repeated annotation "
        "ids, boxes dropped as invalid (also YOLOQAT_STRICT_DATA=1).",
    ),
) -> None:
    """Global options, applied before any command."""
    from yoloqat.cli import render
    from yoloqat.cli.common import exit_on_error
    from yoloqat.core import limits
    from yoloqat.registry import configure_default

    render.install()
    configure_default(disabled=disable_plugin, strict=strict_plugins)
    with exit_on_error():
        limits.configure(
            max_file_size=max_file_size,
            max_image_pixels=max_image_pixels,
            allow_outside=allow_outside_paths,
            strict=strict_data,
        )


for _name in COMMAND_MODULES:
    importlib.import_module(f"yoloqat.cli.{_name}").register(app)


def main(argv: Optional[list[str]] = None) -> None:
    """Console-script entry point (errors are mapped to exit codes by each command)."""
    from yoloqat.cli.common import install_signal_handlers

    install_signal_handlers()  # Ctrl-C from the start: one line and exit 130, no traceback
    app(args=argv, prog_name="yoloqat")
