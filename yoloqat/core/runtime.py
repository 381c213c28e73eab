"""Device and distributed set-up shared by train, eval and export."""

from __future__ import annotations

from yoloqat.core.errors import ConfigError, RuntimeFailure

DEVICE_TARGETS = ("CPU", "GPU", "Ascend")


def init_runtime(
    device_target: str = "CPU",
    distributed: bool = False,
    rank: int = 0,
    group_size: int = 1,
) -> tuple[int, int]:
    """Select the device; with ``distributed`` initialise collectives (rank/size from env).

    Returns ``(rank, group_size)``.
    """
    import mindspore as ms

    target = {t.lower(): t for t in DEVICE_TARGETS}.get(str(device_target).lower())
    if target is None:
        raise ConfigError(
            f"--device_target {device_target!r} is not valid; expected one of "
            f"{', '.join(DEVICE_TARGETS)}"
        )
    ms.set_device(target)
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
        raise RuntimeFailure(
            f"could not initialise {target} collectives: {first}",
            hint="check the launcher's worker logs (msrun --log_dir) and --device_target",
        ) from exc
    rank, group_size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(
        parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=group_size
    )
    return rank, group_size
