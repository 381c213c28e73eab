"""What a ``--resume`` may change, and where the resumed run starts.

A run continues with the batch size and the training data it was started with (the step
counter indexes the same batches); a change of either is a ConfigError naming the key and
both values. ``train.max_epoch`` may grow: the run is extended and the learning-rate
schedule is rebuilt over the new epoch count (``scheduler.per_step(steps_per_epoch,
max_epoch)``, e.g. the cosine's ``T_max`` is raised to it), continuing at the checkpoint's
global step. The per-step learning rates stored in a checkpoint are therefore not restored:
they always come from the config of the run being started.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from yoloqat.core.config import get_dotted
from yoloqat.core.errors import ConfigError
from yoloqat.engine.training.datasets import absolute_data_paths

#: Checkpoint entries a resume does not restore: derived from the config (the lr schedule).
NOT_RESTORED = ("learning_rate",)

_HINT = (
    "drop the flags that change it (without --config, --resume uses the checkpoint's own "
    "config), or start a new run from its weights with --resume_yolov3"
)


def stored_run_config(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The config stored in a training checkpoint's metadata (``{}`` if none)."""
    stored = meta.get("config")
    return dict(stored) if isinstance(stored, Mapping) else {}


def resume_position(meta: Mapping[str, Any], steps_per_epoch: int) -> tuple[int, int]:
    """Where a run continues from a checkpoint: ``(epoch index from 0, steps of it done)``.

    From the checkpoint's ``global_step`` (its count of steps, whatever the epoch
    numbering); without one, from ``epoch`` and ``step_in_epoch``, where ``epoch`` counts
    from ``epoch_base`` (1 since epochs are counted from 1 everywhere; checkpoints without
    the key counted from 0).
    """
    if meta.get("global_step") is not None:
        return divmod(int(meta["global_step"]), int(steps_per_epoch))
    epoch = int(meta["epoch"]) - int(meta.get("epoch_base", 0))
    step = int(meta["step_in_epoch"])
    if step >= steps_per_epoch:
        epoch, step = epoch + 1, 0
    return epoch, step


def check_resume(
    meta: Mapping[str, Any],
    cfg: Mapping[str, Any],
    *,
    source: str,
    batch_size: int,
    steps_per_epoch: int,
    max_epoch: int,
) -> tuple[int, int]:
    """Refuse changes a resume cannot follow; return ``(start epoch, start step in epoch)``.

    Errors (ConfigError): another ``train.per_batch_size``; another ``dataset`` block
    (name, folder or options); another number of steps per epoch (dataset size or device
    count changed); a smaller ``train.max_epoch`` than the run's; and a finished run resumed
    without a larger ``max_epoch`` (nothing to train).
    """
    stored = stored_run_config(meta)
    then_batch = get_dotted(stored, "train.per_batch_size")
    if then_batch is not None and int(then_batch) != batch_size:
        raise ConfigError(
            f"--resume {source} was trained with train.per_batch_size={then_batch} "
            f"(this run: {batch_size}); a run continues only with its batch size",
            hint=_HINT,
        )
    # compared with their paths absolute (runs store them so; older ones relative to the
    # folder they were started in, read against this one)
    then_data = absolute_data_paths(stored.get("dataset"))
    now_data = absolute_data_paths(cfg.get("dataset"))
    if isinstance(then_data, Mapping) and isinstance(now_data, Mapping):
        changed = [
            f"dataset.{k}={then_data.get(k)!r} (this run: {now_data.get(k)!r})"
            for k in sorted(set(then_data) | set(now_data))
            if then_data.get(k) != now_data.get(k)
        ]
        if changed:
            raise ConfigError(
                f"--resume {source} was trained with {', '.join(changed)}; a run continues "
                "only on the data it was started with",
                hint=_HINT,
            )
    then_steps = meta.get("steps_per_epoch")
    if then_steps is not None and int(then_steps) != steps_per_epoch:
        raise ConfigError(
            f"--resume {source} was trained with {then_steps} steps per epoch (this run: "
            f"{steps_per_epoch}): the training set or the number of devices changed",
            hint=_HINT,
        )
    then_epochs = get_dotted(stored, "train.max_epoch")
    if then_epochs is not None and max_epoch < int(then_epochs):
        raise ConfigError(
            f"--resume {source} belongs to a run of train.max_epoch={then_epochs} (this run: "
            f"{max_epoch}); a resumed run can be extended, not shortened",
            hint=f"pass --max_epoch {then_epochs} or more",
        )
    epoch, step = resume_position(meta, steps_per_epoch)
    if epoch >= max_epoch:
        raise ConfigError(
            f"--resume {source} is the end of a finished run of {max_epoch} epoch(s); "
            "nothing is left to train",
            hint=f"extend it with --max_epoch N (N > {max_epoch}); the learning-rate "
            f"schedule is then rebuilt over N epochs",
        )
    return epoch, step
