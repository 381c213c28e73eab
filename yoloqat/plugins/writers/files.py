"""log.txt, metrics.jsonl and curves.png, written by callbacks from the trainer's events.

log.txt and metrics.jsonl are append-only streams (a resumed run continues them): each
line is written whole, and a line torn by a killed run is ended before appending.
curves.png is replaced atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from yoloqat.core.atomic import atomic_path
from yoloqat.core.contracts.callback import (
    EpochInfo,
    RunEndInfo,
    RunInfo,
    StepInfo,
    ValidationInfo,
)


def _suffix(rank: int) -> str:
    return "" if rank == 0 else f"_rank{rank}"


def _end_torn_line(path: Path) -> None:
    """A run killed mid-write may leave a last line without its newline: end it, so the
    resumed run's records start on lines of their own (appending logs are not atomic)."""
    try:
        with open(path, "rb+") as fh:
            fh.seek(0, 2)
            if fh.tell() == 0:
                return
            fh.seek(-1, 2)
            if fh.read(1) != b"\n":
                fh.write(b"\n")
    except FileNotFoundError:
        return


class LogWriter:
    """The seed's ``log.txt`` lines (``<time>:INFO:<text>``)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.interval = 1
        self.steps_per_epoch = 1
        self._window: list[StepInfo] = []

    def line(self, text: str) -> None:
        if self.path is None:
            return
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp}:INFO:{text}\n")

    def on_run_start(self, run: RunInfo) -> None:
        self.path = run.run_dir / f"log{_suffix(run.rank)}.txt"
        _end_torn_line(self.path)
        self.interval = max(1, run.log_interval)
        self.steps_per_epoch = run.steps_per_epoch
        self._window = []
        self.line(f"args: {run.config}")

    def on_step(self, step: StepInfo) -> None:
        """``epoch[e], iter[i], loss:..., N imgs/sec, lr:...`` over the last steps."""
        self._window.append(step)
        if len(self._window) < self.interval and step.step + 1 != self.steps_per_epoch:
            return
        window, self._window = self._window, []
        loss = sum(s.loss for s in window) / len(window)
        speed = sum(s.images for s in window) / max(sum(s.seconds for s in window), 1e-9)
        self.line(
            f"epoch[{step.epoch}], iter[{step.step}], loss:{loss:.6f}, "
            f"{speed:.2f} imgs/sec, lr:{step.lr}"
        )

    def on_validation(self, result: ValidationInfo) -> None:
        mark = " (new best)" if result.best else ""
        self.line(
            f"epoch[{result.epoch}], val AP:{result.stats['AP']:.6f}, "
            f"AP50:{result.stats['AP50']:.6f}, best {result.metric}:"
            f"{result.best_value:.6f}{mark}"
        )


class MetricsWriter:
    """JSON-lines records: ``step``, ``epoch`` and ``val``."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def record(self, **data: Any) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(data) + "\n")

    def on_run_start(self, run: RunInfo) -> None:
        self.path = run.run_dir / f"metrics{_suffix(run.rank)}.jsonl"
        _end_torn_line(self.path)

    def on_step(self, step: StepInfo) -> None:
        self.record(
            kind="step",
            epoch=step.epoch,
            step=step.step,
            global_step=step.global_step,
            loss=step.loss,
            lr=step.lr,
            img_s=step.images_per_sec,
            shape=step.shape,
            image_ids=list(step.image_ids),  # this rank's shard
        )

    def on_epoch_end(self, epoch: EpochInfo) -> None:
        self.record(kind="epoch", epoch=epoch.epoch, global_step=epoch.global_step, **epoch.stats)

    def on_validation(self, result: ValidationInfo) -> None:
        self.record(
            kind="val",
            epoch=result.epoch,
            global_step=result.global_step,
            metric=result.metric,
            best=result.best,
            num_images=result.num_images,
            **result.stats,
        )


class CurvesWriter:
    """``curves.png`` from ``metrics.jsonl`` when the run ends (rank 0)."""

    def __init__(self) -> None:
        self.run: RunInfo | None = None

    def on_run_start(self, run: RunInfo) -> None:
        self.run = run

    def on_run_end(self, end: RunEndInfo) -> None:
        if self.run is not None and self.run.rank == 0 and end.status != "failed":
            plot_curves(end.run_dir / "metrics.jsonl", end.run_dir / "curves.png")


def read_records(metrics_path: Path) -> list[dict[str, Any]]:
    """The records of ``metrics.jsonl`` (lines torn by a killed run skipped)."""
    out = []
    for raw in metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            continue
    return out


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """Plot loss and learning rate per step, and validation AP/AP50, into a PNG."""
    if not metrics_path.is_file():
        return None
    records = read_records(metrics_path)
    steps = [r for r in records if r.get("kind") == "step"]
    vals = [r for r in records if r.get("kind") == "val"]
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 3 if vals else 2
    fig, axes = plt.subplots(rows, 1, figsize=(8, 3 * rows), sharex=True)
    x = [r["global_step"] for r in steps]
    axes[0].plot(x, [r["loss"] for r in steps], color="tab:blue")
    axes[0].set_ylabel("loss")
    axes[0].set_yscale("log")
    axes[1].plot(x, [r["lr"] for r in steps], color="tab:orange")
    axes[1].set_ylabel("learning rate")
    if vals:
        vx = [r["global_step"] for r in vals]
        axes[2].plot(vx, [r["AP"] for r in vals], "o-", color="tab:green", label="AP")
        axes[2].plot(vx, [r["AP50"] for r in vals], "s-", color="tab:red", label="AP50")
        axes[2].set_ylabel("val AP")
        axes[2].legend(loc="lower right")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    fig.tight_layout()
    try:
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return out_path
