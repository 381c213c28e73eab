"""Run folder, the seed-style log.txt, JSON-lines metrics and the loss/lr plot."""

from __future__ import annotations

import datetime as _dt
import itertools
import json
from pathlib import Path
from typing import Any

from yoloqat.core.atomic import atomic_path, check_writable
from yoloqat.core.errors import ConfigError


def make_run_dir(ckpt_path: str | Path, run_name: str | None = None, *, join: bool = False) -> Path:
    """Create a new run folder ``ckpt_path/<run_name or start time>`` and check it writable.

    The folder is created with an exclusive ``mkdir``, so two runs started at once never
    share one: when the name is taken, ``_2``, ``_3``, ... is appended. ``join``: use the
    folder as it is if it exists (resuming a run; the other ranks of a distributed run).
    """
    base = Path(ckpt_path)
    name = run_name or _dt.datetime.now().strftime("%Y-%m-%d_time_%H_%M_%S")
    try:
        check_writable(base, "ckpt_path")
        run_dir = base / name
        if join:
            run_dir.mkdir(parents=True, exist_ok=True)
        else:
            for index in itertools.count(2):
                try:
                    run_dir.mkdir()
                    break
                except FileExistsError:
                    run_dir = base / f"{name}_{index}"
        check_writable(run_dir, "run folder")
    except OSError as exc:
        raise ConfigError(
            f"ckpt_path {base} is not writable: {exc.strerror or exc}",
            hint="choose another --ckpt_path",
        ) from exc
    return run_dir


class RunLog:
    """Appends the seed's log line to ``log.txt`` and JSON records to ``metrics.jsonl``."""

    def __init__(self, run_dir: Path, rank: int = 0) -> None:
        suffix = "" if rank == 0 else f"_rank{rank}"
        self.text_path = run_dir / f"log{suffix}.txt"
        self.metrics_path = run_dir / f"metrics{suffix}.jsonl"
        for path in (self.text_path, self.metrics_path):
            _end_torn_line(path)

    def line(self, text: str) -> None:
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
        with open(self.text_path, "a", encoding="utf-8") as fh:
            fh.write(f"{stamp}:INFO:{text}\n")

    def record(self, **data: Any) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(data) + "\n")

    def step_line(self, epoch: int, step: int, loss: float, imgs_per_sec: float, lr: float) -> str:
        """The seed's line: ``epoch[e], iter[i], loss:..., N imgs/sec, lr:...``."""
        text = (
            f"epoch[{epoch}], iter[{step}], loss:{loss:.6f}, {imgs_per_sec:.2f} imgs/sec, lr:{lr}"
        )
        self.line(text)
        return text


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


def plot_curves(metrics_path: Path, out_path: Path) -> Path | None:
    """Plot loss and learning rate per step from ``metrics.jsonl`` into a PNG."""
    if not metrics_path.is_file():
        return None
    steps, losses, lrs = [], [], []
    for raw in metrics_path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError:  # a line torn by a killed run
            continue
        if rec.get("kind") == "step":
            steps.append(rec["global_step"])
            losses.append(rec["loss"])
            lrs.append(rec["lr"])
    if not steps:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax_loss.plot(steps, losses, color="tab:blue")
    ax_loss.set_ylabel("loss")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    ax_lr.plot(steps, lrs, color="tab:orange")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_lr.grid(alpha=0.3)
    fig.tight_layout()
    try:
        with atomic_path(out_path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return out_path
