"""The syntax of Darknet ``.cfg`` files: ``[section]`` headers and ``key=value`` lines.

One reader for every user of the format (the Darknet graph builder, the importer and the
exporter), keeping where each section and key was written, so that every later error can
name the line. It knows the syntax only, not what a section means:

- ``#`` and ``;`` start a comment; blank lines are skipped; keys and values are stripped;
- the first section must be ``[net]`` (or ``[network]``); every other section is a layer,
  numbered from 0 in file order (Darknet's layer index);
- a key given twice in one section keeps the last value (as Darknet does).

Lines ``# yoloqat: {json}`` are yoloqat's own metadata (what a ``.cfg`` cannot say, e.g.
class names or a non-Darknet input normalisation, written by ``export-darknet``): Darknet
and OpenCV read them as comments; :func:`parse_cfg` returns them merged into one dict.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yoloqat.core.errors import CheckpointError, ConfigError

#: Prefix of yoloqat's metadata comment lines.
META_PREFIX = "# yoloqat:"
#: Section names Darknet accepts for the network options.
NET_NAMES = ("net", "network")


@dataclass
class Section:
    """One ``[type]`` block: its options as strings, the line of its header and of each key.

    ``index`` is the layer index (-1 for ``[net]``).
    """

    type: str
    options: dict[str, str] = field(default_factory=dict)
    line: int = 0
    index: int = -1
    key_lines: dict[str, int] = field(default_factory=dict)

    def where(self, source: str, key: str | None = None) -> str:
        """``source:line: section index [type]`` (the key's own line when given)."""
        line = self.key_lines.get(key, self.line) if key is not None else self.line
        what = "[net] section" if self.index < 0 else f"section {self.index} [{self.type}]"
        return f"{source}:{line}: {what}"


@dataclass
class CfgFile:
    """A parsed ``.cfg``: the ``[net]`` section, the layer sections, yoloqat's metadata."""

    net: Section
    layers: list[Section]
    meta: dict[str, Any]
    source: str


def parse_cfg(text: str, source: str = "<cfg>") -> CfgFile:
    """Parse the text of a ``.cfg`` file; ``source`` names it in error messages (ConfigError,
    exit 3, naming ``source:line``)."""
    net: Section | None = None
    layers: list[Section] = []
    current: Section | None = None
    meta: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith(META_PREFIX):
            meta.update(_meta(stripped[len(META_PREFIX) :], source, number))
            continue
        line = stripped.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise ConfigError(f"{source}:{number}: malformed section header {stripped!r}")
            kind = line[1:-1].strip().lower()
            if kind in NET_NAMES:
                if net is not None or layers:
                    raise ConfigError(
                        f"{source}:{number}: [{kind}] must be the first section, and only one",
                    )
                net = current = Section("net", {}, number, -1)
            else:
                if net is None:
                    raise ConfigError(
                        f"{source}:{number}: [{kind}] before [net]; a Darknet .cfg starts "
                        "with its [net] section"
                    )
                current = Section(kind, {}, number, len(layers))
                layers.append(current)
            continue
        if current is None or "=" not in line:
            raise ConfigError(
                f"{source}:{number}: expected a [section] or key=value, got {stripped!r}"
            )
        key, value = (s.strip() for s in line.split("=", 1))
        if not key:
            raise ConfigError(f"{source}:{number}: a key is missing before '=' in {stripped!r}")
        current.options[key] = value
        current.key_lines[key] = number
    if net is None:
        raise ConfigError(f"{source} has no [net] section: not a Darknet .cfg file")
    return CfgFile(net, layers, meta, source)


def _meta(text: str, source: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{source}:{number}: the '# yoloqat:' line is not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}:{number}: the '# yoloqat:' line must hold a JSON object")
    return value


def read_cfg_file(path: str | Path) -> tuple[CfgFile, str]:
    """Read and parse a ``.cfg`` file; returns the parsed file and its text."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Darknet .cfg file not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    return parse_cfg(text, str(path)), text


def meta_line(meta: dict[str, Any]) -> str:
    """The ``# yoloqat: {...}`` comment line holding ``meta`` (one line of JSON)."""
    return f"{META_PREFIX} {json.dumps(meta, separators=(', ', ': '))}"


def cfg_text(net: dict[str, str], layers: list[Section], header: list[str] | None = None) -> str:
    """The text of a ``.cfg`` file: comment lines ``header``, ``[net]`` and the layers."""
    lines = list(header or [])
    lines.append("[net]")
    lines += [f"{k}={v}" for k, v in net.items()]
    lines.append("")
    for sec in layers:
        lines.append(f"[{sec.type}]")
        lines += [f"{k}={v}" for k, v in sec.options.items()]
        lines.append("")
    return "\n".join(lines)
