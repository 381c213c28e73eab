"""The callback contract: what a ``yoloqat_callbacks()`` factory returns, and what it receives.

A callback is a plain Python object that the trainer tells what happens in a run. Every
event method is optional: a callback defines the ones it needs (at least one). Each takes
one positional argument, a frozen dataclass of this module, and returns nothing:

=====================  ====================  ==========================================
method                 argument              when
=====================  ====================  ==========================================
``on_run_start``       :class:`RunInfo`      after the set-up, before the first step
``on_step``            :class:`StepInfo`     after every optimizer step
``on_epoch_end``       :class:`EpochInfo`    after the epoch's checkpoint
``on_validation``      :class:`ValidationInfo`  after each validation (``--val_interval``)
``on_checkpoint``      :class:`CheckpointInfo`  after each checkpoint file (``best.ckpt`` too)
``on_run_end``         :class:`RunEndInfo`   at the end, also of an interrupted or failed run
=====================  ====================  ==========================================

Every rank of a distributed run calls its callbacks (``RunInfo.rank`` tells which rank it
is); validation and ``best.ckpt`` happen on rank 0 only. A callback cannot break the run:
an exception from an event method becomes one warning naming the callback, its plugin and
the exception, and the callback gets no further events. Epochs are counted from 1 (the
first epoch is epoch 1), as on the screen, in ``log.txt``, ``metrics.jsonl``, checkpoint
names and checkpoint metadata; ``step`` is a batch's index within its epoch (from 0) and
``global_step`` counts the steps done, this one included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

#: Members :func:`yoloqat.core.contracts.check_component` checks on a callback.
MEMBERS: tuple[str, ...] = (
    "on_run_start",
    "on_step",
    "on_epoch_end",
    "on_validation",
    "on_checkpoint",
    "on_run_end",
)
#: All of them are optional (a callback needs at least one).
OPTIONAL: tuple[str, ...] = MEMBERS


@dataclass(frozen=True)
class RunInfo:
    """The run being started (or resumed)."""

    run_dir: Path
    rank: int
    group_size: int
    config: dict[str, Any]
    max_epoch: int
    steps_per_epoch: int
    #: the epoch this process starts in (from 1; a resumed run's may be partly done)
    start_epoch: int
    #: steps done before this process started (a resumed run), 0 for a new run
    global_step: int
    #: ``train.log_interval``: steps per log line
    log_interval: int


@dataclass(frozen=True)
class StepInfo:
    """One optimizer step."""

    #: the epoch (from 1)
    epoch: int
    #: this batch's index within the epoch (from 0)
    step: int
    global_step: int
    loss: float
    lr: float
    #: images of this step over all ranks
    images: int
    #: wall time since the previous step ended (data loading included)
    seconds: float
    #: the input size of this batch
    shape: int
    #: this rank's images of the batch
    image_ids: tuple[int, ...] = ()

    @property
    def images_per_sec(self) -> float:
        """``images / seconds`` (all ranks)."""
        return self.images / max(self.seconds, 1e-9)


@dataclass(frozen=True)
class EpochInfo:
    """An epoch just finished (its checkpoint written)."""

    #: the epoch (from 1)
    epoch: int
    global_step: int
    #: mean training loss over the epoch's steps run by this process
    loss: float
    checkpoint: Path | None = None
    #: the loader's counters (``skipped_images``, ...)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidationInfo:
    """A validation of the val split (rank 0 only)."""

    #: the epoch validated after (from 1)
    epoch: int
    global_step: int
    #: pycocotools' 12 numbers by name (``AP``, ``AP50``, ..., ``AR_large``)
    stats: dict[str, float]
    #: ``train.best_metric`` (``AP50`` or ``AP``) and its value now
    metric: str
    value: float
    #: whether this validation is the best so far (``best.ckpt`` was written)
    best: bool
    best_value: float
    num_images: int


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file written (atomically)."""

    path: Path
    #: the epoch it was taken in (from 1), with ``step_in_epoch`` of its steps done
    epoch: int
    step_in_epoch: int
    global_step: int
    #: ``True`` for ``best.ckpt``
    best: bool = False


@dataclass(frozen=True)
class RunEndInfo:
    """The run ended."""

    run_dir: Path
    epochs_done: int
    global_step: int
    #: ``"finished"``, ``"interrupted"`` (SIGINT/SIGTERM) or ``"failed"``
    status: str


@runtime_checkable
class Callback(Protocol):
    """What a callback factory returns: any of these methods (all optional)."""

    def on_run_start(self, run: RunInfo) -> None:
        """The run starts: open files, writers (``run.run_dir``, ``run.rank``)."""
        ...

    def on_step(self, step: StepInfo) -> None:
        """An optimizer step finished: loss, learning rate, throughput."""
        ...

    def on_epoch_end(self, epoch: EpochInfo) -> None:
        """An epoch finished and its checkpoint was written."""
        ...

    def on_validation(self, result: ValidationInfo) -> None:
        """A validation finished (rank 0): the 12 COCO numbers, the best metric."""
        ...

    def on_checkpoint(self, checkpoint: CheckpointInfo) -> None:
        """A checkpoint file was written."""
        ...

    def on_run_end(self, end: RunEndInfo) -> None:
        """The run ended (finished, interrupted or failed): flush and close."""
        ...


def problems(obj: Any) -> list[str]:
    """A callback with none of the event methods would never be called."""
    if not any(callable(getattr(obj, name, None)) for name in MEMBERS):
        return [f"it has none of the event methods {', '.join(MEMBERS)}"]
    return []
