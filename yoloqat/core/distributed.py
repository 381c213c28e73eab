"""Data-parallel helpers: launcher detection and one run folder that every rank agrees on.

Workers are started by ``msrun`` (MindSpore's own launcher: it sets ``MS_ROLE``,
``MS_WORKER_NUM``, ``MS_SCHED_HOST``/``MS_SCHED_PORT``), by ``mpirun`` (``OMPI_*``), or on
Ascend from a rank table (``RANK_TABLE_FILE``). ``mindspore.communication.init()`` reads
these; rank and group size come from ``get_rank()``/``get_group_size()`` afterwards.

Run folder: every rank writes into ``<ckpt_path>/<run name>/`` (``log.txt``,
``log_rank<r>.txt``, ``ckpt_<r>/``). Each process stamping its own start time could give
different names, so the name is chosen once and shared: ``--run_name`` or the environment
variable ``YOLOQAT_RUN_NAME`` (the same for every worker of a launch) when set, otherwise
rank 0's timestamp, sent to the other ranks with one AllReduce (:func:`shared_run_name`).
"""

from __future__ import annotations

import datetime as _dt
import os

#: Environment variables that show a distributed launcher started this process.
LAUNCHER_ENV = (
    "MS_ROLE",
    "MS_SCHED_HOST",
    "OMPI_COMM_WORLD_SIZE",
    "RANK_TABLE_FILE",
    "MINDSPORE_HCCL_CONFIG_PATH",
)
#: Environment variable naming the run folder for every rank of a launch.
RUN_NAME_ENV = "YOLOQAT_RUN_NAME"
TIMESTAMP_FORMAT = "%Y-%m-%d_time_%H_%M_%S"


def launched() -> bool:
    """Whether a distributed launcher (msrun, mpirun, an Ascend rank table) started us."""
    return any(os.environ.get(name) for name in LAUNCHER_ENV)


def env_run_name() -> str | None:
    """``YOLOQAT_RUN_NAME`` if set (scripts/run_distribute_train.sh sets it), else ``None``."""
    return os.environ.get(RUN_NAME_ENV) or None


def shared_run_name() -> str:
    """Rank 0's start time as a folder name, identical on every rank.

    A collective: every rank of the group must call it (after ``init()``). The six date
    fields travel as small float32 integers (exact); the other ranks contribute zeros.
    """
    import numpy as np
    from mindspore import Tensor, ops
    from mindspore.communication import get_rank

    now = _dt.datetime.now()
    fields = np.array([now.year, now.month, now.day, now.hour, now.minute, now.second], np.float32)
    if get_rank() != 0:
        fields[:] = 0
    total = ops.AllReduce()(Tensor(fields)).asnumpy()
    year, month, day, hour, minute, second = (round(float(v)) for v in total)
    return _dt.datetime(year, month, day, hour, minute, second).strftime(TIMESTAMP_FORMAT)


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (a collective: every rank must call it)."""
    import numpy as np
    from mindspore import Tensor, ops
    from mindspore.communication import get_rank

    field = np.array([value if get_rank() == 0 else 0], np.float32)
    return round(float(ops.AllReduce()(Tensor(field)).asnumpy()[0]))
