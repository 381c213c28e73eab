"""Assembling a training run's config, and :func:`train`, the Python API of ``yoloqat train``.

Precedence (lowest first): the config file (or, for ``resume``, the config stored in the
checkpoint) < the starting checkpoint's network and loss (``resume_yolov3``) < the seed's
flags (:data:`FLAG_TO_KEY`) < ``--data`` (the dataset block, and ``model.num_classes``
from the data) < ``--set`` overrides; then the family preset written out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry
    from yoloqat.core.schema import Config

DEFAULT_CONFIG = "yolov3_darknet53"


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


def apply_flags(
    cfg: dict[str, Any], flags: dict[str, Any], registry: ComponentRegistry
) -> dict[str, Any]:
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


def inherit_initial_network(cfg: dict[str, Any], resume_yolov3: str | None) -> None:
    """Make ``cfg`` describe the network and loss its starting checkpoint holds
    (``--resume_yolov3``, else the config's ``train.resume_yolov3``).

    The checkpoint's model (backbone and head with every setting, from any plugin), loss,
    family and input preprocessing win over the config's (an imported Darknet model
    fine-tunes as itself); flags and ``--set``, applied afterwards, win over both.
    """
    from yoloqat.core import events
    from yoloqat.core.config import get_dotted
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.inference import inherit_network_settings, stored_config

    # the raw config being assembled (checked once, at the end of build_config)
    init = resume_yolov3 or get_dotted(cfg, "train.resume_yolov3")
    if not init:
        return
    _params, meta = read_checkpoint(init)
    for note in inherit_network_settings(cfg, stored_config(meta)):
        events.info(note)


def add_callbacks(cfg: dict[str, Any], names: str | None) -> dict[str, Any]:
    """``--callbacks a,b``: append the names to ``train.callbacks`` (kept once each)."""
    from yoloqat.core.config import callback_blocks, set_dotted

    if not names:
        return cfg
    entries: list[Any] = [
        {"name": name, **params} if params else name for _, name, params in callback_blocks(cfg)
    ]
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
    from yoloqat.engine.checkpoints import read_checkpoint
    from yoloqat.engine.inference import stored_config

    _params, meta = read_checkpoint(resume)
    stored = stored_config(meta)
    if stored is None:
        events.warn(f"{resume} stores no config; using {DEFAULT_CONFIG} (pass --config)")
    return stored


def apply_data(
    cfg: dict[str, Any], data: str | Path, overrides: Sequence[str], registry: ComponentRegistry
) -> dict[str, Any]:
    """``--data``: the dataset block it names (:func:`~yoloqat.engine.training.datasets.
    dataset_from_data`), and ``model.num_classes`` set to the data's class count unless an
    override sets it."""
    from yoloqat.core import events
    from yoloqat.core.config import get_dotted, set_dotted
    from yoloqat.engine.pipeline import build_dataset
    from yoloqat.engine.training.datasets import dataset_from_data, sets_key

    cfg["dataset"] = dataset_from_data(data)
    if sets_key(list(overrides), "model.num_classes"):
        return cfg
    classes = int(build_dataset(cfg, registry).num_classes)
    before = get_dotted(cfg, "model.num_classes")  # as written (checked in build_config)
    set_dotted(cfg, ["model", "num_classes"], classes)
    if before is not None and before != classes:
        events.info(f"model.num_classes={classes}: the classes of {data} (the config: {before})")
    return cfg


def build_config(
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    callbacks: str | None = None,
    overrides: Sequence[str] = (),
    registry: ComponentRegistry | None = None,
    data: str | Path | None = None,
) -> Config:
    """The checked config a training run uses (see the module doc for the precedence),
    validated once here: the :class:`~yoloqat.core.schema.Config` the trainer reads.

    ``data``: a data yaml, a dataset folder or a COCO json (``--data``).
    """
    import copy

    from yoloqat.core.config import apply_overrides, check_config, load_raw, resolve_family
    from yoloqat.engine.pipeline import registry_of
    from yoloqat.engine.training.datasets import with_absolute_data

    reg = registry_of(registry)
    flags = dict(flags or {})
    unknown = sorted(set(flags) - set(FLAG_TO_KEY))
    if unknown:
        from yoloqat.core.errors import ConfigError
        from yoloqat.registry import suggest

        raise ConfigError(
            f"train has no option {unknown[0]!r}.{suggest(unknown[0], FLAG_TO_KEY)} "
            f"Options: {', '.join(FLAG_TO_KEY)}; anything else with overrides=['key=value']"
        )
    base = resume_config(str(resume)) if resume is not None and config is None else None
    if base is None:
        if isinstance(config, Mapping):
            base = copy.deepcopy(dict(config))
        else:
            base = load_raw(config or DEFAULT_CONFIG)
    if resume is None:  # the starting checkpoint's network and loss; flags and --set win
        inherit_initial_network(base, flags.get("resume_yolov3"))
    cfg = add_callbacks(apply_flags(base, flags, reg), callbacks)
    if data is not None:
        if flags.get("data_dir") is not None:
            from yoloqat.core.errors import UsageError

            raise UsageError("give --data or --data_dir, not both (--data names the dataset)")
        cfg = apply_data(cfg, data, overrides, reg)
    cfg = with_absolute_data(resolve_family(apply_overrides(cfg, list(overrides)), reg))
    return check_config(cfg, reg)  # every section and component, before MindSpore starts


def train(
    config: str | Path | Mapping[str, Any] | None = None,
    *,
    resume: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    callbacks: Iterable[Any] = (),
    run_dir: str | Path | None = None,
    device: str = "CPU",
    data: str | Path | None = None,
    **flags: Any,
) -> Any:
    """Train (or QAT-fine-tune) a detector as ``yoloqat train`` does; returns the
    :class:`~yoloqat.engine.training.trainer.TrainResult` (run folder, checkpoints, losses).

    ``config``: a config file, a bundled config's name or a dict (default
    ``yolov3_darknet53``); ``resume``: continue a run from its checkpoint; ``flags``: the
    seed's options by name (``max_epoch=5``, ``data_dir="coco"``, ``resume_yolov3=...``,
    ``per_batch_size=8``, ...: :data:`FLAG_TO_KEY`); ``data``: a data yaml, a dataset
    folder or a COCO json (sets the dataset and ``model.num_classes``); ``overrides``:
    ``["key=value", ...]``
    or ``{"model.num_classes": 3}``; ``callbacks``: objects with Callback methods.
    """
    from yoloqat.core.device import init_device
    from yoloqat.engine.training.trainer import Trainer

    if isinstance(overrides, Mapping):
        import json

        overrides = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]
    cfg = build_config(config, resume=resume, flags=flags, overrides=overrides, data=data)
    init_device(device)
    trainer = Trainer(cfg, resume=resume, run_dir=run_dir, callbacks=callbacks)
    return trainer.run()
