"""A tensorboardX ``SummaryWriter`` fed by the trainer's events."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yoloqat.core.contracts.callback import RunEndInfo, RunInfo, StepInfo, ValidationInfo
from yoloqat.core.errors import PluginError

INSTALL_HINT = "pip install 'yoloqat[tensorboard]' (or: pip install 'tensorboardX>=2.6')"


def require_tensorboardx() -> None:
    """A PluginError with the install command when tensorboardX cannot be imported."""
    try:
        import tensorboardX  # noqa: F401
    except ImportError as exc:
        raise PluginError(
            f"callback 'tensorboard' needs the tensorboardX package, which is not installed "
            f"({exc})",
            hint=INSTALL_HINT,
        ) from None


class TensorBoardWriter:
    """Scalars per step (``train/*``) and per validation (``val/*``), on rank 0."""

    def __init__(self, *, flush_secs: int = 10, log_dir: str | None = None) -> None:
        self.flush_secs = flush_secs
        self.log_dir = log_dir
        self.writer: Any = None

    def on_run_start(self, run: RunInfo) -> None:
        if run.rank != 0:
            return
        from tensorboardX import SummaryWriter

        folder = Path(self.log_dir) if self.log_dir else run.run_dir
        self.writer = SummaryWriter(logdir=str(folder), flush_secs=self.flush_secs)

    def on_step(self, step: StepInfo) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", step.loss, step.global_step)
        self.writer.add_scalar("train/lr", step.lr, step.global_step)
        self.writer.add_scalar("train/img_s", step.images_per_sec, step.global_step)

    def on_validation(self, result: ValidationInfo) -> None:
        if self.writer is None:
            return
        for name, value in result.stats.items():
            self.writer.add_scalar(f"val/{name}", value, result.global_step)

    def on_run_end(self, end: RunEndInfo) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
