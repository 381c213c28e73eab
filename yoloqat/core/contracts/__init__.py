"""Written contracts of the component kinds: one ``typing.Protocol`` per kind.

=========  ===========================  ==========================================
kind       Protocol                     module
=========  ===========================  ==========================================
backbone   :class:`Backbone`            :mod:`yoloqat.core.contracts.backbone`
head       :class:`Head`                :mod:`yoloqat.core.contracts.head`
quantizer  :class:`Quantizer`           :mod:`yoloqat.core.contracts.quantizer`
loss       :class:`Loss`                :mod:`yoloqat.core.contracts.loss`
scheduler  :class:`Scheduler`           :mod:`yoloqat.core.contracts.scheduler`
dataset    :class:`Dataset` (sources:   :mod:`yoloqat.core.contracts.dataset`
           :class:`DataSource`)
callback   :class:`Callback`            :mod:`yoloqat.core.contracts.callback`
family     :class:`FamilyPreset` (a dict) :mod:`yoloqat.core.contracts.family`
=========  ===========================  ==========================================

The registry checks every component it builds with :func:`check_component`, which raises
a :class:`~yoloqat.core.errors.PluginError` (exit code 4) naming the plugin, the kind, the
component and each missing or wrong member. Each member is documented in
``docs/plugins.md``.
"""

from __future__ import annotations

import inspect
from types import ModuleType
from typing import Any

from yoloqat.core.contracts import (
    backbone,
    callback,
    dataset,
    family,
    head,
    loss,
    quantizer,
    runtime,
    scheduler,
)
from yoloqat.core.contracts.backbone import Backbone
from yoloqat.core.contracts.callback import Callback
from yoloqat.core.contracts.dataset import (
    CheckedDataset,
    Dataset,
    DataSource,
    ImageAnnotations,
    Sample,
    UnreadableImageError,
)
from yoloqat.core.contracts.head import Head
from yoloqat.core.contracts.loss import Loss
from yoloqat.core.contracts.quantizer import ExportPlan, Quantizer, QuantSummary
from yoloqat.core.contracts.runtime import Runtime
from yoloqat.core.contracts.scheduler import Scheduler
from yoloqat.core.errors import PluginError

__all__ = [
    "PROTOCOLS",
    "Backbone",
    "Callback",
    "CheckedDataset",
    "DataSource",
    "Dataset",
    "ExportPlan",
    "Head",
    "ImageAnnotations",
    "Loss",
    "QuantSummary",
    "Quantizer",
    "Runtime",
    "Sample",
    "Scheduler",
    "UnreadableImageError",
    "check_component",
    "members",
]

#: kind -> its Protocol (a family preset is a plain mapping, described by a TypedDict).
PROTOCOLS: dict[str, type] = {
    "backbone": Backbone,
    "head": Head,
    "quantizer": Quantizer,
    "loss": Loss,
    "scheduler": Scheduler,
    "dataset": Dataset,
    "runtime": Runtime,
    "callback": Callback,
    "family": family.FamilyPreset,
}

_MODULES: dict[str, ModuleType] = {
    "backbone": backbone,
    "head": head,
    "quantizer": quantizer,
    "loss": loss,
    "scheduler": scheduler,
    "runtime": runtime,
    "callback": callback,
    "family": family,
}

#: Kinds whose components must be ``mindspore.nn.Cell`` instances (they run in the graph).
CELL_KINDS = ("backbone", "head", "loss")


def members(kind: str) -> dict[str, str]:
    """The checked members of ``kind``: name -> ``"method"`` or ``"attribute"``."""
    if kind == "dataset":
        return dict(dataset.DATASET_MEMBERS)
    if kind == "family":
        return {name: "key" for name in family.MEMBERS}
    proto = PROTOCOLS[kind]
    out = {}
    for name in _MODULES[kind].MEMBERS:
        method = inspect.isfunction(inspect.getattr_static(proto, name, None))
        out[name] = "method" if method else "attribute"
    return out


def _required_positional(func: Any) -> int:
    params = list(inspect.signature(func).parameters.values())[1:]  # without self
    return sum(1 for p in params if p.default is p.empty and p.kind == p.POSITIONAL_OR_KEYWORD)


def _member_problems(kind: str, obj: Any) -> list[str]:
    problems = []
    proto = PROTOCOLS[kind]
    optional = getattr(_MODULES[kind], "OPTIONAL", ())
    for name, what in members(kind).items():
        try:
            value = getattr(obj, name)
        except AttributeError:
            if name not in optional:
                problems.append(f"missing {what} '{name}'")
            continue
        if what != "method":
            continue
        if not callable(value):
            problems.append(f"'{name}' is not a method")
            continue
        spec = getattr(proto, name)
        want = _required_positional(spec)
        varargs = any(
            p.kind == p.VAR_POSITIONAL for p in inspect.signature(spec).parameters.values()
        )
        if varargs and want == 0:
            continue  # any arity (a head's construct): the Detector checks the actual count
        # a method may take more positional arguments when a companion member supplies them
        # (a loss's construct receives its build_targets' arrays after the ground truth)
        companion = getattr(_MODULES[kind], "MORE_ARGS_WITH", {}).get(name)
        more = companion is not None and callable(getattr(obj, companion, None))
        try:
            sig = inspect.signature(value)
            (sig.bind_partial if more else sig.bind)(*([None] * want))
        except TypeError:
            problems.append(f"'{name}' does not take {want} positional argument(s)")
        except ValueError:  # no signature (a builtin): nothing to check
            pass
    return problems


def _is_cell(obj: Any) -> bool:
    from mindspore import nn

    return isinstance(obj, nn.Cell)


def check_component(kind: str, obj: Any, *, plugin: str, name: str) -> None:
    """Raise a :class:`PluginError` unless ``obj`` satisfies the Protocol of ``kind``.

    The message names the plugin, the kind, the component ``name`` and every missing or
    wrong member, e.g. ``backbone 'mine' from plugin 'acme' breaks the backbone contract:
    missing attribute 'out_channels' (acme.model.Mine)``. A dataset is checked without
    running its properties (nothing is parsed); its sources are checked when first asked
    for (:class:`CheckedDataset`).
    """
    if kind not in PROTOCOLS:
        raise ValueError(f"unknown component kind {kind!r}; kinds: {', '.join(PROTOCOLS)}")
    if kind == "dataset":
        dataset.check_dataset(obj, plugin=plugin, name=name)
        return
    problems = []
    if kind == "family":
        problems = family.problems(obj)
    elif kind in CELL_KINDS and not _is_cell(obj):
        problems.append(f"it is a {type(obj).__name__}, not a mindspore.nn.Cell")
    else:
        problems = _member_problems(kind, obj)
        if not problems:
            values = getattr(_MODULES[kind], "problems", None)  # optional value checks
            problems = values(obj) if values is not None else []
    if problems:
        cls = type(obj)
        raise PluginError(
            f"{kind} '{name}' from plugin '{plugin}' breaks the {kind} contract: "
            f"{'; '.join(problems)} ({cls.__module__}.{cls.__qualname__})",
            hint=f"see the {PROTOCOLS[kind].__name__} Protocol in "
            f"yoloqat.core.contracts.{kind} (docs/plugins.md)",
        )
