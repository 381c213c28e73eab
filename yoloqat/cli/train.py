"""``yoloqat train``: every flag of the seed's train.py (underscore or dashed spelling)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

if TYPE_CHECKING:
    from yoloqat.core.schema import Config

from yoloqat.cli.common import SET_HELP, check_inputs, config_help, handle_errors, opt
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
        None,
        "data_dir",
        help=config_help("Folder of the config's dataset.", "dataset.data_dir"),
        rich_help_panel=DATA,
    ),
    resume_yolov3: Optional[str] = opt(
        None,
        "resume_yolov3",
        help=config_help("Start from these weights (.ckpt).", "train.resume_yolov3"),
        rich_help_panel=DATA,
    ),
    training_shape: Optional[int] = opt(
        None,
        "training_shape",
        help=config_help("Fixed input size (else multi-scale).", "data.training_shape"),
        rich_help_panel=DATA,
    ),
    resize_rate: Optional[int] = opt(
        None,
        "resize_rate",
        help=config_help("Batches between multi-scale sizes.", "data.resize_rate"),
        rich_help_panel=DATA,
    ),
    dynamic_shapes: Optional[int] = opt(
        None,
        "dynamic_shapes",
        help=config_help("1: one graph for every multi-scale size.", "train.dynamic_shapes"),
        rich_help_panel=DATA,
    ),
    set_: list[str] = typer.Option(
        [], "--set", metavar="KEY=VALUE", help=SET_HELP, rich_help_panel=DATA
    ),
    max_epoch: Optional[int] = opt(
        None,
        "max_epoch",
        help=config_help("Epochs to train (or to extend to).", "train.max_epoch"),
        rich_help_panel=SCHEDULE,
    ),
    per_batch_size: Optional[int] = opt(
        None,
        "per_batch_size",
        help=config_help("Images per device per step.", "train.per_batch_size"),
        rich_help_panel=SCHEDULE,
    ),
    lr: Optional[float] = opt(
        None,
        "lr",
        help=config_help("Base learning rate.", "scheduler.lr"),
        rich_help_panel=SCHEDULE,
    ),
    lr_scheduler: Optional[str] = opt(
        None,
        "lr_scheduler",
        help=config_help("cosine_annealing or exponential.", "scheduler.name"),
        rich_help_panel=SCHEDULE,
    ),
    lr_epochs: Optional[str] = opt(
        None,
        "lr_epochs",
        help=config_help("exponential: milestones, e.g. 92,105.", "scheduler.lr_epochs"),
        rich_help_panel=SCHEDULE,
    ),
    lr_gamma: Optional[float] = opt(
        None,
        "lr_gamma",
        help=config_help("exponential: decay per milestone.", "scheduler.lr_gamma"),
        rich_help_panel=SCHEDULE,
    ),
    T_max: Optional[int] = opt(
        None,
        "T_max",
        help=config_help("cosine: period in epochs.", "scheduler.T_max"),
        rich_help_panel=SCHEDULE,
    ),
    eta_min: Optional[float] = opt(
        None,
        "eta_min",
        help=config_help("cosine: floor.", "scheduler.eta_min"),
        rich_help_panel=SCHEDULE,
    ),
    warmup_epochs: Optional[float] = opt(
        None,
        "warmup_epochs",
        help=config_help("Warmup epochs.", "scheduler.warmup_epochs"),
        rich_help_panel=SCHEDULE,
    ),
    weight_decay: Optional[float] = opt(
        None,
        "weight_decay",
        help=config_help("Weight decay (not biases/BN).", "train.weight_decay"),
        rich_help_panel=SCHEDULE,
    ),
    momentum: Optional[float] = opt(
        None,
        "momentum",
        help=config_help("SGD momentum.", "train.momentum"),
        rich_help_panel=SCHEDULE,
    ),
    loss_scale: Optional[float] = opt(
        None,
        "loss_scale",
        help=config_help("Static loss scale.", "train.loss_scale"),
        rich_help_panel=SCHEDULE,
    ),
    label_smooth: Optional[int] = opt(
        None,
        "label_smooth",
        help=config_help("1: smooth class targets.", "loss.label_smooth"),
        rich_help_panel=SCHEDULE,
    ),
    label_smooth_factor: Optional[float] = opt(
        None,
        "label_smooth_factor",
        help=config_help("Smoothing epsilon.", "loss.label_smooth_factor"),
        rich_help_panel=SCHEDULE,
    ),
    ckpt_path: Optional[str] = opt(
        None,
        "ckpt_path",
        help=config_help("Folder of the run folders (outputs).", "train.ckpt_path"),
        rich_help_panel=RUN,
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
        None,
        "ckpt_interval",
        help=config_help("Steps between checkpoints (1 epoch).", "train.ckpt_interval"),
        rich_help_panel=RUN,
    ),
    log_interval: Optional[int] = opt(
        None,
        "log_interval",
        help=config_help("Steps between log.txt lines.", "train.log_interval"),
        rich_help_panel=RUN,
    ),
    callbacks: Optional[str] = opt(
        None,
        "callbacks",
        help="Add callbacks (tensorboard, ...).",
        rich_help_panel=RUN,
    ),
    seed: Optional[int] = opt(
        None, "seed", help=config_help("Random seed.", "train.seed"), rich_help_panel=RUN
    ),
    need_profiler: Optional[int] = opt(
        None,
        "need_profiler",
        help=config_help("1: profile the first steps.", "train.need_profiler"),
        rich_help_panel=RUN,
    ),
    val_interval: Optional[int] = opt(
        None,
        "val_interval",
        help=config_help("Validate every N epochs (0: off).", "train.val_interval"),
        rich_help_panel=VAL,
    ),
    best_metric: Optional[str] = opt(
        None,
        "best_metric",
        help=config_help("best.ckpt by AP50 (default) or AP.", "train.best_metric"),
        rich_help_panel=VAL,
    ),
    val_max_images: Optional[int] = opt(
        None,
        "val_max_images",
        help=config_help("Validate on the first N images.", "train.val_max_images"),
        rich_help_panel=VAL,
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
        help=config_help("1: only rank 0 writes checkpoints.", "train.is_save_on_master"),
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
    from yoloqat.core.device import init_device
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
    rank, group_size = init_device(device_target, bool(is_distributed), rank, group_size)
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


def _named_run_dir(cfg: Config, run_name: str | None) -> Path | None:
    """``ckpt_path/<--run_name or $YOLOQAT_RUN_NAME>``; ``None`` lets the trainer pick."""
    from yoloqat.core.distributed import env_run_name
    from yoloqat.core.errors import UsageError

    name = run_name or env_run_name()
    if name is None:
        return None
    if name in (".", "..") or "/" in name or "\\" in name:
        raise UsageError(f"--run_name {name!r} must be a plain folder name (no '/' or '..')")
    return Path(cfg.train.ckpt_path) / name


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
