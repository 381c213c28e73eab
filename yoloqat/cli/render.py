"""CLI rendering: events to stderr, Rich progress on a terminal, plain lines elsewhere."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from yoloqat.core import events

#: Diagnostics and progress go to stderr; data goes to stdout.
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console()


def _format_fields(fields: dict[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if isinstance(value, float):
            parts.append(f"{key} {value:.4g}")
        else:
            parts.append(f"{key} {value}")
    return "  ".join(parts)


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self.progress = progress
        self.task_id = task_id

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.progress.update(self.task_id, advance=n, fields=_format_fields(fields))


class _PlainTask:
    """Log lines for non-terminals: one at most every ``interval`` seconds plus the last."""

    def __init__(self, description: str, total: int | None, interval: float = 10.0) -> None:
        self.description = description
        self.total = total
        self.done = 0
        self.interval = interval
        self.start = self.last = time.monotonic()
        self.fields: dict[str, Any] = {}

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.done += n
        self.fields.update(fields)
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.line()

    def line(self) -> None:
        total = f"/{self.total}" if self.total else ""
        extra = _format_fields(self.fields)
        elapsed = time.monotonic() - self.start
        print(
            f"{self.description}: {self.done}{total} [{elapsed:.0f}s] {extra}".rstrip(),
            file=sys.stderr,
            flush=True,
        )


@contextlib.contextmanager
def _rich_factory(description: str, total: int | None) -> Iterator[events.Task]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[fields]}"),
        console=err_console,
        transient=False,
    )
    with progress:
        task_id = progress.add_task(description, total=total, fields="")
        yield _RichTask(progress, task_id)


@contextlib.contextmanager
def _plain_factory(description: str, total: int | None) -> Iterator[events.Task]:
    task = _PlainTask(description, total)
    yield task
    task.line()


def _on_event(event: events.Event) -> None:
    from rich.markup import escape

    tag = rf"\[rank {_rank}] " if _rank else ""
    # messages are plain text: "[yolo]" or "[net]" in them is not Rich markup
    message = escape(str(event.data.get("message", "")))
    if event.kind == "warning":
        err_console.print(f"[yellow]warning:[/] {tag}{message}", highlight=False)
    elif event.kind == "info" and not _rank:
        err_console.print(message, highlight=False)


_installed = False
#: Data-parallel rank of this process; ranks other than 0 are quiet (see :func:`set_rank`).
_rank = 0


def install(*, progress: bool | None = None) -> None:
    """Subscribe the stderr renderer and pick the progress backend (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    events.subscribe(_on_event)
    use_rich = err_console.is_terminal if progress is None else progress
    events.set_task_factory(_rich_factory if use_rich else _plain_factory)


def set_rank(rank: int) -> None:
    """Make a data-parallel worker other than rank 0 quiet: no progress, no info lines.

    Rank 0 speaks for the job; the other ranks keep only warnings (tagged ``[rank r]``),
    which can be rank-specific (an unreadable image in that rank's shard).
    """
    global _rank
    _rank = int(rank)
    if _rank:
        events.set_task_factory(None)
