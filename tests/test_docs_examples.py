"""The examples of README.md and docs/*.md are true: every ``python`` block runs, and every
``yoloqat`` command line of a ``bash`` block names a real command and real options.

Conventions of the Python examples (docs/contributing.md):

- a block whose first line is ``# (continues the previous example)`` runs after the block
  before it in the same file, in its namespace;
- a block whose first line is ``# not run: <reason>`` is only shown;
- docs/plugins.md's blocks are run by tests/test_plugin_docs.py, with that page's own
  ``# example NAME`` chains, and are left out here.

Each example runs in a fresh module namespace with a temporary folder as its working
directory. The Python API example is also compared with ``yoloqat predict``: the same
checkpoint finds the same boxes on the same images.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import sys
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Run by tests/test_plugin_docs.py (its own chaining convention).
RUN_ELSEWHERE = {"docs/plugins.md"}
CONTINUES = "# (continues the previous example)"
NOT_RUN = "# not run:"
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the block's first line of code
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(lang: str | None = None) -> list[Block]:
    found = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if lang is not None and m.group("lang") != lang:
                continue
            indent = len(m.group("indent"))
            code = "\n".join(line[indent:] for line in m.group("body").splitlines())
            line = text.count("\n", 0, m.start("body")) + 1
            found.append(Block(str(path.relative_to(ROOT)), line, m.group("lang"), code))
    return found


# -- Python examples -------------------------------------------------------------------


def python_blocks() -> list[Block]:
    return [b for b in blocks("python") if b.page not in RUN_ELSEWHERE]


def runnable() -> list[Block]:
    return [b for b in python_blocks() if not b.code.startswith(NOT_RUN)]


def chain(block: Block) -> list[Block]:
    """``block`` and the blocks it continues, first first."""
    same_page = [b for b in python_blocks() if b.page == block.page]
    k = same_page.index(block)
    start = k
    while same_page[start].code.startswith(CONTINUES):
        assert start > 0, f"{block.where}: continues an example, but none comes before it"
        start -= 1
        assert not same_page[start].code.startswith(NOT_RUN), (
            f"{same_page[start + 1].where} continues {same_page[start].where}, which is not run"
        )
    return same_page[start : k + 1]


def run_chain(block: Block, folder: Path) -> tuple[dict[str, Any], str]:
    """Run ``block`` (after the blocks it continues) with ``folder`` as the working
    directory; return its namespace and what it printed."""
    name = "docs_example_" + re.sub(r"\W", "_", block.where)
    module = types.ModuleType(name)
    sys.modules[name] = module  # dataclasses and pickling look their module up
    printed = io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(printed):
            for part in chain(block):
                # padded so that a traceback names the line of the page
                code = "\n" * (part.line - 1) + part.code
                exec(compile(code, part.page, "exec"), module.__dict__)
    finally:
        os.chdir(cwd)
        del sys.modules[name]
    return module.__dict__, printed.getvalue()


#: Namespaces of the examples that ran, for the tests that look further at one.
_RAN: dict[str, tuple[dict[str, Any], str, Path]] = {}


def ran(block: Block, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, Path]:
    if block.where not in _RAN:
        folder = tmp_path_factory.mktemp("example")
        namespace, printed = run_chain(block, folder)
        _RAN[block.where] = (namespace, printed, folder)
    return _RAN[block.where]


def test_the_examples_are_found() -> None:
    pages = {b.page for b in runnable()}
    assert {"docs/api.md"} <= pages, pages
    assert any("yoloqat.train(" in b.code for b in runnable())
    for block in python_blocks():
        if block.code.startswith(NOT_RUN):
            reason = block.code.splitlines()[0][len(NOT_RUN) :].strip()
            assert reason, f"{block.where}: '# not run:' needs a reason"


@pytest.mark.parametrize("block", runnable(), ids=lambda b: b.where)
def test_python_example_runs(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    ran(block, tmp_path_factory)


def api_example() -> Block:
    (block,) = [b for b in runnable() if b.page == "docs/api.md" and "yoloqat.train(" in b.code]
    return block


def test_the_api_example_matches_the_cli(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tiny import cli

    namespace, printed, folder = ran(api_example(), tmp_path_factory)
    assert "AP50" in printed and '"detections"' in printed, printed
    run, model = namespace["run"], namespace["model"]
    ckpt = folder / run.checkpoints[-1]  # relative to the folder the example ran in
    res = cli("predict", str(folder / "shapes" / "val"), "--checkpoint", str(ckpt),
              "--output", str(folder / "cli"), "--json")  # fmt: skip
    assert res.returncode == 0, res.stderr
    by_cli = {Path(r["source"]).name: r["detections"] for r in json.loads(res.stdout)}
    for result in model.predict(str(folder / "shapes" / "val"), conf=0.25):
        boxes = [d["box"] for d in by_cli[Path(result.source).name]]
        assert boxes == [[round(float(v), 2) for v in box] for box in result.boxes]
    assert len(list((folder / "preds").glob("*.jpg"))) == 4  # the example's save_dir


# -- Command lines ---------------------------------------------------------------------


@dataclass(frozen=True)
class CommandLine:
    where: str
    text: str


def command_lines() -> list[CommandLine]:
    """Every logical line (continuations joined) of a bash block that runs ``yoloqat``,
    and every ``$ yoloqat ...`` line of a text block (a recorded run)."""
    found = []
    for block in blocks():
        if block.lang not in ("bash", "sh", "shell", "console", "text"):
            continue
        lines = block.code.splitlines()
        k = 0
        while k < len(lines):
            start, text = k, lines[k]
            while text.endswith("\\") and k + 1 < len(lines):
                k += 1
                text = text[:-1] + " " + lines[k].strip()
            k += 1
            if block.lang in ("text", "console"):
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if re.search(r"(^|[\s/])yoloqat(\s|$)", text):
                found.append(CommandLine(f"{block.page}:{block.line + start}", text))
    return found


@lru_cache(maxsize=1)
def root_command() -> Any:
    import typer

    from yoloqat.cli import app

    return typer.main.get_command(app)


def _norm(name: str) -> str:
    return name.replace("_", "-")


def _options(command: Any) -> dict[str, Any]:
    """``--name`` -> the click Option, every spelling and ``--no-`` form included."""
    found: dict[str, Any] = {"--help": None, "-h": None}
    for param in command.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                found[_norm(name)] = param
    return found


def _is_group(command: Any) -> bool:
    """A command with sub-commands (Typer bundles its own click: no isinstance check)."""
    return hasattr(command, "commands")


def _takes_value(option: Any) -> bool:
    return option is not None and not option.is_flag and not option.count


def words(text: str) -> list[list[str]]:
    """The shell words of ``text``, split into simple commands at ``&&``, ``|``, ``;`` and
    redirections (comments dropped)."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token and all(c in "();<>|&" for c in token):
            segments.append([])
        else:
            segments[-1].append(token)
    return [s for s in segments if s]


def problems(line: CommandLine) -> list[str]:
    """What in ``line`` the command line does not know, each with the file and line."""
    found = []
    for tokens in words(line.text):
        while tokens and "=" in tokens[0] and not tokens[0].startswith("-"):
            tokens = tokens[1:]  # environment assignments before the command (X=1 yoloqat)
        if tokens and os.path.basename(tokens[0]) == "yoloqat":
            rest = tokens[1:]
        elif os.path.basename(tokens[0]).startswith("python") and tokens[1:3] == ["-m", "yoloqat"]:
            rest = tokens[3:]
        else:  # another program (its arguments may say yoloqat: `mypy yoloqat`)
            continue
        command, path, chosen = root_command(), ["yoloqat"], False
        while rest:
            token = rest.pop(0)
            if token.startswith("-") and token != "-":
                name = _norm(token.split("=", 1)[0])
                options = _options(command)
                if name not in options:
                    found.append(f"{line.where}: `{' '.join(path)}` has no option {token}")
                    continue
                if "=" not in token and _takes_value(options[name]) and rest:
                    rest.pop(0)
            elif _is_group(command) and not chosen:
                sub = command.commands.get(_norm(token))
                if sub is None:
                    found.append(f"{line.where}: `{' '.join(path)}` has no command {token!r}")
                    break
                command, path = sub, [*path, _norm(token)]
                chosen = not _is_group(sub)
            # else: an argument of the command (a path, a placeholder such as CKPT or ...)
        asks_help = {"--help", "-h", "--version"} & set(tokens)
        if _is_group(command) and not chosen and not found and not asks_help:
            found.append(f"{line.where}: `{' '.join(path)}` names no command")
    return found


def test_the_command_lines_are_found() -> None:
    found = command_lines()
    assert len(found) > 50, len(found)
    pages = {c.where.split(":")[0] for c in found}
    assert {"README.md", "docs/training.md", "docs/inference.md"} <= pages, pages


@pytest.mark.parametrize("line", command_lines(), ids=lambda c: c.where)
def test_command_line_names_real_options(line: CommandLine) -> None:
    assert not problems(line), "\n".join(problems(line)) + f"\n  in: {line.text}"


def test_a_wrong_option_or_command_is_caught() -> None:
    """The check itself can fail: a misspelt option, an unknown command and a
    sub-command-less group are each reported with the file and line."""
    cases = {
        "yoloqat train --max_epok 3": "has no option --max_epok",
        "yoloqat trian --max_epoch 3": "has no command 'trian'",
        "yoloqat --strict-dta eval --pretrained X": "has no option --strict-dta",
        "yoloqat config": "names no command",
        "cd x && .venv/bin/yoloqat eval --onx m.onnx  # comment --not-checked": "--onx",
        "python -m yoloqat train --is_distributed 1 --bogus": "has no option --bogus",
        "YOLOQAT_DEBUG=1 yoloqat eval --bogus": "has no option --bogus",
        ".venv/bin/mypy yoloqat && .venv/bin/yoloqat export --bogus": "has no option --bogus",
    }
    for text, expected in cases.items():
        found = problems(CommandLine("PAGE.md:7", text))
        assert found and expected in found[0] and found[0].startswith("PAGE.md:7: "), (
            text,
            found,
        )
    ok = [
        "yoloqat train --per-batch-size 4 --max_epoch=3 --set a.b=1 ... 2>&1 >/dev/null | cat",
        "yoloqat --strict-data --max-file-size 8G eval --pretrained C --multi_label",
        "yoloqat predict a.jpg --no-save --checkpoint C",
        "yoloqat config show CONFIG --set k=v",
        ".venv/bin/mypy yoloqat && grep -rn yoloqat docs",  # yoloqat as another's argument
    ]
    for text in ok:
        assert not problems(CommandLine("PAGE.md:1", text)), (
            text,
            problems(CommandLine("PAGE.md:1", text)),
        )
