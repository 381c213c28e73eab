"""Plugin manager and per-kind component registry.

Bundled plugins are the sub-packages of :mod:`yoloqat.plugins`; third-party plugins are
modules named by entry points in the group ``yoloqat.plugins``. Each plugin is loaded and
queried on its own, so one broken plugin becomes a warning (or, with ``strict``, a
:class:`PluginError`) instead of breaking everything. Names and parameters are checked
against factory signatures before anything is built.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import os
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any

import pluggy

from yoloqat.core import hookspecs
from yoloqat.core.errors import ConfigError, PluginError
from yoloqat.core.version import __version__

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

ENTRY_POINT_GROUP = "yoloqat.plugins"
DISABLE_ENV = "YOLOQAT_DISABLE_PLUGINS"
BUILTIN_PACKAGE = "yoloqat.plugins"


@dataclass
class PluginInfo:
    """What ``yoloqat plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    builtin: bool
    status: str = "loaded"  # loaded | blocked | failed
    hooks: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "status": self.status,
            "hooks": list(self.hooks),
            "error": self.error,
        }


@dataclass
class Component:
    """One named factory of one kind, with the plugin that provides it."""

    kind: str
    name: str
    factory: Callable[..., object]
    plugin: str

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.factory) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        params = inspect.signature(self.factory).parameters
        return {
            n: p for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    @property
    def accepts_any(self) -> bool:
        params = inspect.signature(self.factory).parameters.values()
        return any(p.kind == p.VAR_KEYWORD for p in params)

    def defaults(self) -> dict[str, Any]:
        return {
            n: p.default
            for n, p in self.parameters.items()
            if p.default is not inspect.Parameter.empty
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "summary": self.summary,
            "parameters": {n: _jsonable(v) for n, v in self.defaults().items()}
            | {n: None for n, p in self.parameters.items() if p.default is p.empty},
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return repr(value)


def suggest(name: str, choices: Iterable[str]) -> str:
    """A ``Did you mean 'x'?`` fragment (or an empty string) for a misspelt ``name``."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def disabled_from_env() -> list[str]:
    """Plugin names listed in ``YOLOQAT_DISABLE_PLUGINS`` (comma separated)."""
    raw = os.environ.get(DISABLE_ENV, "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _entry_points() -> list[metadata.EntryPoint]:
    eps = metadata.entry_points()
    if hasattr(eps, "select"):
        return list(eps.select(group=ENTRY_POINT_GROUP))
    return list(eps.get(ENTRY_POINT_GROUP, []))  # Python 3.9


class Registry:
    """Loads plugins and resolves ``(kind, name)`` to factories.

    ``disabled`` names plugins to block (bundled or third-party); ``strict`` turns a
    broken third-party plugin into a :class:`PluginError` instead of a warning.
    """

    def __init__(
        self,
        *,
        disabled: Iterable[str] = (),
        strict: bool = False,
        entry_points: bool = True,
    ) -> None:
        self.disabled = set(disabled)
        self.strict = strict
        self.use_entry_points = entry_points
        self.warnings: list[str] = []
        self._plugins: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Component]] | None = None
        self.pm = pluggy.PluginManager("yoloqat")
        self.pm.add_hookspecs(hookspecs)

    # -- loading -----------------------------------------------------------------------
    def _fail(self, info: PluginInfo, exc: BaseException) -> None:
        info.status = "failed"
        info.error = f"{type(exc).__name__}: {exc}"
        msg = f"plugin '{info.name}' ({info.module}) failed to load: {info.error}"
        if self.strict or info.builtin:
            raise PluginError(
                msg, hint=f"fix or uninstall it, or pass --disable-plugin {info.name}"
            ) from exc
        self.warnings.append(msg)

    def _register(self, info: PluginInfo, loader: Callable[[], object]) -> None:
        if info.name in self._plugins:
            other = self._plugins[info.name]
            raise PluginError(
                f"two plugins are named '{info.name}': {other.module} ({other.distribution}) "
                f"and {info.module} ({info.distribution})",
                hint=f"uninstall one of them or pass --disable-plugin {info.name}",
            )
        self._plugins[info.name] = info
        if info.name in self.disabled:
            info.status = "blocked"
            self.pm.set_blocked(info.name)
            return
        try:
            obj = loader()
            self.pm.register(obj, name=info.name)
        except Exception as exc:
            self._fail(info, exc)
            return
        info.hooks = sorted(
            hc.name for hc in self.pm.get_hookcallers(obj) or [] if hc.name.startswith("yoloqat_")
        )

    def _load_plugins(self) -> None:
        pkg = importlib.import_module(BUILTIN_PACKAGE)
        for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if mod.name.startswith("_"):
                continue
            module = f"{BUILTIN_PACKAGE}.{mod.name}"
            info = PluginInfo(mod.name, module, "yoloqat", __version__, builtin=True)
            self._register(info, functools.partial(importlib.import_module, module))
        if not self.use_entry_points:
            return
        for ep in sorted(_entry_points(), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "unknown"
            dist_version = dist.version if dist is not None else "unknown"
            info = PluginInfo(ep.name, ep.value, dist_name, dist_version, builtin=False)
            self._register(info, ep.load)

    def _collect(self) -> dict[str, dict[str, Component]]:
        comps: dict[str, dict[str, Component]] = {kind: {} for kind in hookspecs.KINDS}
        for kind, hook_name in hookspecs.KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                info = self._plugins[impl.plugin_name]
                try:
                    factories = impl.function()
                    if not isinstance(factories, dict) or not all(
                        isinstance(k, str) and callable(v) for k, v in factories.items()
                    ):
                        raise TypeError(f"{hook_name}() must return a dict of name -> factory")
                except Exception as exc:
                    self._fail(info, exc)
                    continue
                for name, factory in factories.items():
                    if name in comps[kind]:
                        other = comps[kind][name].plugin
                        raise PluginError(
                            f"{kind} '{name}' is provided by two plugins: '{other}' "
                            f"({self._plugins[other].module}) and '{info.name}' ({info.module})",
                            hint=f"pass --disable-plugin {info.name} (or {other})",
                        )
                    comps[kind][name] = Component(kind, name, factory, info.name)
        return comps

    def load(self) -> None:
        """Load every plugin (once)."""
        if self._components is None:
            self._load_plugins()
            self._components = self._collect()

    # -- queries -----------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        self.load()
        return list(self._plugins.values())

    def components(self, kind: str | None = None) -> list[Component]:
        self.load()
        assert self._components is not None
        kinds = [self._check_kind(kind)] if kind else list(hookspecs.KINDS)
        return [c for k in kinds for c in sorted(self._components[k].values(), key=_name)]

    def _check_kind(self, kind: str) -> str:
        if kind not in hookspecs.KINDS:
            raise ConfigError(
                f"unknown component kind '{kind}'.{suggest(kind, hookspecs.KINDS)} "
                f"Kinds: {', '.join(hookspecs.KINDS)}"
            )
        return kind

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; a ConfigError with a suggestion if unknown."""
        self.load()
        assert self._components is not None
        known = self._components[self._check_kind(kind)]
        if name not in known:
            blocked = [p.name for p in self._plugins.values() if p.status == "blocked"]
            extra = f" (blocked plugins: {', '.join(blocked)})" if blocked else ""
            raise ConfigError(
                f"unknown {kind} '{name}'.{suggest(name, known)} "
                f"Available: {', '.join(sorted(known)) or 'none'}{extra}"
            )
        return known[name]

    def check(
        self,
        kind: str,
        name: str,
        params: dict[str, Any],
        where: str = "",
        provided: Iterable[str] = (),
    ) -> Component:
        """Check ``name`` and ``params`` against the factory signature; build nothing.

        ``provided`` names parameters the pipeline fills in itself (e.g. a head's
        ``in_channels``), so they do not count as missing.
        """
        comp = self.get(kind, name)
        if comp.accepts_any:
            return comp
        where = where or kind
        accepted = comp.parameters
        for key in params:
            if key not in accepted:
                raise ConfigError(
                    f"{where}: {kind} '{name}' has no parameter '{key}'.{suggest(key, accepted)} "
                    f"Parameters: {', '.join(accepted) or 'none'}"
                )
        missing = [
            n
            for n, p in accepted.items()
            if p.default is p.empty and n not in params and n not in provided
        ]
        if missing:
            raise ConfigError(f"{where}: {kind} '{name}' needs parameter(s): {', '.join(missing)}")
        return comp

    def create(self, kind: str, name: str, /, **params: Any) -> Any:
        """Check the name and parameters, build the component, check it against its kind's
        Protocol (:func:`yoloqat.core.contracts.check_component`) and return it (``Any``:
        its type depends on ``kind``).

        A component that breaks its contract is a :class:`PluginError` naming the plugin,
        the kind and the member; a ``ValueError`` or ``TypeError`` from the factory (a bad
        parameter value) a :class:`ConfigError` naming the component. A dataset comes back
        wrapped in a :class:`~yoloqat.core.contracts.dataset.CheckedDataset`, which checks
        its class list and its sources when they are first used (they may be parsed lazily).
        """
        from yoloqat.core.contracts import CheckedDataset, check_component

        comp = self.check(kind, name, params)
        try:
            obj = comp.factory(**params)
        except (ValueError, TypeError) as exc:  # a plugin's own check of a parameter value
            raise ConfigError(
                f"{kind} '{name}' (plugin '{comp.plugin}') refused its parameters: "
                f"{type(exc).__name__}: {exc}",
                hint=f"see `yoloqat list {kind}` and the plugin's documentation "
                "(YOLOQAT_DEBUG=1 shows the traceback)",
            ) from exc
        check_component(kind, obj, plugin=comp.plugin, name=name)
        if kind == "dataset" and not isinstance(obj, CheckedDataset):
            obj = CheckedDataset(obj, plugin=comp.plugin, name=name)
        return obj


def _name(c: Component) -> str:
    return c.name


_default: Registry | None = None


def configure_default(*, disabled: Iterable[str] = (), strict: bool = False) -> Registry:
    """Set up the process-wide registry (the CLI calls this once from its global options)."""
    global _default
    _default = Registry(disabled=[*disabled, *disabled_from_env()], strict=strict)
    return _default


def default_registry() -> Registry:
    """The process-wide registry, created from the environment on first use."""
    global _default
    if _default is None:
        _default = Registry(disabled=disabled_from_env())
    return _default


def reset_default() -> None:
    """Forget the process-wide registry (tests; after installing a plugin at run time)."""
    global _default
    _default = None
    importlib.invalidate_caches()  # see entry points installed since the last lookup


if TYPE_CHECKING:

    def _satisfies_protocol(registry: Registry) -> ComponentRegistry:
        """mypy checks here that a Registry is the ComponentRegistry the core layers use."""
        return registry
