"""The one way yoloqat writes files: atomically, so a crash or full disk never tears one.

Every writer (checkpoints, ONNX, MINDIR, Darknet weights, JSON reports, predictions,
pictures, curves) goes through :func:`atomic_path`: the content is written to a hidden
temporary file in the destination's folder (same file system, so the rename is atomic),
flushed to disk with ``fsync`` and renamed over the final name. If anything fails (or the
process is interrupted) the temporary is removed and a file already under the final name is
left byte-identical. A process killed with ``kill -9`` can leave a temporary behind: its
name carries the writer's pid, and :func:`remove_stale_temporaries` deletes those of dead
processes: training does so at start and on resume, every other command that writes when
it starts (:func:`prepare_output`).

Temporary names: ``.<name>.<pid>.<random>.tmp<suffix>`` (the suffix is kept because some
writers, e.g. ``cv2.imwrite`` and ``matplotlib``, pick the format from it). MindSpore's
checkpoint writer adds its own temporary (``.tmp`` in place of ``.ckpt``), which ends in
``.tmp.tmp``; those are matched as well.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from yoloqat.core.errors import ConfigError, RuntimeFailure

#: A temporary written by :func:`atomic_path`, MindSpore's temporary of one, or an older
#: yoloqat's (``.<stem>.<pid>.tmp.ckpt``): the writer's pid in group 1.
TEMP_PATTERN = re.compile(r"^\..+?\.(\d+)(?:\.[0-9a-f]{8})?\.tmp(?:\.[^.]+)?$")

#: Temporaries of writes in progress in this process (removed by :func:`discard_active`).
_ACTIVE: set[Path] = set()


class WriteFailure(RuntimeFailure, OSError):
    """A file could not be written (disk full, no permission); the old file is unchanged.

    Both a :class:`RuntimeFailure` (exit code 1, one clear line) and an ``OSError``.
    """

    def __init__(self, message: str, *, hint: str | None = None, errno_: int | None = None):
        super().__init__(message, hint=hint)
        self.errno = errno_


def temporary_name(path: Path) -> Path:
    """A fresh hidden temporary beside ``path`` (same folder, same suffix)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_error(path: Path, exc: OSError) -> WriteFailure:
    reason = exc.strerror or str(exc)
    kept = " (the previous file is unchanged)" if path.exists() else ""
    hint = "free some disk space" if exc.errno == errno.ENOSPC else "check the folder's permissions"
    return WriteFailure(f"could not write {path}: {reason}{kept}", hint=hint, errno_=exc.errno)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, extra_suffixes: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; publish it atomically on success.

    For writers that take a file name (``onnx.save``, ``mindspore.export``,
    ``savefig``, ``cv2.imwrite``). ``extra_suffixes``: the temporary's name with its suffix
    replaced by each of these is a file the writer itself may create (MindSpore writes
    ``.tmp`` for ``.ckpt``), removed with it. An
    ``OSError`` (disk full, permission denied) becomes a :class:`WriteFailure` naming
    ``path``.
    """
    path = Path(path)
    tmp = temporary_name(path)
    leftovers = [tmp, *(tmp.with_suffix(s) for s in extra_suffixes)]
    _ACTIVE.update(leftovers)
    try:
        try:
            yield tmp
            if not tmp.is_file():
                raise RuntimeFailure(f"writing {path} produced no file")
            _fsync_file(tmp)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except WriteFailure:
            raise
        except OSError as exc:
            raise _write_error(path, exc) from exc
    finally:
        for leftover in leftovers:
            with contextlib.suppress(OSError):
                leftover.unlink()
            _ACTIVE.discard(leftover)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write ``data`` as JSON to ``path`` atomically."""
    return write_text(path, json.dumps(data, indent=indent))


def discard_active() -> None:
    """Remove the temporaries of writes in progress (before an immediate exit)."""
    for tmp in list(_ACTIVE):
        with contextlib.suppress(OSError):
            tmp.unlink()
    _ACTIVE.clear()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete temporaries left in ``folder`` by killed processes; return what was removed.

    Temporaries of processes still running (a concurrent writer) are left alone.
    """
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = TEMP_PATTERN.match(entry.name)
        if match is None or not entry.is_file() or _alive(int(match.group(1))):
            continue
        with contextlib.suppress(OSError):
            entry.unlink()
            removed.append(entry)
    return removed


def check_writable(folder: str | Path, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and prove a file can be written there, before long work.

    Raises a :class:`ConfigError` naming ``what`` and the folder.
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder")
        folder.mkdir(parents=True, exist_ok=True)
        probe = temporary_name(folder / "write_test")
        try:
            with open(probe, "wb") as fh:
                fh.write(b"ok")
                fh.flush()
                os.fsync(fh.fileno())
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"{what} {folder} is not writable: {exc.strerror or exc}",
            hint="choose another folder, or fix its permissions or free space",
        ) from exc
    return folder


def prepare_output(
    folder: str | Path, what: str = "output folder", *, run_folders: bool = False
) -> Path:
    """Before a command writes into ``folder``: prove it is writable (:func:`check_writable`)
    and remove the temporaries killed runs left there (:func:`remove_stale_temporaries`),
    saying how many. Every command that writes calls it at start, as training does.

    With ``run_folders``, the folders directly inside ``folder`` are cleaned too: a command
    that writes each run into a new folder (predict, eval) leaves a killed run's
    temporaries in an older one.
    """
    from yoloqat.core import events

    folder = check_writable(folder, what)
    removed = remove_stale_temporaries(folder)
    if run_folders:
        for entry in sorted(folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                removed += remove_stale_temporaries(entry)
    if removed:
        events.info(f"removed {len(removed)} unfinished file(s) of a killed run in {folder}")
    return folder


def unique_folder(parent: str | Path, name: str, what: str = "--output") -> Path:
    """Create a new folder ``parent/name``, or ``name_2``, ``name_3``, ... when taken (an
    exclusive ``mkdir``: two runs started at once never share one); checked writable. A
    parent that cannot be written to is a ConfigError naming ``what``."""
    import itertools

    from yoloqat.core.errors import ConfigError

    base = Path(parent)
    try:
        check_writable(base, what)
        folder = base / name
        for index in itertools.count(2):
            try:
                folder.mkdir()
                break
            except FileExistsError:
                folder = base / f"{name}_{index}"
        check_writable(folder, what)
    except OSError as exc:
        raise ConfigError(f"{what} folder {base} is not writable: {exc.strerror or exc}") from exc
    return folder
