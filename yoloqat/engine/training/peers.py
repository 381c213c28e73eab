"""A dead or silent rank during data-parallel training: who stopped, when, how to resume.

When a rank dies (``kill -9``, out of memory, a crash) or stops responding, the other
ranks find out at their next collective (the gradient AllReduce of the train step): it
fails after the backend's timeout (on CPU ``MS_CPU_COMM_OP_TIMEOUT`` seconds, 30 by
default; NCCL/HCCL have their own) with a kernel error that names no rank.
:func:`peer_failure` turns that into one line on every surviving rank: which rank
stopped (recorded by ``python -m yoloqat.engine.launch``, which watches the workers),
at which step, the last checkpoint and the command that resumes from it. It also marks
this rank as stopped by a peer, so the launcher does not count it as a cause.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any

from yoloqat.core.errors import RuntimeFailure

#: Folder where the launcher records worker exits (and ranks mark peer stops).
STATUS_ENV = "YOLOQAT_LAUNCH_STATUS"
#: The command line that started the job (``--resume CKPT`` is appended to resume).
COMMAND_ENV = "YOLOQAT_LAUNCH_COMMAND"
#: MindSpore's timeout of a CPU collective, in seconds (30 when unset).
CPU_TIMEOUT_ENV = "MS_CPU_COMM_OP_TIMEOUT"
DEFAULT_CPU_TIMEOUT = 30.0

#: Words of MindSpore errors raised by a collective that lost a peer.
_COLLECTIVE = re.compile(
    r"AllReduce|AllGather|ReduceScatter|Broadcast|collective|HCCL|NCCL|timed? ?out|heartbeat",
    re.IGNORECASE,
)
_CKPT = re.compile(r"^(\d+)-(\d+)_(\d+)\.ckpt$")


class PeerFailure(RuntimeFailure):
    """Another rank of a data-parallel run stopped or stopped responding (exit code 1)."""


def collective_timeout() -> float:
    """Seconds a CPU collective waits for a peer (``MS_CPU_COMM_OP_TIMEOUT``, default 30)."""
    try:
        return float(os.environ.get(CPU_TIMEOUT_ENV) or DEFAULT_CPU_TIMEOUT)
    except ValueError:
        return DEFAULT_CPU_TIMEOUT


def describe_exit(returncode: int) -> str:
    """``-9`` -> ``'was killed by SIGKILL'``; ``3`` -> ``'exited with code 3'``."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited with code {returncode}"


def _write(path: Path, data: dict[str, Any]) -> None:
    from yoloqat.core.atomic import write_json

    with contextlib.suppress(OSError):
        write_json(path, data)


def record_exit(status: Path, *, rank: int, pid: int, returncode: int) -> None:
    """[launcher] Record that worker ``rank`` exited with ``returncode``."""
    _write(
        status / f"rank{rank}.exit.json",
        {"rank": rank, "pid": pid, "returncode": returncode, "time": time.time()},
    )


def peer_stopped(status: Path, rank: int) -> bool:
    """[launcher] Whether ``rank`` marked itself as stopped because of a peer."""
    return (status / f"rank{rank}.peer.json").is_file()


def _status() -> Path | None:
    value = os.environ.get(STATUS_ENV)
    return Path(value) if value and Path(value).is_dir() else None


def dead_ranks(rank: int, *, wait: float = 3.0) -> dict[int, int]:
    """Ranks other than ``rank`` whose exit the launcher recorded: ``{rank: returncode}``.

    Waits up to ``wait`` seconds for a first record (the launcher polls its workers a few
    times a second); empty without the launcher.
    """
    status = _status()
    if status is None:
        return {}
    end = time.monotonic() + wait
    while True:
        found: dict[int, int] = {}
        for path in sorted(status.glob("rank*.exit.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                rec = json.loads(path.read_text())
                if int(rec["rank"]) != rank and int(rec["returncode"]) != 0:
                    found[int(rec["rank"])] = int(rec["returncode"])
        if found or time.monotonic() >= end:
            return found
        time.sleep(0.2)


def is_collective_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is MindSpore's error from a collective (a lost or silent peer)."""
    return isinstance(exc, RuntimeError) and bool(_COLLECTIVE.search(str(exc)))


def last_checkpoint(run_dir: Path, written: Path | None) -> Path | None:
    """The checkpoint to resume from: this rank's newest, else rank 0's newest."""
    if written is not None and written.is_file():
        return written
    found = []
    for path in (Path(run_dir) / "ckpt_0").glob("*.ckpt"):
        match = _CKPT.match(path.name)
        if match:
            found.append((int(match.group(3)), path))
    return max(found)[1] if found else None


def resume_command(checkpoint: Path | None, group_size: int) -> str:
    """The job's command line with ``--resume checkpoint`` (replacing an earlier one)."""
    launch = os.environ.get(COMMAND_ENV)
    if launch:
        words = shlex.split(launch)
    else:  # started by plain msrun (or another launcher): its usual form
        words = [
            "msrun",
            f"--worker_num={group_size}",
            f"--local_worker_num={group_size}",
            "python",
            "-m",
            "yoloqat",
            *sys.argv[1:],
        ]
    out: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
            continue
        if word == "--resume":
            skip = True
            continue
        if word.startswith("--resume="):
            continue
        out.append(word)
    if checkpoint is not None:
        out += ["--resume", str(checkpoint)]
    return shlex.join(out)


def _first_line(exc: BaseException | None) -> str:
    """The first line of MindSpore's message that says something (not a ruler or title)."""
    for line in str(exc or "").splitlines():
        text = line.strip()
        if text and not text.startswith("-") and not set(text) <= set("-= "):
            return text[:200]
    return ""


def peer_failure(
    exc: BaseException | None,
    *,
    rank: int,
    group_size: int,
    global_step: int,
    steps_per_epoch: int,
    run_dir: Path,
    written: Path | None,
    where: str | None = None,
) -> PeerFailure:
    """The error a surviving rank stops with (and its mark for the launcher).

    ``global_step``: steps this rank completed; the failed collective belongs to the next.
    ``written``: the newest checkpoint this rank wrote (None: look in ``ckpt_0``).
    """
    dead = dead_ranks(rank)
    step = global_step + 1
    spe = max(int(steps_per_epoch), 1)
    if where is None:
        epoch, batch = global_step // spe + 1, global_step % spe + 1
        where = f"step {step} (epoch {epoch}, batch {batch} of {spe})"
    if dead:
        who = "; ".join(f"rank {r} {describe_exit(code)}" for r, code in sorted(dead.items()))
        what = f"{who} {where}" if where.startswith("while") else f"{who} during {where}"
    else:
        known = (
            "no rank on this node has exited (one hangs, or died on another node: the "
            "launchers name it)"
            if _status() is not None
            else "no launcher recorded which (python -m yoloqat.engine.launch does)"
        )
        when = where if where.startswith("while") else f"during {where}"
        what = (
            f"a peer rank stopped responding {when}: the collective failed after the "
            f"backend's timeout (on CPU {CPU_TIMEOUT_ENV}, {collective_timeout():.0f} s); {known}"
        )
    ckpt = last_checkpoint(run_dir, written)
    saved = f"last checkpoint: {ckpt}" if ckpt else "no checkpoint was written yet"
    again = "resume with" if ckpt else "start again with"
    status = _status()
    if status is not None:
        _write(status / f"rank{rank}.peer.json", {"rank": rank, "step": step})
    reason = _first_line(exc)
    return PeerFailure(
        f"{what}; rank {rank} stops too; {saved}; {again}: {resume_command(ckpt, group_size)}",
        hint=f"MindSpore said: {reason}" if reason else None,
    )
