"""``yoloqat train``: every flag of the seed's train.py, in underscore and dashed spelling."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import SET_HELP, handle_errors
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


def _opt(default: Any, *names: str, help: str, **kw: Any) -> Any:
    """An option spelled both ``--seed_style`` and ``--dashed-style``."""
    spellings: list[str] = []
    for name in names:
        spellings += [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return typer.Option(default, *spellings, help=help, **kw)


def train(
    config: Optional[str] = _opt(
        None,
        "config",
        help=f"Config file or bundled config name (default: {DEFAULT_CONFIG}; with --resume, "
        "the config stored in the checkpoint).",
    ),
    data_dir: Optional[str] = _opt(
        None, "data_dir", help="COCO 2014 root (train2014/, annotations/)."
    ),
    per_batch_size: Optional[int] = _opt(
        None, "per_batch_size", help="Images per device per step."
    ),
    resume_yolov3: Optional[str] = _opt(
        None,
        "resume_yolov3",
        help="Start from these weights (.ckpt); the QAT recipe needs a float checkpoint.",
    ),
    lr_scheduler: Optional[str] = _opt(
        None, "lr_scheduler", help="cosine_annealing or exponential."
    ),
    lr: Optional[float] = _opt(None, "lr", help="Base learning rate."),
    lr_epochs: Optional[str] = _opt(
        None, "lr_epochs", help="Milestone epochs for exponential, e.g. 92,105."
    ),
    lr_gamma: Optional[float] = _opt(None, "lr_gamma", help="Decay factor at each milestone."),
    eta_min: Optional[float] = _opt(None, "eta_min", help="Cosine floor."),
    T_max: Optional[int] = _opt(None, "T_max", help="Cosine period in epochs."),
    max_epoch: Optional[int] = _opt(
        None,
        "max_epoch",
        help="Epochs to train; with --resume, a larger value extends the run (the lr "
        "schedule is rebuilt over the new count).",
    ),
    warmup_epochs: Optional[float] = _opt(None, "warmup_epochs", help="Warmup epochs."),
    weight_decay: Optional[float] = _opt(
        None, "weight_decay", help="Weight decay (not on biases/BN)."
    ),
    momentum: Optional[float] = _opt(None, "momentum", help="SGD momentum."),
    loss_scale: Optional[float] = _opt(None, "loss_scale", help="Static loss scale."),
    label_smooth: Optional[int] = _opt(None, "label_smooth", help="1 to smooth class targets."),
    label_smooth_factor: Optional[float] = _opt(
        None, "label_smooth_factor", help="Smoothing epsilon."
    ),
    log_interval: Optional[int] = _opt(None, "log_interval", help="Steps between log.txt lines."),
    ckpt_path: Optional[str] = _opt(None, "ckpt_path", help="Folder for run outputs."),
    ckpt_interval: Optional[int] = _opt(
        None, "ckpt_interval", help="Steps between checkpoints (default: one epoch)."
    ),
    is_save_on_master: Optional[int] = _opt(
        None, "is_save_on_master", help="1: only rank 0 writes checkpoints."
    ),
    is_distributed: int = _opt(
        0, "is_distributed", help="1: data-parallel over msrun/mpirun workers."
    ),
    rank: int = _opt(
        0, "rank", help="This process's rank (distributed runs take it from the environment)."
    ),
    group_size: int = _opt(
        1, "group_size", help="Number of devices (taken from the environment when distributed)."
    ),
    need_profiler: Optional[int] = _opt(None, "need_profiler", help="1: profile the first steps."),
    dynamic_shapes: Optional[int] = _opt(
        None,
        "dynamic_shapes",
        help="1: compile the train step once for every multi-scale input size (faster start, "
        "slower steps; README: compile time).",
    ),
    training_shape: Optional[int] = _opt(
        None, "training_shape", help="Fix the training size (else multi-scale 320-608)."
    ),
    resize_rate: Optional[int] = _opt(None, "resize_rate", help="Batches between size changes."),
    device_target: str = _opt("CPU", "device_target", help="CPU, GPU or Ascend."),
    seed: Optional[int] = _opt(None, "seed", help="Random seed."),
    val_interval: Optional[int] = _opt(
        None,
        "val_interval",
        help="Evaluate the val split every N epochs and at the last (0: off); keeps "
        "ckpt_0/best.ckpt.",
    ),
    best_metric: Optional[str] = _opt(
        None, "best_metric", help="What best.ckpt is the best by: AP50 (default) or AP."
    ),
    val_max_images: Optional[int] = _opt(
        None, "val_max_images", help="Validate on the first N val images only (faster)."
    ),
    callbacks: Optional[str] = _opt(
        None,
        "callbacks",
        help="Callbacks to add to train.callbacks (default log,metrics,curves), e.g. "
        "tensorboard; see `yoloqat list callback`.",
    ),
    resume: Optional[str] = _opt(
        None,
        "resume",
        help="Continue a run from its checkpoint (its own config unless --config is given); "
        "--max_epoch N extends a finished run to N epochs. Batch size and dataset cannot "
        "change.",
    ),
    run_name: Optional[str] = _opt(
        None,
        "run_name",
        help="Run folder name under ckpt_path (default: $YOLOQAT_RUN_NAME, else the start "
        "time; all ranks of a distributed run share rank 0's).",
    ),
    set_: list[str] = typer.Option([], "--set", metavar="KEY=VALUE", help=SET_HELP),
) -> None:
    """Train (or QAT-fine-tune) a detector; the seed's train.py flags all work."""
    from yoloqat.cli import render
    from yoloqat.core.runtime import init_runtime
    from yoloqat.engine.training.setup import build_config
    from yoloqat.engine.training.trainer import Trainer
    from yoloqat.registry import default_registry

    reg = default_registry()
    flags = {k: v for k, v in locals().items() if k in FLAG_TO_KEY and v is not None}
    cfg = build_config(
        config, resume=resume, flags=flags, callbacks=callbacks, overrides=set_, registry=reg
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
    last = result.checkpoints[-1] if result.checkpoints else None
    typer.echo(f"run folder: {result.run_dir}")
    if last is not None:
        typer.echo(f"last checkpoint: {last}")


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
