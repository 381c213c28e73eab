"""The run folder's writers as callbacks: ``log`` (log.txt), ``metrics`` (metrics.jsonl) and
``curves`` (curves.png), on by default (``train.callbacks``).

Manifest only; matplotlib is imported when the curves are drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .files import CurvesWriter, LogWriter, MetricsWriter


def log() -> LogWriter:
    """The seed's log.txt: the config, a loss/speed/lr line per log_interval, validations.

    Rank r > 0 writes ``log_rank<r>.txt``. Lines: ``epoch[e], iter[i], loss:L, N imgs/sec,
    lr:X`` (mean loss and throughput over the last ``train.log_interval`` steps, and at
    each epoch's end) and ``epoch[e], val AP:..., AP50:..., best AP50:...``; epochs count
    from 1, as on the screen and in checkpoint names.
    """
    from .files import LogWriter

    return LogWriter()


def metrics() -> MetricsWriter:
    """metrics.jsonl: one JSON record per step, epoch and validation (kind step/epoch/val).

    Rank r > 0 writes ``metrics_rank<r>.jsonl``; a resumed run appends to the same file.
    """
    from .files import MetricsWriter

    return MetricsWriter()


def curves() -> CurvesWriter:
    """curves.png at the end of a run (rank 0): loss, learning rate and validation AP panels.

    Drawn from the run's metrics.jsonl (so it needs the ``metrics`` callback), across resumes.
    """
    from .files import CurvesWriter

    return CurvesWriter()


@hookimpl
def yoloqat_callbacks() -> dict:
    """Register the bundled run-folder writers."""
    return {"log": log, "metrics": metrics, "curves": curves}
