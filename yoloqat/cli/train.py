"""``yoloqat train``: every flag of the seed's train.py (underscore or dashed spelling)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import SET_HELP, check_inputs, handle_errors, opt
from yoloqat.engine.training.setup import (  # the config assembly lives in the engine
    DEFAULT_CONFIG,
    FLAG_TO_KEY,
    add_callbacks,
    apply_flags,
    inherit_initial_network,
    resume_config,
)

__all__ = [
    "DEFAULT_CONFIG",
    "FLAG_TO_KEY",
    "add_callbacks",
    "apply_flags",
    "inherit_initial_network",
    "resume_config",
    "train",
]

#: The other commands' modules import it from here.
_opt = opt

# --help panels
DATA = "Data and model"
SCHEDULE = "Schedule and optimizer"
RUN = "Run folder, checkpoints, resume"
VAL = "Validation"
DEVICES = "Devices"


def train(
    config: Optional[str] = opt(
        None,
        "config",
        help="Config file or bundled config name.",
        rich_help_panel=DATA,
    ),
    data: Optional[str] = opt(
        None,
        "data",
        help="Data yaml, dataset folder or COCO json.",
        rich_help_panel=DATA,
    ),
    data_dir: Optional[str] = opt(
        None, "data_dir", help="Folder of the config's dataset.", rich_help_panel=DATA
    ),
    resume_yolov3: Optional[str] = opt(
        None,
        "resume_yolov3",
        help="Start from these weights (.ckpt).",
        rich_help_panel=DATA,
    ),
    training_shape: Optional[int] = opt(
        None, "training_shape", help="Fixed input size (else multi-scale).", rich_help_panel=DATA
    ),
    resize_rate: Optional[int] = opt(
        None, "resize_rate", help="Batches between multi-scale sizes.", rich_help_panel=DATA
    ),
    dynamic_shapes: Optional[int] = opt(
        None,
        "dynamic_shapes",
        help="1: one graph for every multi-scale size.",
        rich_help_panel=DATA,
    ),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help=SET_HELP, rich_help_panel=DATA
    ),
    max_epoch: Optional[int] = opt(
        None,
        "max_epoch",
        help="Epochs to train (or to extend to).",
        rich_help_panel=SCHEDULE,
    ),
    per_batch_size: Optional[int] = opt(
        None, "per_batch_size", help="Images per device per step.", rich_help_panel=SCHEDULE
    ),
    lr: Optional[float] = opt(None, "lr", help="Base learning rate.", rich_help_panel=SCHEDULE),
    lr_scheduler: Optional[str] = opt(
        None,
        "lr_scheduler",
        help="cosine_annealing or exponential.",
        rich_help_panel=SCHEDULE,
    ),
    lr_epochs: Optional[str] = opt(
        None, "lr_epochs", help="exponential: milestones, e.g. 92,105.", rich_help_panel=SCHEDULE
    ),
    lr_gamma: Optional[float] = opt(
        None, "lr_gamma", help="exponential: decay per milestone.", rich_help_panel=SCHEDULE
    ),
    T_max: Optional[int] = opt(
        None, "T_max", help="cosine: period in epochs.", rich_help_panel=SCHEDULE
    ),
    eta_min: Optional[float] = opt(
        None, "eta_min", help="cosine: floor.", rich_help_panel=SCHEDULE
    ),
    warmup_epochs: Optional[float] = opt(
        None, "warmup_epochs", help="Warmup epochs.", rich_help_panel=SCHEDULE
    ),
    weight_decay: Optional[float] = opt(
        None, "weight_decay", help="Weight decay (not biases/BN).", rich_help_panel=SCHEDULE
    ),
    momentum: Optional[float] = opt(
        None, "momentum", help="SGD momentum.", rich_help_panel=SCHEDULE
    ),
    loss_scale: Optional[float] = opt(
        None, "loss_scale", help="Static loss scale.", rich_help_panel=SCHEDULE
    ),
    label_smooth: Optional[int] = opt(
        None, "label_smooth", help="1: smooth class targets.", rich_help_panel=SCHEDULE
    ),
    label_smooth_factor: Optional[float] = opt(
        None, "label_smooth_factor", help="Smoothing epsilon.", rich_help_panel=SCHEDULE
    ),
    ckpt_path: Optional[str] = opt(
        None, "ckpt_path", help="Folder of the run folders (outputs).", rich_help_panel=RUN
    ),
    run_name: Optional[str] = opt(
        None,
        "run_name",
        help="Run folder name (default: the start time).",
        rich_help_panel=RUN,
    ),
    resume: Optional[str] = opt(
        None,
        "resume",
        help="Continue a run from a checkpoint.",
        rich_help_panel=RUN,
    ),
    ckpt_interval: Optional[int] = opt(
        None, "ckpt_interval", help="Steps between checkpoints (1 epoch).", rich_help_panel=RUN
    ),
    log_interval: Optional[int] = opt(
        None, "log_interval", help="Steps between log.txt lines.", rich_help_panel=RUN
    ),
    callbacks: Optional[str] = opt(
        None,
        "callbacks",
        help="Add callbacks (tensorboard, ...).",
        rich_help_panel=RUN,
    ),
    seed: Optional[int] = opt(None, "seed", help="Random seed.", rich_help_panel=RUN),
    need_profiler: Optional[int] = opt(
        None, "need_profiler", help="1: profile the first steps.", rich_help_panel=RUN
    ),
    val_interval: Optional[int] = opt(
        None,
        "val_interval",
        help="Validate every N epochs (0: off).",
        rich_help_panel=VAL,
    ),
    best_metric: Optional[str] = opt(
        None, "best_metric", help="best.ckpt by AP50 (default) or AP.", rich_help_panel=VAL
    ),
    val_max_images: Optional[int] = opt(
        None, "val_max_images", help="Validate on the first N images.", rich_help_panel=VAL
    ),
    device_target: str = opt(
        "CPU", "device_target", help="CPU, GPU or Ascend.", rich_help_panel=DEVICES
    ),
    is_distributed: int = opt(
        0,
        "is_distributed",
        help="1: data-parallel over msrun workers.",
        rich_help_panel=DEVICES,
        show_default=False,
    ),
    is_save_on_master: Optional[int] = opt(
        None,
        "is_save_on_master",
        help="1: only rank 0 writes checkpoints.",
        rich_help_panel=DEVICES,
    ),
    rank: int = opt(
        0,
        "rank",
        help="This rank (else from the launcher).",
        rich_help_panel=DEVICES,
        show_default=False,
    ),
    group_size: int = opt(
        1,
        "group_size",
        help="Devices (else from the launcher).",
        rich_help_panel=DEVICES,
        show_default=False,
    ),
) -> None:
    """Train (or QAT-fine-tune) a detector. Options also work dashed (--max-epoch); README:
    "Training"."""
    from yoloqat.cli import render
    from yoloqat.core.runtime import init_runtime
    from yoloqat.engine.training.setup import build_config
    from yoloqat.engine.training.trainer import Trainer
    from yoloqat.registry import default_registry

    reg = default_registry()
    flags = {k: v for k, v in locals().items() if k in FLAG_TO_KEY and v is not None}
    check_inputs(data_dir=data_dir, resume=resume, resume_yolov3=resume_yolov3)
    cfg = build_config(
        config,
        resume=resume,
        flags=flags,
        callbacks=callbacks,
        overrides=set_,
        registry=reg,
        data=data,
    )
    rank, group_size = init_runtime(device_target, bool(is_distributed), rank, group_size)
    render.set_rank(rank)  # ranks > 0 stay quiet; rank 0 shows progress
    trainer = Trainer(
        cfg,
        resume=resume,
        run_dir=_named_run_dir(cfg, run_name) if resume is None else None,
        rank=rank,
        group_size=group_size,
        distributed=bool(is_distributed),
        registry=reg,
    )
    result = trainer.run()
    if rank != 0:
        return
    # the data of the end summary (stdout): where the run and its checkpoints are
    typer.echo(f"run folder: {result.run_dir}")
    last = result.last or (result.checkpoints[-1] if result.checkpoints else None)
    if last is not None:
        typer.echo(f"last checkpoint: {last}")
    if result.best is not None:
        typer.echo(f"best checkpoint: {result.best}")


def _named_run_dir(cfg: dict[str, Any], run_name: str | None) -> Path | None:
    """``ckpt_path/<--run_name or $YOLOQAT_RUN_NAME>``; ``None`` lets the trainer pick."""
    from yoloqat.core.config import get_dotted
    from yoloqat.core.distributed import env_run_name
    from yoloqat.core.errors import UsageError

    name = run_name or env_run_name()
    if name is None:
        return None
    if name in (".", "..") or "/" in name or "\\" in name:
        raise UsageError(f"--run_name {name!r} must be a plain folder name (no '/' or '..')")
    return Path(get_dotted(cfg, "train.ckpt_path", None) or "outputs") / name


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
