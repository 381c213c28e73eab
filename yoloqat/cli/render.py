"""CLI rendering: events to stderr, Rich progress on a terminal, plain lines elsewhere.

Training's events are drawn here: ``train_start`` (the start summary), ``compile`` (a
"compiling the training graph" status with its elapsed seconds, then the time it took),
the bar's fields (the epoch's mean loss, images/s, learning rate and the whole run's
ETA), ``validation`` lines and ``train_end`` (the end summary).
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from yoloqat.core import events

#: Diagnostics and progress go to stderr; data goes to stdout.
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console()

#: How a progress field is labelled (the others by their name, ``_`` read as a space).
LABELS = {"img_s": "img/s", "mean_loss": "mean loss"}
#: Fields shown in a column of their own, not in the list.
OWN_COLUMN = ("eta",)


def hms(seconds: float) -> str:
    """``0:03:10``: hours, minutes, seconds (as Rich shows elapsed time)."""
    total = round(max(float(seconds), 0.0))
    return f"{total // 3600}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _format_fields(fields: Mapping[str, Any]) -> str:
    parts = []
    for key, value in fields.items():
        if key in OWN_COLUMN or value is None:
            continue
        label = LABELS.get(key, key.replace("_", " "))
        if isinstance(value, float):
            parts.append(f"{label} {value:.4g}")
        else:
            parts.append(f"{label} {value}")
    return "  ".join(parts)


def _eta_text(fields: Mapping[str, Any]) -> str | None:
    """``ETA 0:03:10`` of the whole run when the task reports one (training), else None."""
    if "eta" not in fields:
        return None
    eta = fields["eta"]
    return "ETA -:--:--" if eta is None else f"ETA {hms(eta)}"


class _EtaColumn(ProgressColumn):
    """The run's ETA from the task's ``eta`` field; Rich's own estimate for other tasks."""

    def __init__(self) -> None:
        super().__init__()
        self.fallback = TimeRemainingColumn()

    def render(self, task: Any) -> Text:
        text = _eta_text(task.fields.get("values", {}))
        if text is not None:
            return Text(text, style="progress.remaining")
        return Text("ETA ", style="progress.remaining") + self.fallback.render(task)


class _FieldsColumn(ProgressColumn):
    """The task's fields, or a status with its live elapsed seconds (while compiling)."""

    def render(self, task: Any) -> Text:
        status = task.fields.get("status")
        if status is not None:
            text, since = status
            elapsed = time.monotonic() - since
            return Text(f"{text} ... {elapsed:.0f}s", style="yellow", no_wrap=True)
        return Text(task.fields.get("text", ""), no_wrap=True, overflow="ellipsis")


class _RichTask:
    def __init__(self, progress: Progress, task_id: Any) -> None:
        self.progress = progress
        self.task_id = task_id
        self.values: dict[str, Any] = {}

    def advance(self, n: int = 1, **fields: Any) -> None:
        self.values.update(fields)
        self.progress.update(
            self.task_id, advance=n, text=_format_fields(self.values), values=dict(self.values)
        )

    def set_status(self, text: str | None) -> None:
        status = None if text is None else (text, time.monotonic())
        self.progress.update(self.task_id, status=status)


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

    def set_status(self, text: str | None) -> None:
        return None  # plain output prints the compile lines themselves

    def line(self) -> None:
        total = f"/{self.total}" if self.total else ""
        extra = _format_fields(self.fields)
        eta = _eta_text(self.fields)
        if eta is not None:
            extra = f"{eta}  {extra}"
        elapsed = time.monotonic() - self.start
        print(
            f"{self.description}: {self.done}{total} [{elapsed:.0f}s] {extra}".rstrip(),
            file=sys.stderr,
            flush=True,
        )


#: The progress tasks open now, innermost last (a compile status goes to the last).
_open: list[Any] = []


@contextlib.contextmanager
def _rich_factory(description: str, total: int | None) -> Iterator[events.Task]:
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        _EtaColumn(),
        _FieldsColumn(),
        console=err_console,
        transient=False,
    )
    with progress:
        task_id = progress.add_task(description, total=total, text="", values={}, status=None)
        task = _RichTask(progress, task_id)
        _open.append(task)
        try:
            yield task
        finally:
            _open.remove(task)
            progress.update(task_id, status=None)


@contextlib.contextmanager
def _plain_factory(description: str, total: int | None) -> Iterator[events.Task]:
    task = _PlainTask(description, total)
    _open.append(task)
    try:
        yield task
    finally:
        _open.remove(task)
    task.line()


# -- training summaries ----------------------------------------------------------------
def _count(n: int, word: str) -> str:
    plural = word + ("es" if word.endswith("s") else "s")
    return f"{n:,} {word if n == 1 else plural}"


def _names(names: list[str], shown: int = 6) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[: shown - 1]) + f", ... {names[-1]}"


def start_lines(data: Mapping[str, Any]) -> list[str]:
    """The start summary of a run (the ``train_start`` event)."""
    parts = " + ".join(str(p) for p in (data.get("backbone"), data.get("head")) if p)
    quantizer = f", {data['quantizer']} quantization" if data.get("quantizer") else ""
    if data.get("family"):
        what = f"{data['family']} ({parts}{quantizer})" if parts else f"{data['family']}{quantizer}"
    else:
        what = f"{parts or 'a detector'}{quantizer}"
    flops = data.get("gflops") or {}
    sizes = list(data.get("sizes") or [])
    line = f"train {what}: {data.get('parameters', 0):,} parameters"
    if flops:
        values = list(flops.values())
        if len(values) == 1:
            line += f", {values[0]:.3g} GFLOPs at {sizes[0]} px"
        else:
            line += f", {values[0]:.3g}-{values[-1]:.3g} GFLOPs at {sizes[0]}-{sizes[-1]} px"
    elif sizes:
        line += f", {sizes[0]} px" if len(sizes) == 1 else f", {sizes[0]}-{sizes[-1]} px"
    names = list(data.get("class_names") or [])
    classes = _count(int(data.get("num_classes", len(names))), "class")
    if names:
        classes += f" ({_names(names)})"
    data_line = f"data: {data.get('dataset')} {data.get('data')}: {classes}; "
    data_line += _count(int(data.get("train_images", 0)), "train image")
    if data.get("val_images") is not None:
        every = int(data.get("val_interval") or 0)
        when = "after each epoch" if every == 1 else f"every {every} epochs and after the last"
        data_line += f", {data['val_images']:,} val ({when})"
    group = int(data.get("group_size", 1))
    batch = int(data.get("batch_size", 0))
    batch_text = (
        f"batch {batch * group} ({batch} x {group} devices)" if group > 1 else f"batch {batch}"
    )
    spe, max_epoch = int(data.get("steps_per_epoch", 0)), int(data.get("max_epoch", 0))
    run_line = (
        f"run: {_count(max_epoch, 'epoch')} x {_count(spe, 'step')} = "
        f"{_count(spe * max_epoch, 'step')}, {batch_text} on {data.get('device')}"
    )
    start, done = int(data.get("start_epoch", 1)), int(data.get("start_step", 0))
    if start > 1 or done:
        left = spe * max_epoch - (start - 1) * spe - done
        of = f" ({done} of its {spe} steps done)" if done else ""
        run_line += f"; resuming at epoch {start}{of}, {_count(left, 'step')} left"
    return [line, data_line, run_line, f"outputs: {data.get('run_dir')}"]


def end_lines(data: Mapping[str, Any]) -> list[str]:
    """The end summary of a finished run (the ``train_end`` event)."""
    took = [f"compiling {data.get('compile_seconds', 0.0):.1f}s"]
    if data.get("validation_seconds"):
        took.append(f"validating {data['validation_seconds']:.1f}s")
    done, max_epoch = int(data.get("epochs_done", 0)), int(data.get("max_epoch", 0))
    steps = _count(int(data.get("steps_run", 0)), "step")
    lines = [
        f"done: epoch {done}/{max_epoch}, {steps} in {hms(data.get('seconds', 0.0))} "
        f"({', '.join(took)})"
    ]
    final = []
    if data.get("loss") is not None:
        final.append(f"epoch {done} mean loss {data['loss']:.4g}")
    val = data.get("validation")
    if val:
        final.append(f"val AP {val['AP']:.4f}, AP50 {val['AP50']:.4f}")
    best = data.get("best")
    if best:
        final.append(f"best {best['metric']} {best['value']:.4f} (epoch {best['epoch']})")
    if final:
        lines.append("final: " + "; ".join(final))
    return lines


def _print(text: str, style: str | None = None) -> None:
    err_console.print(text, style=style, highlight=False, markup=False)


def _on_compile(data: Mapping[str, Any]) -> None:
    what = f"{data.get('what', 'graph')} ({data.get('size')} px)"
    task = _open[-1] if _open else None
    if data.get("phase") == "start":
        if isinstance(task, _RichTask):
            task.set_status(f"compiling the {what}")
        else:
            _print(f"compiling the {what} ...")
        return
    if task is not None:
        task.set_status(None)
    _print(f"compiled the {what} in {data.get('seconds', 0.0):.1f}s")


def _on_event(event: events.Event) -> None:
    from rich.markup import escape

    tag = rf"\[rank {_rank}] " if _rank else ""
    # messages are plain text: "[yolo]" or "[net]" in them is not Rich markup
    message = escape(str(event.data.get("message", "")))
    if event.kind == "warning":
        err_console.print(f"[yellow]warning:[/] {tag}{message}", highlight=False)
        return
    if _rank:  # the other ranks keep their warnings only
        return
    if event.kind == "info":
        err_console.print(message, highlight=False)
    elif event.kind == "train_start":
        for line in start_lines(event.data):
            _print(line)
    elif event.kind == "compile":
        _on_compile(event.data)
    elif event.kind == "train_end":
        for line in end_lines(event.data):
            _print(line)


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
