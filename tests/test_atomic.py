"""core/atomic: the one atomic-write helper, stale temporaries, writability checks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from yoloqat.core import atomic
from yoloqat.core.errors import ConfigError, RuntimeFailure


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], text=True,
                          capture_output=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_write_replaces_atomically_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    atomic.write_json(target, {"a": 1})
    atomic.write_json(target, {"a": 2})
    assert target.read_text().replace(" ", "").replace("\n", "") == '{"a":2}'
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_failing_writer_keeps_the_previous_file_and_removes_its_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"good model")
    with pytest.raises(ValueError, match="writer broke"), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half a mod")
        raise ValueError("writer broke")
    assert target.read_bytes() == b"good model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_os_errors_become_one_clear_failure_naming_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(RuntimeFailure, match=r"could not write .*not_a_folder/out\.json") as info:
        atomic.write_json(blocker / "out.json", {})
    assert isinstance(info.value, OSError)  # callers catching OSError still do
    assert info.value.exit_code == 1


def test_temporaries_keep_the_suffix_and_carry_the_pid(tmp_path: Path) -> None:
    with atomic.atomic_path(tmp_path / "pic.jpg") as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".jpg" and tmp.name.startswith(".")
        match = atomic.TEMP_PATTERN.match(tmp.name)
        assert match and int(match.group(1)) == os.getpid()
        tmp.write_bytes(b"jpeg")
    assert (tmp_path / "pic.jpg").read_bytes() == b"jpeg"


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path: Path) -> None:
    dead = _dead_pid()
    stale = [
        tmp_path / f".0-1_4.ckpt.{dead}.0a1b2c3d.tmp.ckpt",  # ours
        tmp_path / f".0-1_4.ckpt.{dead}.0a1b2c3d.tmp.tmp",  # MindSpore's temporary of ours
        tmp_path / f".0-1_4.{dead}.tmp.tmp",  # an older yoloqat's
    ]
    live = tmp_path / f".0-1_8.ckpt.{os.getpid()}.0a1b2c3d.tmp.ckpt"
    keep = tmp_path / "0-1_4.ckpt"
    for path in [*stale, live, keep]:
        path.write_bytes(b"x")
    removed = atomic.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, keep.name])


def test_check_writable_names_the_folder(tmp_path: Path) -> None:
    assert atomic.check_writable(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match=r"--output .*file is not writable"):
        atomic.check_writable(blocker, "--output")
    assert not list(tmp_path.glob(".*"))
