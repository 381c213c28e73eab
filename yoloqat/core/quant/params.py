"""Checks of quantizer factory parameters shared by the quantizer plugins (import-cheap)."""

from __future__ import annotations

from collections.abc import Sequence

from yoloqat.core.errors import ConfigError


def check_pair(name: str, value: object) -> tuple[bool, bool]:
    """``[weights, activations]`` booleans (a single boolean means both)."""
    if isinstance(value, bool):
        return value, value
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, bool) for v in value)
    ):
        return bool(value[0]), bool(value[1])
    raise ConfigError(
        f"quantizer.{name}={value!r} is not valid; expected [weights, activations] booleans, "
        "e.g. [true, false]"
    )


def check_per_channel(value: object) -> bool:
    """The weights' flag of ``per_channel``; activations are always per tensor."""
    weights, acts = check_pair("per_channel", value)
    if acts:
        raise ConfigError(
            f"quantizer.per_channel={value!r} is not valid; activations are "
            "quantized per tensor: expected [true, false] or [false, false]"
        )
    return weights


def check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    """An integer in ``[low, high]`` (``high`` None: no upper bound)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise ConfigError(f"quantizer.{name}={value!r} is not valid; expected {bound}")
    return value


def check_patterns(name: str, value: object) -> tuple[str, ...]:
    """A list of fnmatch patterns (e.g. ``skip_layers``)."""
    if (
        isinstance(value, str)
        or not isinstance(value, Sequence)
        or not all(isinstance(p, str) for p in value)
    ):
        raise ConfigError(f"quantizer.{name}={value!r} is not valid; expected a list of patterns")
    return tuple(value)
