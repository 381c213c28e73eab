"""``yoloqat train``: every flag of the seed's train.py, in underscore and dashed spelling."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from yoloqat.cli.common import SET_HELP, handle_errors

DEFAULT_CONFIG = "yolov3_darknet53"


def _opt(default: Any, *names: str, help: str, **kw: Any) -> Any:
    """An option spelled both ``--seed_style`` and ``--dashed-style``."""
    spellings: list[str] = []
    for name in names:
        spellings += [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
    return typer.Option(default, *spellings, help=help, **kw)


#: flag name -> dotted config key (``None`` values are not overridden).
FLAG_TO_KEY = {
    "data_dir": "dataset.data_dir",
    "per_batch_size": "train.per_batch_size",
    "resume_yolov3": "train.resume_yolov3",
    "lr_scheduler": "scheduler.name",
    "lr": "scheduler.lr",
    "lr_epochs": "scheduler.lr_epochs",
    "lr_gamma": "scheduler.lr_gamma",
    "eta_min": "scheduler.eta_min",
    "T_max": "scheduler.T_max",
    "warmup_epochs": "scheduler.warmup_epochs",
    "max_epoch": "train.max_epoch",
    "weight_decay": "train.weight_decay",
    "momentum": "train.momentum",
    "loss_scale": "train.loss_scale",
    "label_smooth": "loss.label_smooth",
    "label_smooth_factor": "loss.label_smooth_factor",
    "log_interval": "train.log_interval",
    "ckpt_path": "train.ckpt_path",
    "ckpt_interval": "train.ckpt_interval",
    "is_save_on_master": "train.is_save_on_master",
    "need_profiler": "train.need_profiler",
    "dynamic_shapes": "train.dynamic_shapes",
    "training_shape": "data.training_shape",
    "resize_rate": "data.resize_rate",
    "seed": "train.seed",
    "val_interval": "train.val_interval",
    "best_metric": "train.best_metric",
    "val_max_images": "train.val_max_images",
}


def apply_flags(cfg: dict[str, Any], flags: dict[str, Any], registry: Any) -> dict[str, Any]:
    """Write the given flags into ``cfg``; switching ``lr_scheduler`` keeps shared params."""
    from yoloqat.core.config import set_dotted

    flags = {k: v for k, v in flags.items() if v is not None}
    if "lr_epochs" in flags and isinstance(flags["lr_epochs"], str):
        flags["lr_epochs"] = [int(x) for x in flags["lr_epochs"].split(",") if x.strip()]
    for key in ("label_smooth",):
        if key in flags:
            flags[key] = bool(int(flags[key]))
    for flag, value in flags.items():
        set_dotted(cfg, FLAG_TO_KEY[flag].split("."), value)
    sched = cfg.get("scheduler")
    if isinstance(sched, dict) and "lr_scheduler" in flags:
        accepted = registry.get("scheduler", sched["name"]).parameters
        dropped = [k for k in sched if k != "name" and k not in accepted]
        for k in dropped:
            del sched[k]
    return cfg


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
    from yoloqat.core.config import apply_overrides, check_config, load_config, resolve_family
    from yoloqat.core.runtime import init_runtime
    from yoloqat.engine.training.trainer import Trainer
    from yoloqat.registry import default_registry

    reg = default_registry()
    flags = {k: v for k, v in locals().items() if k in FLAG_TO_KEY}
    base = resume_config(resume) if resume is not None and config is None else None
    if base is None:
        base = load_config(config or DEFAULT_CONFIG)
    if resume is None:  # the starting checkpoint's network and loss; flags and --set win
        inherit_initial_network(base, resume_yolov3)
    cfg = add_callbacks(apply_flags(base, flags, reg), callbacks)
    cfg = resolve_family(apply_overrides(cfg, set_), reg)  # the family preset written out
    check_config(cfg, reg)  # every section and component, before MindSpore starts
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


def inherit_initial_network(cfg: dict[str, Any], resume_yolov3: str | None) -> None:
    """Make ``cfg`` describe the network and loss its starting checkpoint holds
    (``--resume_yolov3``, else the config's ``train.resume_yolov3``).

    The checkpoint's model (backbone and head with every setting, from any plugin), loss,
    family and input preprocessing win over the config's (an imported Darknet model
    fine-tunes as itself); flags and ``--set``, applied afterwards, win over both.
    """
    from yoloqat.core import events
    from yoloqat.core.config import get_dotted
    from yoloqat.engine.inference import inherit_network_settings, stored_config
    from yoloqat.engine.training.checkpoint import read_checkpoint

    init = resume_yolov3 or get_dotted(cfg, "train.resume_yolov3", None)
    if not init:
        return
    _params, meta = read_checkpoint(init)
    for note in inherit_network_settings(cfg, stored_config(meta)):
        events.info(note)


def add_callbacks(cfg: dict[str, Any], names: str | None) -> dict[str, Any]:
    """``--callbacks a,b``: append the names to ``train.callbacks`` (kept once each)."""
    from yoloqat.core.config import DEFAULT_CALLBACKS, get_dotted, set_dotted

    if not names:
        return cfg
    current = get_dotted(cfg, "train.callbacks")
    entries = list(DEFAULT_CALLBACKS if current is None else current)
    have = {e.get("name") if isinstance(e, dict) else e for e in entries}
    for name in (n.strip() for n in names.split(",")):
        if name and name not in have:
            entries.append(name)
            have.add(name)
    set_dotted(cfg, ["train", "callbacks"], entries)
    return cfg


def resume_config(resume: str) -> dict[str, Any] | None:
    """The config a ``--resume`` checkpoint was trained with (``None`` if it stores none)."""
    from yoloqat.core import events
    from yoloqat.engine.inference import stored_config
    from yoloqat.engine.training.checkpoint import read_checkpoint

    _params, meta = read_checkpoint(resume)
    stored = stored_config(meta)
    if stored is None:
        events.warn(f"{resume} stores no config; using {DEFAULT_CONFIG} (pass --config)")
    return stored


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
