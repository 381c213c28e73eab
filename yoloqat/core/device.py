"""Device and distributed set-up shared by train, eval and export."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

from yoloqat.core.errors import ConfigError, RuntimeFailure

#: oneDNN's ISA cap, which yoloqat sets for MindSpore's kernels at import (yoloqat/__init__).
ISA_CAP = "ONEDNN_MAX_CPU_ISA"


@contextlib.contextmanager
def uncapped_isa() -> Iterator[None]:
    """Inside the block, oneDNN's AVX2 cap is lifted (for OpenVINO's compile), then put back.

    OpenVINO's own oneDNN reads ``ONEDNN_MAX_CPU_ISA`` when it first compiles: capped at
    AVX2 it runs int8 without AVX-512 VNNI (measured at 416 on 2 cores: 200 ms instead of
    89-94 ms). The variable is put back at once, so MindSpore's oneDNN (a separate library,
    for which the AVX2 cap is right) still sees it.
    """
    saved = os.environ.pop(ISA_CAP, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[ISA_CAP] = saved


#: MindSpore's switch behind ``mindspore.runtime.launch_blocking()``; set it (to 0 or 1)
#: and yoloqat leaves MindSpore's op launch as it is.
LAUNCH_BLOCKING = "MS_DEV_LAUNCH_BLOCKING"


def cpu_launch_blocking() -> bool:
    """Launch MindSpore's ops blocking on CPU (``mindspore.runtime.launch_blocking()``),
    unless ``MS_DEV_LAUNCH_BLOCKING`` is set; return whether it was switched on here.

    MindSpore launches ops asynchronously by default; on a CPU its dispatch threads then
    compete with the kernels for the cores, and every PYNATIVE forward pays for it
    (measured on 2 cores by ``benchmarks/bench_launch_blocking.py``: a PYNATIVE forward of
    the QAT demo network, what QAT observers and int8_ptq calibration run, 10.6 s async
    against 0.95 s blocking; compiled training steps and the full network's PYNATIVE
    forward the same either way). Called for CPU by :func:`init_device`; a process can't
    switch back, so export ``MS_DEV_LAUNCH_BLOCKING=0`` to keep MindSpore's default.
    """
    if LAUNCH_BLOCKING in os.environ:
        return False
    import mindspore as ms

    ms.runtime.launch_blocking()
    os.environ[LAUNCH_BLOCKING] = "1"  # child processes (msrun workers) launch the same way
    return True


DEVICE_TARGETS = ("CPU", "GPU", "Ascend")

_TIMED_OUT = re.compile(r"Timed out node list is: [^{]*\{([\d,\s]*)\}")


def scheduler_lost_workers(message: str) -> RuntimeFailure | None:
    """In msrun's scheduler process (``MS_ROLE=MS_SCHED``, which runs the same command as
    the workers and serves the cluster from inside ``init()``), ``init()`` fails when
    workers stop sending heartbeats, long after training started. That is no
    initialisation error: say which workers were lost, and that a worker's death is
    reported by the launcher and the surviving ranks."""
    if os.environ.get("MS_ROLE") != "MS_SCHED":
        return None
    match = _TIMED_OUT.search(message)
    if match is None:
        return None
    ranks = [r.strip() for r in match.group(1).split(",") if r.strip()]
    return RuntimeFailure(
        f"msrun's scheduler lost worker(s) {', '.join(ranks)}: no heartbeat within "
        "MS_NODE_TIMEOUT (the processes ended or hung); the scheduler stops",
        hint="plain msrun kills every worker once one fails, so all look lost here; "
        "python -m yoloqat.engine.launch (scripts/run_distribute_train.sh) names the rank "
        "that failed first, and the surviving ranks print their step and resume command",
    )


_SUPPORTED = re.compile(r"only supports one of the \[([^\]]*)\]")


def set_device(target: str) -> None:
    """``mindspore.set_device(target)``; a device this MindSpore cannot use is one line
    (RuntimeFailure, exit 1: the command is right, the machine has no such device), not
    MindSpore's page of library-load errors and C++ stack."""
    import logging

    import mindspore as ms
    from mindspore import log

    logger = log._get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # its "libcuda.so ... is not found" lines
    try:
        ms.set_device(target)
    except (RuntimeError, ValueError) as exc:
        match = _SUPPORTED.search(str(exc))
        usable = match.group(1).replace("'", "") if match else "CPU"
        raise RuntimeFailure(
            f"--device_target {target} is not available here: this MindSpore can use "
            f"{usable} only (no {target} build, driver or runtime found)",
            hint=f"use --device_target {usable.split(',')[0].strip() or 'CPU'}, or install "
            f"MindSpore's {target} package and drivers (https://www.mindspore.cn/install)",
        ) from None
    finally:
        logger.setLevel(level)


def init_device(
    device_target: str = "CPU",
    distributed: bool = False,
    rank: int = 0,
    group_size: int = 1,
) -> tuple[int, int]:
    """Select the device (on CPU with blocking op launch: :func:`cpu_launch_blocking`);
    with ``distributed`` initialise collectives (rank/size from env).

    Returns ``(rank, group_size)``.
    """
    import mindspore as ms

    target = {t.lower(): t for t in DEVICE_TARGETS}.get(str(device_target).lower())
    if target is None:
        raise ConfigError(
            f"--device_target {device_target!r} is not valid; expected one of "
            f"{', '.join(DEVICE_TARGETS)}"
        )
    set_device(target)
    if target == "CPU":
        cpu_launch_blocking()
    if not distributed:
        return rank, group_size
    from mindspore.communication import get_group_size, get_rank, init

    from yoloqat.core.distributed import launched

    if not launched():
        raise RuntimeFailure(
            "--is_distributed 1 needs a launcher: no msrun/mpirun/rank-table environment found",
            hint="run scripts/run_distribute_train.sh, or: msrun --worker_num=N "
            "--local_worker_num=N python -m yoloqat train --is_distributed 1 ...",
        )
    try:
        init()
    except RuntimeError as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), repr(exc))
        lost = scheduler_lost_workers(str(exc))
        if lost is not None:
            raise lost from None
        raise RuntimeFailure(
            f"could not initialise {target} collectives: {first}",
            hint="check the launcher's worker logs (msrun --log_dir) and --device_target",
        ) from exc
    rank, group_size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(
        parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=group_size
    )
    return rank, group_size
