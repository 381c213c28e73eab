"""Shared CLI plumbing: error handling around every command, and common option texts."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import typer

from yoloqat.core.errors import (
    EXIT_INTERRUPT,
    EXIT_RUNTIME,
    Interrupted,
    UsageError,
    YoloqatError,
)

F = TypeVar("F", bound=Callable[..., Any])

SET_HELP = "Override a config value: dotted.key=value (repeatable; applied last)."
RUNTIME_HELP = (
    "Runtime for the exported model: onnxruntime (default for .onnx) or openvino (default "
    "for an OpenVINO IR .xml; yoloqat's optional 'openvino' extra), or a plugin's runtime "
    "('yoloqat list runtime' lists them)."
)


def _debug() -> bool:
    return os.environ.get("YOLOQAT_DEBUG") == "1"


def print_error(message: str, hint: str | None = None) -> None:
    """One red error line (plus a dim hint) on stderr."""
    from rich.markup import escape

    from yoloqat.cli.render import err_console

    # escaped: a hint like pip install "yoloqat[openvino]" is text, not Rich markup
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[dim]hint:[/] {escape(hint)}", highlight=False, soft_wrap=True)


def _on_signal(signum: int, _frame: Any) -> None:
    """SIGINT/SIGTERM outside training: one line, unfinished temporaries removed, exit 130.

    Raising ``KeyboardInterrupt`` instead would surface inside MindSpore's graph compiler
    as pages of traceback; training installs its own handler (it saves a checkpoint).
    """
    from yoloqat.core import atomic

    atomic.discard_active()
    name = signal.Signals(signum).name
    try:
        sys.stderr.write(f"interrupted by {name}\n")
        sys.stderr.flush()
    finally:
        os._exit(EXIT_INTERRUPT)


def install_signal_handlers() -> dict[int, Any]:
    """Route SIGINT and SIGTERM to :func:`_on_signal` (main thread only); return the old ones."""
    previous: dict[int, Any] = {}
    if _debug():  # Python's own KeyboardInterrupt, with its traceback
        return previous
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    return previous


def _restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def handle_errors(func: F) -> F:
    """Turn yoloqat errors into one line + hint + the class's exit code; Ctrl-C into 130."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        previous = install_signal_handlers()
        try:
            return func(*args, **kwargs)
        except Interrupted as exc:
            print(exc.message, file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except YoloqatError as exc:
            if _debug():
                traceback.print_exc()
            print_error(exc.message, exc.hint)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise typer.Exit(EXIT_INTERRUPT) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            if _debug():
                traceback.print_exc()
            print_error(
                f"unexpected {type(exc).__name__}: {exc}",
                "rerun with YOLOQAT_DEBUG=1 for the traceback",
            )
            raise typer.Exit(EXIT_RUNTIME) from None
        finally:
            _restore_signal_handlers(previous)

    return cast(F, wrapper)  # functools.wraps: same signature


@contextlib.contextmanager
def exit_on_error() -> Iterator[None]:
    """Inside the block, a yoloqat error prints its line and hint and exits with its code
    (for code that runs outside a command, e.g. the global options)."""
    try:
        yield
    except YoloqatError as exc:
        print_error(exc.message, exc.hint)
        raise typer.Exit(exc.exit_code) from None


def opt(default: Any, *names: str, help: str, **kw: Any) -> Any:
    """An option named ``--name`` for each of ``names`` (the seed's underscore spelling).

    The dashed spelling (``--per-batch-size``) works too without being listed: the app
    normalises ``_`` to ``-`` in option names (:func:`normalize_token`), so ``--help``
    shows each name once.
    """
    return typer.Option(default, *(f"--{name}" for name in names), help=help, **kw)


def config_help(text: str, key: str) -> str:
    """``text`` plus where a flag's value comes from when it is not given: the config's
    ``key`` (and the schema's default for it, when the schema has one)."""
    from yoloqat.core.schema import default

    text = text.rstrip(".")
    try:
        value = default(key)
    except KeyError:  # a component parameter: its factory's signature holds the default
        return f"{text} (default: {key})"
    return f"{text} (default: {key}, {value})"


def normalize_token(token: str) -> str:
    """Option and command names with ``_`` and ``-`` alike (``--per_batch_size`` is
    ``--per-batch-size``, ``quant_report`` is ``quant-report``)."""
    return token.replace("_", "-")


def command(app: typer.Typer, name: str, **kwargs: Any) -> Callable[[F], F]:
    """Register ``func`` as command ``name`` of ``app`` with :func:`handle_errors`."""

    def decorator(func: F) -> F:
        app.command(name, **kwargs)(handle_errors(func))
        return func

    return decorator


def check_inputs(**paths: str | None) -> None:
    """A file or folder named on the command line that is not there is a usage error (exit
    2, as Click's own ``exists=True`` checks): the command line is what to fix. Paths
    inside a config file stay config errors (exit 3)."""
    for flag, value in paths.items():
        if value is not None and not Path(value).expanduser().exists():
            raise UsageError(f"--{flag} {value}: no such file or folder")
