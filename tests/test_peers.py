"""What a surviving rank and the launcher say about a dead or hung rank (issue 22, item 3).

The end-to-end case (a real msrun job, a real ``kill -9``) is in ``test_distributed.py``;
these check the wording of the other cases from the same status files the launcher writes:
a hang (no rank exited), several dead ranks, a start-up failure, the resume command and
MindSpore's messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from yoloqat.core.device import scheduler_lost_workers
from yoloqat.engine.launch import summary
from yoloqat.engine.training.peers import (
    COMMAND_ENV,
    STATUS_ENV,
    describe_exit,
    is_collective_failure,
    last_checkpoint,
    peer_failure,
    peer_stopped,
    record_exit,
    resume_command,
)

#: the text of MindSpore 2.10's RuntimeError when the gradient AllReduce lost its peer
KERNEL_ERROR = """
----------------------------------------------------
- Kernel error:
----------------------------------------------------
Launch kernel failed: Default/reducer-DistributedGradReducer/AllReduce-op75
"""


@pytest.fixture
def status(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "status"
    folder.mkdir()
    monkeypatch.setenv(STATUS_ENV, str(folder))
    monkeypatch.setenv(COMMAND_ENV, "bash scripts/run_distribute_train.sh D F none 4")
    return folder


def _run(tmp_path: Path, steps: list[int]) -> Path:
    run = tmp_path / "run"
    (run / "ckpt_0").mkdir(parents=True)
    for step in steps:
        (run / "ckpt_0" / f"0-{step // 4 + 1}_{step}.ckpt").write_bytes(b"x")
    return run


def test_two_dead_ranks_are_named_with_the_step_and_rank_0s_checkpoint(status, tmp_path):
    run = _run(tmp_path, [4, 8, 12])
    record_exit(status, rank=2, pid=11, returncode=-9)
    record_exit(status, rank=3, pid=12, returncode=137)
    err = peer_failure(
        RuntimeError(KERNEL_ERROR),
        rank=1,
        group_size=4,
        global_step=13,
        steps_per_epoch=4,
        run_dir=run,
        written=None,  # rank 1 writes no checkpoints: rank 0's newest is named
    )
    ckpt = run / "ckpt_0" / "0-4_12.ckpt"
    assert str(err) == (
        "rank 2 was killed by SIGKILL; rank 3 exited with code 137 during step 14 (epoch 4, "
        f"batch 2 of 4); rank 1 stops too; last checkpoint: {ckpt}; resume with: bash "
        f"scripts/run_distribute_train.sh D F none 4 --resume {ckpt}"
    )
    assert err.exit_code == 1
    assert err.hint == (
        "MindSpore said: Launch kernel failed: "
        "Default/reducer-DistributedGradReducer/AllReduce-op75"
    )
    assert peer_stopped(status, 1) and not peer_stopped(status, 2)


def test_a_hang_is_told_apart_and_the_launcher_names_the_hung_rank(status, tmp_path):
    run = _run(tmp_path, [])
    err = peer_failure(
        RuntimeError(KERNEL_ERROR),
        rank=0,
        group_size=2,
        global_step=6,
        steps_per_epoch=4,
        run_dir=run,
        written=None,
    )
    assert str(err).startswith(
        "a peer rank stopped responding during step 7 (epoch 2, batch 3 of 4): the collective "
        "failed after the backend's timeout (on CPU MS_CPU_COMM_OP_TIMEOUT, 30 s); no rank on "
        "this node has exited"
    )
    assert str(err).endswith(
        "rank 0 stops too; no checkpoint was written yet; start again with: bash "
        "scripts/run_distribute_train.sh D F none 4"
    )
    line = summary({0: 1}, [1], status, str(tmp_path))
    assert line == (
        "yoloqat launch: rank 0 stopped when a collective timed out waiting for a peer (their "
        "logs name the step, the last checkpoint and the resume command); rank 1 hung: still "
        f"running 60 s after the first failure, was killed (the likely cause); worker logs: "
        f"{tmp_path}"
    )


def test_the_launcher_counts_a_rank_stopped_by_a_peer_as_no_cause(status, tmp_path):
    record_exit(status, rank=1, pid=5, returncode=-9)
    where = "while the ranks agreed on the run folder"
    peer_failure(
        None, rank=0, group_size=2, global_step=0, steps_per_epoch=2, run_dir=tmp_path,
        written=None, where=where,
    )  # fmt: skip
    assert summary({1: -9, 0: 1}, [], status, str(tmp_path)).startswith(
        "yoloqat launch: rank 1 was killed by SIGKILL (the first failure); rank 0 stopped "
        "because of it"
    )


def test_resume_command_replaces_an_earlier_resume(monkeypatch, tmp_path):
    monkeypatch.setenv(COMMAND_ENV, "bash run.sh D 'my data' --resume old.ckpt --lr 0.1")
    assert resume_command(Path("new.ckpt"), 2) == (
        "bash run.sh D 'my data' --lr 0.1 --resume new.ckpt"
    )
    monkeypatch.delenv(COMMAND_ENV)
    monkeypatch.setattr("sys.argv", ["yoloqat/__main__.py", "train", "--is_distributed", "1"])
    assert resume_command(Path("c.ckpt"), 8) == (
        "msrun --worker_num=8 --local_worker_num=8 python -m yoloqat train --is_distributed 1 "
        "--resume c.ckpt"
    )


def test_last_checkpoint_prefers_this_ranks_own(tmp_path):
    run = _run(tmp_path, [2, 10])
    own = tmp_path / "own.ckpt"
    own.write_bytes(b"x")
    assert last_checkpoint(run, own) == own
    assert last_checkpoint(run, None) == run / "ckpt_0" / "0-3_10.ckpt"
    assert last_checkpoint(tmp_path / "nothing", None) is None


def test_collective_failures_are_told_from_other_errors():
    assert is_collective_failure(RuntimeError(KERNEL_ERROR))
    assert is_collective_failure(RuntimeError("HCCL execute failed"))
    assert not is_collective_failure(RuntimeError("For 'Conv2D', the shape is wrong"))
    assert not is_collective_failure(ValueError("AllReduce"))
    assert (
        describe_exit(-15) == "was killed by SIGTERM" and describe_exit(2) == "exited with code 2"
    )


def test_the_scheduler_says_it_lost_workers(monkeypatch):
    message = (
        "The total number of timed out node is 2. Timed out node list is: [const vector]{0, 1}"
        ", worker 0 is the first one timed out, please check its log."
    )
    assert scheduler_lost_workers(message) is None  # a worker's init error stays as it was
    monkeypatch.setenv("MS_ROLE", "MS_SCHED")
    err = scheduler_lost_workers(message)
    assert err is not None and str(err) == (
        "msrun's scheduler lost worker(s) 0, 1: no heartbeat within MS_NODE_TIMEOUT (the "
        "processes ended or hung); the scheduler stops"
    )
