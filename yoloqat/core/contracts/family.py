"""The family contract: what a ``yoloqat_families()`` factory returns.

A family is a preset that names the components of one detector family and their defaults,
so that a config selects it in one line (``family: yolov3_tiny``, or ``family: {name: X,
...factory parameters}``). The factory returns a mapping with the component blocks
``backbone``, ``head`` and ``loss`` (each a mapping with a ``name`` and that component's
parameters) and optionally ``data`` and ``eval`` defaults. A config's own blocks are merged
over the preset's: a block naming the same component (or no name) overrides single
parameters, a block naming another component replaces the preset's block.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict


class FamilyPreset(TypedDict, total=False):
    """What a family factory returns (``backbone``, ``head`` and ``loss`` are required)."""

    #: The backbone block: ``{"name": ..., **its factory's parameters}``.
    backbone: Mapping[str, Any]
    #: The head block.
    head: Mapping[str, Any]
    #: The loss block (a loss that accepts the head's ``output_format``).
    loss: Mapping[str, Any]
    #: Defaults of the config's ``data`` section (e.g. ``max_boxes``), under the config's own.
    data: Mapping[str, Any]
    #: Defaults of the config's ``eval`` section (e.g. ``score_threshold``).
    eval: Mapping[str, Any]


#: The blocks a preset must name, and the optional sections it may fill.
BLOCKS: tuple[str, ...] = ("backbone", "head", "loss")
SECTIONS: tuple[str, ...] = ("data", "eval")
#: Members documented in ``docs/plugins.md`` (the preset's keys).
MEMBERS: tuple[str, ...] = (*BLOCKS, *SECTIONS)
OPTIONAL: tuple[str, ...] = SECTIONS


def problems(obj: Any) -> list[str]:
    """What is wrong with a preset (a mapping of blocks)."""
    if not isinstance(obj, Mapping):
        return [f"a family preset must be a mapping of blocks, got {type(obj).__name__}"]
    out = []
    for key in BLOCKS:
        block = obj.get(key)
        if not isinstance(block, Mapping) or not isinstance(block.get("name"), str):
            out.append(f"missing block '{key}' (a mapping with a 'name')")
    for key in obj:
        if key not in MEMBERS:
            out.append(f"unknown key '{key}' (a preset holds {', '.join(MEMBERS)})")
    for key in SECTIONS:
        if key in obj and not isinstance(obj[key], Mapping):
            out.append(f"'{key}' must be a mapping of config defaults")
    return out
