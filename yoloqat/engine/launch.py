"""``python -m yoloqat.engine.launch``: MindSpore's msrun that names a dead rank.

It takes msrun's arguments unchanged (it is msrun's own process manager, from
``mindspore.parallel.cluster``), and changes what happens when a worker fails. msrun
SIGKILLs every other worker within a second of noticing, so the survivors never say
anything, and its scheduler then reports every worker as "timed out", the first one
first (rank 0, whichever rank died). This launcher instead:

- records the failed worker (its rank, pid and exit code or signal) in a status folder
  that the workers know from ``YOLOQAT_LAUNCH_STATUS``;
- lets the other ranks stop by themselves: their next collective fails within the
  backend's timeout (``MS_CPU_COMM_OP_TIMEOUT``, 30 s by default, on CPU), and each
  prints which rank stopped, at which step, the last checkpoint and the resume command
  (:mod:`yoloqat.engine.training.peers`), then marks itself as stopped by a peer;
- kills the ranks still running after the grace period (``YOLOQAT_PEER_GRACE`` seconds;
  default that timeout + 30), and the scheduler;
- prints one line naming the rank that failed first (a rank that stopped because of a
  peer is not counted as a cause) and exits with code 1 (msrun's code when all succeed: 0).

``YOLOQAT_LAUNCH_COMMAND`` (set by ``scripts/run_distribute_train.sh`` to its own
command line, else by this launcher) is what the ranks print as the command to resume.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from yoloqat.engine.training.peers import (
    COMMAND_ENV,
    STATUS_ENV,
    collective_timeout,
    describe_exit,
    peer_stopped,
    record_exit,
)

GRACE_ENV = "YOLOQAT_PEER_GRACE"
POLL_S = 0.2


def grace_seconds() -> float:
    """How long the other ranks get to stop by themselves after a rank failed."""
    value = os.environ.get(GRACE_ENV)
    if value:
        return float(value)
    return collective_timeout() + 30.0


def _manager_class() -> Any:
    from mindspore.parallel.cluster.process_entity._api import _ProcessManager

    class Launcher(_ProcessManager):
        """msrun's process manager with :func:`join` in place of its join loop."""

        def run(self) -> None:
            status = Path(tempfile.mkdtemp(prefix="yoloqat_launch_"))
            os.environ[STATUS_ENV] = str(status)
            os.environ.setdefault(
                COMMAND_ENV, shlex.join(["python", "-m", "yoloqat.engine.launch", *sys.argv[1:]])
            )
            self.yoloqat_status = status
            if not self.join:
                sys.stderr.write(
                    "yoloqat launch: without --join=True nobody watches the workers; a dead "
                    "rank is then reported only by the ranks that time out waiting for it\n"
                )
            try:
                super().run()
            finally:
                if self.join:  # without it the workers outlive this process
                    shutil.rmtree(status, ignore_errors=True)

        def global_rank(self, local_rank: int) -> int:
            if self.local_worker_num == self.worker_num:
                return local_rank
            if self.node_rank >= 0:
                return self.node_rank * self.local_worker_num + local_rank
            return local_rank  # msrun assigns ranks itself here; the local index is shown

        def join_processes(self) -> None:
            code = join(self)
            if code:
                raise SystemExit(code)

    return Launcher


def _kill_group(proc: Any) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(os.getpgid(proc.pid), signal.SIGKILL)


def join(manager: Any) -> int:
    """Wait for the workers; on a failure, name it and give the others the grace period.

    Returns the exit code: 0 when every worker succeeded, else 1.
    """
    status: Path = manager.yoloqat_status
    ranks = {proc.pid: manager.global_rank(local) for local, proc in manager.proc_rank_map.items()}

    def on_sigint(_sig: int, _frame: Any) -> None:
        sys.stderr.write("yoloqat launch: interrupted; stopping every worker\n")
        for proc in manager.cgn_processes:
            if proc.poll() is None:
                _kill_group(proc)
        manager.kill_tail_log_processes()
        if manager.msn_process is not None and manager.msn_process.poll() is None:
            manager.msn_process.kill()
        raise SystemExit(130)

    signal.signal(signal.SIGINT, on_sigint)
    exits: dict[int, int] = {}  # rank -> exit code, in the order they were seen
    deadline: float | None = None
    killed: list[int] = []
    while True:
        for proc in manager.cgn_processes:
            rank = ranks.get(proc.pid, -1)
            code = proc.poll()
            if code is None or rank in exits:
                continue
            exits[rank] = code
            if code != 0:
                record_exit(status, rank=rank, pid=proc.pid, returncode=code)
                if deadline is None:
                    deadline = time.monotonic() + grace_seconds()
        running = [p for p in manager.cgn_processes if p.poll() is None]
        if not running:
            break
        if deadline is not None and time.monotonic() > deadline:
            for proc in running:
                killed.append(ranks.get(proc.pid, -1))
                _kill_group(proc)
            for proc in running:
                proc.wait()
            break
        time.sleep(POLL_S)
    manager.kill_tail_log_processes()
    failed = {r: c for r, c in exits.items() if c != 0}
    scheduler = manager.msn_process
    if scheduler is not None:
        if failed or killed:  # it would wait for heartbeats that never come
            with contextlib.suppress(ProcessLookupError):
                scheduler.kill()
        scheduler.wait()
    if not failed and not killed:
        return 0
    sys.stderr.write(summary(failed, killed, status, manager.log_dir) + "\n")
    sys.stderr.flush()
    return 1


def _ranks(ranks: list[int]) -> str:
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def summary(failed: dict[int, int], killed: list[int], status: Path, log_dir: str) -> str:
    """One line: the rank(s) that failed first, then those that stopped because of them."""
    causes = [r for r in failed if not peer_stopped(status, r)]
    followers = [r for r in failed if r not in causes]
    parts = [f"rank {r} {describe_exit(failed[r])} (the first failure)" for r in causes]
    if followers:
        why = "because of it" if causes else "when a collective timed out waiting for a peer"
        parts.append(
            f"{_ranks(followers)} stopped {why} (their logs name the step, the last "
            "checkpoint and the resume command)"
        )
    if killed:
        verb = "were" if len(killed) > 1 else "was"
        hung = "hung" if not causes else "did not stop"
        parts.append(
            f"{_ranks(killed)} {hung}: still running {grace_seconds():.0f} s after the first "
            f"failure, {verb} killed" + (" (the likely cause)" if not causes else "")
        )
    logs = Path(log_dir or ".").resolve()
    return f"yoloqat launch: {'; '.join(parts)}; worker logs: {logs}"


def main() -> None:
    """msrun's command line (``--worker_num``, ``--local_worker_num``, ``--master_port``,
    ``--log_dir``, ``--join``, ...) followed by the command every worker runs."""
    from mindspore.parallel.cluster.run import get_args

    args = get_args()
    manager = _manager_class()(args)
    manager.run()


if __name__ == "__main__":
    main()
