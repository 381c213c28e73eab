"""What a training run shows and leaves (issue 24, item 5): one epoch numbering (from 1)
everywhere, ``last.ckpt``, ``--data``, absolute data paths in checkpoints, the start and end
summaries, the compile line, the run's ETA and the epoch's mean loss."""

from __future__ import annotations

from yoloqat.engine.training.resume import resume_position


def test_resume_position_reads_old_and_new_checkpoints() -> None:
    # new checkpoints count epochs from 1 (epoch_base 1); old ones from 0: both resume at
    # the same place, which comes from the step count when there is one
    new = {"epoch": 2, "epoch_base": 1, "step_in_epoch": 2, "global_step": 6}
    old = {"epoch": 1, "step_in_epoch": 2, "global_step": 6}
    assert resume_position(new, 4) == resume_position(old, 4) == (1, 2)
    for meta in (new, old):
        no_count = {k: v for k, v in meta.items() if k != "global_step"}
        assert resume_position(no_count, 4) == (1, 2)
    # the end of an epoch continues with the next one
    end_old, end_new = {"epoch": 0, "step_in_epoch": 4}, {"epoch": 1, "epoch_base": 1}
    end_new["step_in_epoch"] = 4
    assert resume_position(end_old, 4) == resume_position(end_new, 4) == (1, 0)
    assert resume_position({**end_new, "global_step": 4}, 4) == (1, 0)
