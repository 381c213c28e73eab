"""The run's callbacks: built from ``train.callbacks`` and called so that none can break the run.

An exception from an event method is one warning naming the callback, its plugin, the
method and the exception; that callback then gets no further events and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yoloqat.core import events
from yoloqat.core.config import callback_blocks

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry


@dataclass
class _Entry:
    name: str
    plugin: str
    obj: Any


class Callbacks:
    """The callbacks of one run, in ``train.callbacks`` order (then the extra ones)."""

    def __init__(self, entries: Iterable[tuple[str, str, Any]] = ()) -> None:
        self.active = [_Entry(name, plugin, obj) for name, plugin, obj in entries]
        self.disabled: list[str] = []

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.active]

    def emit(self, method: str, info: Any) -> None:
        """Call ``method(info)`` on every callback that has it; a raising one is disabled."""
        for entry in list(self.active):
            func = getattr(entry.obj, method, None)
            if not callable(func):
                continue
            try:
                func(info)
            except Exception as exc:
                self.active.remove(entry)
                self.disabled.append(entry.name)
                events.warn(
                    f"callback '{entry.name}' (plugin '{entry.plugin}') raised "
                    f"{type(exc).__name__} in {method}: {exc}; it is disabled for the rest "
                    "of the run",
                    callback=entry.name,
                    plugin=entry.plugin,
                    method=method,
                )


def build_callbacks(
    cfg: dict[str, Any], registry: ComponentRegistry | None = None, extra: Iterable[Any] = ()
) -> Callbacks:
    """The callbacks named by ``train.callbacks`` (default: log, metrics, curves), built and
    checked against the Callback contract, plus ``extra`` objects (library use)."""
    from yoloqat.core.contracts import check_component

    if registry is None:
        from yoloqat.registry import default_registry

        registry = default_registry()
    entries = []
    for _where, name, params in callback_blocks(cfg):
        comp = registry.get("callback", name)
        entries.append((name, comp.plugin, registry.create("callback", name, **params)))
    for obj in extra:
        name = type(obj).__name__
        check_component("callback", obj, plugin="(given to Trainer)", name=name)
        entries.append((name, "(given to Trainer)", obj))
    return Callbacks(entries)
