"""The registry as the layers below it see it: the queries the config checks and the engine
use, as a ``typing.Protocol``.

``yoloqat.core`` may not import :mod:`yoloqat.registry` (the layering puts the registry above
core, data, deploy and the plugins), so code that is handed a registry annotates it with
:class:`ComponentRegistry`; :class:`yoloqat.registry.Registry` satisfies it (checked by
mypy in ``yoloqat.registry``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol


class ComponentInfo(Protocol):
    """One named factory of one kind (:class:`yoloqat.registry.Component`)."""

    @property
    def kind(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def plugin(self) -> str:
        """The plugin that provides it."""
        ...

    @property
    def factory(self) -> Callable[..., object]: ...

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        """The factory's keyword parameters."""
        ...

    @property
    def accepts_any(self) -> bool:
        """The factory takes ``**kwargs``."""
        ...


class ComponentRegistry(Protocol):
    """Looks components up by kind and name, checks parameters and builds components
    (:class:`yoloqat.registry.Registry`)."""

    def get(self, kind: str, name: str) -> ComponentInfo:
        """The component ``name`` of ``kind``; a ConfigError if unknown."""
        ...

    def check(
        self,
        kind: str,
        name: str,
        params: dict[str, Any],
        where: str = "",
        provided: Iterable[str] = (),
    ) -> ComponentInfo:
        """Check ``name`` and ``params`` against the factory signature; build nothing."""
        ...

    def components(self, kind: str | None = None) -> Sequence[ComponentInfo]:
        """The components of ``kind`` (every kind when None), sorted by name."""
        ...

    def create(self, kind: str, name: str, /, **params: Any) -> Any:
        """Build the component, checked against its kind's contract. The result's type
        depends on ``kind`` (see :mod:`yoloqat.core.contracts`), hence ``Any``."""
        ...
