"""docs/plugins.md documents every hook and every Protocol member, and its examples run
(the model: datasette's test_plugin_hooks_are_documented)."""

from __future__ import annotations

import ast
import inspect
import re
import sys
import types
from pathlib import Path

import pytest

from yoloqat.core import contracts, hookspecs

DOC = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
TEXT = DOC.read_text(encoding="utf-8")


def hook_names() -> list[str]:
    return [n for n, f in vars(hookspecs).items() if n.startswith("yoloqat_") and callable(f)]


def protocols() -> dict[str, list[str]]:
    """Every ``Protocol`` class of the contract modules -> its members, parsed from the source."""
    found: dict[str, list[str]] = {}
    for module in (contracts.backbone, contracts.head, contracts.quantizer, contracts.loss,
                   contracts.scheduler, contracts.dataset, contracts.runtime,
                   contracts.callback, contracts.family):  # fmt: skip
        tree = ast.parse(inspect.getsource(module))
        for node in tree.body:
            bases = [ast.unparse(b) for b in getattr(node, "bases", [])]
            if isinstance(node, ast.ClassDef) and ("Protocol" in bases or "TypedDict" in bases):
                members = []
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        members.append(item.name)
                    elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                        members.append(item.target.id)
                found[node.name] = members
    return found


def section(title: str) -> str:
    """The text under the heading containing ``title``, to the next heading of its level."""
    match = re.search(rf"^(#+) [^\n]*{re.escape(title)}[^\n]*$", TEXT, re.M)
    assert match, f"docs/plugins.md has no heading with {title}"
    level = len(match.group(1))
    rest = TEXT[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.M)
    return rest[: end.start()] if end else rest


def test_the_hooks_and_protocols_are_all_found() -> None:
    assert set(hook_names()) == set(hookspecs.KINDS.values())
    found = protocols()
    assert {p.__name__ for p in contracts.PROTOCOLS.values()} | {"DataSource"} <= set(found)
    for kind, proto in contracts.PROTOCOLS.items():
        if kind != "dataset":
            assert set(contracts.members(kind)) == set(found[proto.__name__]), kind


@pytest.mark.parametrize("hook", hook_names())
def test_every_hook_is_documented(hook: str) -> None:
    assert re.search(rf"^## `{hook}`$", TEXT, re.M), f"docs/plugins.md: no '## `{hook}`' section"


@pytest.mark.parametrize(
    ("protocol", "member"), [(p, m) for p, ms in protocols().items() for m in ms]
)
def test_every_protocol_member_is_documented(protocol: str, member: str) -> None:
    kind = "TypedDict" if protocol == "FamilyPreset" else "Protocol"
    text = section(f"{kind} `{protocol}`")
    assert re.search(rf"^- `{re.escape(member)}[`(]", text, re.M), (
        f"docs/plugins.md: Protocol `{protocol}` has no '- `{member}...' item"
    )


def examples() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", TEXT, re.M | re.S)


#: An example's first line ``# example NAME`` names it; ``# (continues example NAME)`` runs
#: it after the earlier examples of that name, in their namespace.
TAG = re.compile(r"^# (?:example|\(continues example) (\w+)")


def chain(index: int) -> list[str]:
    """Example ``index`` and the earlier examples of its name, oldest first."""
    found = examples()
    match = TAG.match(found[index])
    if match is None:
        return [found[index]]
    name = match.group(1)
    return [t for t in found[: index + 1] if (m := TAG.match(t)) and m.group(1) == name]


def test_every_kind_has_an_example() -> None:
    for hook in hook_names():
        assert "```python" in section(f"`{hook}`"), f"no python example under {hook}"


@pytest.mark.parametrize("index", range(len(examples())))
def test_examples_run(index: int) -> None:
    import mindspore as ms

    ms.set_context(mode=ms.PYNATIVE_MODE)
    module = types.ModuleType(f"docs_plugins_example_{index}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        for text in chain(index):
            code = compile(text, f"docs/plugins.md example {index}", "exec")
            exec(code, module.__dict__)
    finally:
        del sys.modules[module.__name__]
