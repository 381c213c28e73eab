"""The ``tensorboard`` callback: training scalars as a TensorBoard event file (tensorboardX).

Manifest only; tensorboardX (the optional extra ``yoloqat[tensorboard]``) is imported by the
factory, which fails with an install hint when it is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .writer import TensorBoardWriter


def tensorboard(*, flush_secs: int = 10, log_dir: str | None = None) -> TensorBoardWriter:
    """TensorBoard scalars: train/loss, train/lr, train/img_s per step; val/AP, val/AP50, ...

    Rank 0 writes one ``events.out.tfevents.*`` file into the run folder (a resumed run adds
    another), read with ``tensorboard --logdir <ckpt_path>``. Values are stored as float32.

    Parameters:
        flush_secs: seconds between flushes of the event file to disk.
        log_dir: folder for the event file (default: the run folder).
    """
    from .writer import TensorBoardWriter, require_tensorboardx

    require_tensorboardx()
    return TensorBoardWriter(flush_secs=flush_secs, log_dir=log_dir)


@hookimpl
def yoloqat_callbacks() -> dict:
    """Register the TensorBoard callback."""
    return {"tensorboard": tensorboard}
