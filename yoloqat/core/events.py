"""Events and progress: core code never prints.

Core code calls :func:`emit` for things worth logging (``step``, ``epoch``, ``eval``,
``warning``, ``info``) and wraps long work in :func:`task`. The CLI subscribes listeners
and installs a progress backend (Rich bars on a terminal, plain lines otherwise); library
users get silence unless they subscribe.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


@dataclass
class Event:
    """Something that happened: a ``kind`` (``step``, ``epoch``, ``warning``, ...) and data."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]
_listeners: list[Listener] = []


def subscribe(listener: Listener) -> Callable[[], None]:
    """Register ``listener`` for every event; returns a function that unsubscribes it."""
    _listeners.append(listener)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            _listeners.remove(listener)

    return unsubscribe


def emit(kind: str, **data: Any) -> None:
    """Send an event to every listener."""
    event = Event(kind, data)
    for listener in list(_listeners):
        listener(event)


def warn(message: str, **data: Any) -> None:
    """Emit a ``warning`` event (the CLI prints it to stderr)."""
    emit("warning", message=message, **data)


def info(message: str, **data: Any) -> None:
    """Emit an ``info`` event (the CLI prints it to stderr)."""
    emit("info", message=message, **data)


class Task(Protocol):
    """Handle of one long piece of work shown as a progress bar."""

    def advance(self, n: int = 1, **fields: Any) -> None:
        """Mark ``n`` more units done; ``fields`` (loss, lr, ...) are shown beside the bar."""


class _SilentTask:
    def advance(self, n: int = 1, **fields: Any) -> None:
        return None


TaskFactory = Callable[[str, "int | None"], "contextlib.AbstractContextManager[Task]"]


@contextlib.contextmanager
def _silent_factory(description: str, total: int | None) -> Iterator[Task]:
    yield _SilentTask()


_task_factory: TaskFactory = _silent_factory


def set_task_factory(factory: TaskFactory | None) -> None:
    """Install the progress backend (``None`` restores the silent default)."""
    global _task_factory
    _task_factory = factory or _silent_factory


def task(description: str, total: int | None = None) -> contextlib.AbstractContextManager[Task]:
    """Context manager giving a :class:`Task` to advance as work gets done."""
    return _task_factory(description, total)


def track(iterable: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate ``iterable`` while showing progress."""
    if total is None and isinstance(iterable, Sized):
        total = len(iterable)
    with task(description, total) as t:
        for item in iterable:
            yield item
            t.advance(1)
