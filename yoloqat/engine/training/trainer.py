"""The train loop: build everything from a config, run epochs, log, checkpoint, resume.

Order of set-up follows the seed (docs/seed.md §6.6): build the float network, load
``train.resume_yolov3`` weights if given, then quantize (if the config names a quantizer),
then build loss, optimizer and the compiled train step. ``resume`` restores the full state
of an interrupted run (weights, observers, optimizer, weight average, epoch and step) and
continues with exactly the batches the uninterrupted run would have seen; a larger
``max_epoch`` extends a run (what a resume may change: ``resume.py``). ``train.ema`` keeps a
moving average of the weights (``ema.py``), updated after every optimizer step.
What happens is told to the run's callbacks (``train.callbacks``: callbacks.py; log.txt,
metrics.jsonl and curves.png are written by the bundled ones); ``train.val_interval``
validates (the EMA weights when on) and keeps ``best.ckpt`` (validation.py).

What it shows goes out as events (``yoloqat.core.events``; the CLI draws them, cli/render.py):
``train_start`` (the start summary, progress.py), ``compile`` (``phase`` start/end, ``size``,
``seconds``) around each step that compiles the train step, a progress task per epoch
whose fields are the epoch's mean loss, img/s, lr and ``eta`` (seconds left in the whole
run, progress.RunClock), ``epoch``, ``validation`` and ``train_end`` (the end summary).
Epochs are counted from 1 everywhere outside the loop (the loop's index is the loader's).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.atomic import remove_stale_temporaries
from yoloqat.core.config import Config, check_config, resolve_family
from yoloqat.core.contracts import callback as cb
from yoloqat.core.errors import CheckpointError, ConfigError, Interrupted, RuntimeFailure
from yoloqat.engine import pipeline
from yoloqat.engine.training.callbacks import build_callbacks
from yoloqat.engine.training.datasets import absolute_data_paths
from yoloqat.engine.training.interrupt import StopGuard
from yoloqat.engine.training.logs import make_run_dir
from yoloqat.engine.training.progress import RunClock, count_macs, end_summary, start_summary
from yoloqat.engine.training.validation import Validator

if TYPE_CHECKING:
    from yoloqat.core.contracts.registry import ComponentRegistry

#: ``<rank>-<epoch>_<global step>.ckpt``, the seed's checkpoint names (epochs from 1).
CKPT_NAME = re.compile(r"^(\d+)-(\d+)_(\d+)\.ckpt$")
#: The newest interval checkpoint under a name that stays (a hard link, else a copy).
LAST_NAME = "last.ckpt"


@dataclass
class TrainResult:
    """What a finished (or stopped) run leaves behind."""

    run_dir: Path
    checkpoints: list[Path] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    global_step: int = 0
    epochs_done: int = 0
    skipped_images: int = 0
    #: ``ckpt_<rank>/last.ckpt`` (the newest interval checkpoint), None if none was written
    last: Path | None = None
    #: ``ckpt_<rank>/best.ckpt`` when validation kept one
    best: Path | None = None
    #: wall seconds of this process's run, and of it compiling the train step
    seconds: float = 0.0
    compile_seconds: float = 0.0


def _finite(param: Any) -> bool:
    return bool(np.isfinite(param.asnumpy()).all())


def _sizes(config: Config) -> tuple[int, ...]:
    """The training sizes: ``data.training_shape``, else ``data.multi_scale`` (the loader's)."""
    fixed = config.data.training_shape
    return (fixed,) if fixed else tuple(config.data.multi_scale)


def run_config(
    cfg: Config | Mapping[str, Any], registry: ComponentRegistry | None = None
) -> Config:
    """What a run trains: the family preset written out, the data's paths absolute (found
    from any folder), as a :class:`Config`. A raw dict is checked (sections and components)
    here; a :class:`Config` was checked by whoever built it (``build_config``)."""
    from yoloqat.core.schema import Block

    if isinstance(cfg, Config):
        config = cfg
    else:
        reg = pipeline.registry_of(registry)
        config = check_config(resolve_family(cfg, reg), reg)
    if config.dataset is not None:
        block = absolute_data_paths(config.dataset.model_dump())
        if block != config.dataset.model_dump():
            config = config.model_copy(update={"dataset": Block.model_validate(block)})
    return config


class Trainer:
    """Train a detector from a :class:`~yoloqat.core.schema.Config` (or a raw config dict,
    checked here; see ``configs/*.yaml``)."""

    def __init__(
        self,
        cfg: Config | Mapping[str, Any],
        *,
        resume: str | Path | None = None,
        run_dir: str | Path | None = None,
        rank: int = 0,
        group_size: int = 1,
        distributed: bool = False,
        registry: ComponentRegistry | None = None,
        callbacks: Iterable[Any] = (),
    ) -> None:
        """``callbacks``: objects with Callback methods, called after ``train.callbacks``."""
        #: the validated config every setting is read from
        self.config = config = run_config(cfg, registry)
        #: its plain dict: what the component builders read and the checkpoints store
        self.cfg = config.to_dict()
        self.resume = Path(resume) if resume else None
        self.rank = rank
        self.group_size = group_size
        self.distributed = distributed
        self.registry = registry
        self.callbacks = build_callbacks(self.cfg, registry, callbacks)
        train = config.train
        self.max_epoch = train.max_epoch
        self.batch_size = train.per_batch_size
        self.log_interval = train.log_interval
        self.keep = train.keep_checkpoints
        self.save_on_master = bool(train.is_save_on_master)
        self.seed = train.seed
        if self.resume is not None and self.resume.is_dir():
            from yoloqat.engine.checkpoints import read_checkpoint

            read_checkpoint(self.resume)  # the error that says it is a folder
        if self.resume is not None and not self.resume.exists():
            raise CheckpointError(f"--resume checkpoint not found: {self.resume}")
        if self.resume is not None:  # a device or pipe, or over the size limit
            from yoloqat.core.limits import check_input_file

            check_input_file(self.resume, "checkpoint", error=CheckpointError, what="checkpoint")
        self.writes_ckpt = self.rank == 0 or not self.save_on_master
        join = False
        name: str | None
        if run_dir is not None:
            base, name = Path(run_dir).parent, Path(run_dir).name
        elif self.resume is not None:
            run = self.resume.parent.parent  # <run>/ckpt_<rank>/<file>.ckpt
            base, name, join = run.parent, run.name, True
        else:
            base, name = Path(train.ckpt_path), None
        if distributed and not join:
            self.run_dir = self._shared_run_dir(base, name)
        else:
            self.run_dir = make_run_dir(base, name, join=join)
        #: a folder this run made: removed again if the run fails before its first step
        self.created_run_dir = not join and rank == 0 and not distributed
        self.ckpt_dir = self.run_dir / f"ckpt_{rank}"
        self.validator = Validator(
            config, ckpt_dir=self.ckpt_dir, rank=rank, max_epoch=self.max_epoch
        )
        # unfinished files of killed runs: this run's folders and (dead writers only) siblings
        base = self.run_dir.parent
        folders = {base, self.run_dir, self.ckpt_dir, *base.glob("*/ckpt_*")}
        if self.resume is not None:
            folders.add(self.resume.parent)
        for folder in sorted(folders):
            removed = remove_stale_temporaries(folder)
            if removed:
                events.info(
                    f"removed {len(removed)} unfinished file(s) of a killed run in {folder}"
                )
        self.saved: list[Path] = self._existing_checkpoints()
        self._written: set[Path] = set()
        self.guard = StopGuard(on_early_exit=self._remove_failed_start)
        self._steps_run = 0
        self._epoch_losses: list[float] = []
        self._last_validation: dict[str, Any] | None = None

    def _shared_run_dir(self, base: Path, name: str | None) -> Path:
        """[distributed] rank 0 creates a unique folder; every rank learns its name."""
        from yoloqat.core.distributed import broadcast_int, shared_run_name
        from yoloqat.engine.training.peers import is_collective_failure, peer_failure

        try:
            name = name or shared_run_name()
            suffix = 0
            if self.rank == 0:
                made = make_run_dir(base, name)
                suffix = 0 if made.name == name else int(made.name.rsplit("_", 1)[1])
            suffix = broadcast_int(suffix)
        except RuntimeError as exc:
            if not is_collective_failure(exc):
                raise
            raise peer_failure(
                exc,
                rank=self.rank,
                group_size=self.group_size,
                global_step=0,
                steps_per_epoch=1,
                run_dir=base,
                written=None,
                where="while the ranks agreed on the run folder",
            ) from None
        final = name if suffix == 0 else f"{name}_{suffix}"
        return make_run_dir(base, final, join=True)

    def _existing_checkpoints(self) -> list[Path]:
        """This rank's checkpoints already in the run folder (a resumed run), oldest first."""
        if not self.ckpt_dir.is_dir():
            return []
        found = []
        for path in self.ckpt_dir.iterdir():
            match = CKPT_NAME.match(path.name)
            if match and int(match.group(1)) == self.rank and path.is_file():
                found.append((int(match.group(3)), path))
        return [p for _, p in sorted(found)]

    # -- set-up ------------------------------------------------------------------------
    def _build(self) -> None:
        import mindspore as ms
        from mindspore import nn

        from yoloqat.data.loader import TrainLoader
        from yoloqat.engine.checkpoints import load_weights, read_checkpoint, weights_only
        from yoloqat.engine.training.ema import build_ema
        from yoloqat.engine.training.optim import build_optimizer, effective_lr
        from yoloqat.engine.training.step import NetWithLoss, TrainStep

        cfg, config = self.cfg, self.config
        ms.set_seed(self.seed)
        np.random.seed(self.seed)
        dataset = pipeline.build_dataset(cfg, self.registry)
        self.dataset = dataset
        self.network = pipeline.build_model(cfg, self.registry)
        init = config.train.resume_yolov3
        if init and self.resume is None:
            params, meta = read_checkpoint(init)
            if meta.get("quantized"):
                raise CheckpointError(
                    f"--resume_yolov3 {init} is a quantized (QAT) checkpoint; it must be a "
                    "float one",
                    hint="use --resume to continue a QAT run",
                )
            weights = weights_only(params)
            # a backbone-only start (darknet53.conv.74) leaves the head's weights missing; a
            # network whose head has no parameters (a Darknet .cfg graph) is loaded whole
            head = [p.name for p in self.network.get_parameters() if p.name.startswith("head.")]
            backbone_only = (
                bool(weights) and bool(head) and all(n.startswith("backbone.") for n in weights)
            )
            allow = ("head.",) if backbone_only else ()
            load_weights(self.network, params, source=init, allow_missing=allow)
            part = "backbone weights" if backbone_only else "weights"
            events.info(f"loaded initial {part} from {init}")
        #: multiply-adds per image at each training size, of the float network (before a
        #: quantizer rewrites it): the start summary's GFLOPs
        self.macs_at = count_macs(self.network, _sizes(config))
        self.quantizer = pipeline.build_quantizer(cfg, self.registry)
        if self.quantizer is not None:
            assert config.quantizer is not None  # a quantizer was built from it
            qname = str(config.quantizer.name)
            self.network = pipeline.quantize(self.network, self.quantizer, qname)
        if dataset.num_classes != self.network.num_classes:
            raise ConfigError(
                f"model.num_classes={self.network.num_classes} but the dataset has "
                f"{dataset.num_classes} classes",
                hint=f"set model.num_classes={dataset.num_classes}",
            )
        self.loss = pipeline.build_loss(cfg, self.network, self.registry)
        data = config.data
        self.loader = TrainLoader(
            dataset.train_source(),
            batch_size=self.batch_size,
            target_builder=getattr(self.loss, "build_targets", None),
            max_boxes=data.max_boxes,
            multi_scale=tuple(data.multi_scale),
            training_shape=data.training_shape,
            resize_rate=data.resize_rate,
            seed=self.seed,
            num_workers=data.num_workers,
            rank=self.rank,
            group_size=self.group_size,
            augment=data.augment,
            normalize=data.normalize,
        )
        self.steps_per_epoch = self.loader.steps_per_epoch
        if self.steps_per_epoch < 1:
            raise ConfigError(
                f"the training set ({len(dataset.train_source())} images) is smaller than one "
                f"batch of {self.batch_size} x {self.group_size} device(s)"
            )
        scheduler = pipeline.build_scheduler(cfg, self.registry)
        self.base_lr = scheduler.per_step(self.steps_per_epoch, self.max_epoch)
        train = config.train
        loss_scale = float(train.loss_scale)
        self.lr = effective_lr(self.base_lr, loss_scale, train.loss_scale_semantics)
        self.optimizer = build_optimizer(
            self.network,
            self.lr,
            momentum=float(train.momentum),
            weight_decay=float(train.weight_decay),
        )
        reducer = None
        if self.distributed:
            reducer = nn.DistributedGradReducer(
                self.optimizer.parameters, mean=True, degree=self.group_size
            )
        self.step_cell = TrainStep(
            NetWithLoss(self.network, self.loss),
            self.optimizer,
            loss_scale=loss_scale,
            dynamic=train.dynamic_loss_scale,
            reducer=reducer,
        )
        self.step_cell.set_train(True)
        #: one compiled graph for every input size (``train.dynamic_shapes``, used when the
        #: run has more than one size), set at the first step
        dynamic = bool(train.dynamic_shapes)
        self.dynamic_shapes = dynamic and len(set(self.loader.sizes)) > 1
        #: the weights' moving average (``train.ema``), None when off; see training/ema.py
        self.ema = build_ema(config, self.network)
        self.start_epoch, self.start_step = 0, 0
        if self.resume is not None:
            self._restore()

    def _restore(self) -> None:
        import mindspore as ms

        from yoloqat.engine.checkpoints import read_checkpoint
        from yoloqat.engine.training.ema import restore_ema
        from yoloqat.engine.training.resume import NOT_RESTORED, check_resume

        assert self.resume is not None  # called only when resuming
        params, meta = read_checkpoint(self.resume)
        if meta.get("format") != "yoloqat-ckpt" or "epoch" not in meta:
            raise CheckpointError(
                f"--resume {self.resume} is not a yoloqat training checkpoint",
                hint="use --resume_yolov3 to start from plain weights",
            )
        start = check_resume(
            meta,
            self.cfg,
            source=str(self.resume),
            batch_size=self.batch_size,
            steps_per_epoch=self.steps_per_epoch,
            max_epoch=self.max_epoch,
        )
        if bool(meta.get("quantized")) != (self.quantizer is not None):
            kind = "a QAT" if meta.get("quantized") else "a float"
            raise CheckpointError(
                f"--resume {self.resume} is {kind} checkpoint but the config "
                f"{'has no' if self.quantizer is None else 'has a'} quantizer",
                hint="use the config the run was started with",
            )
        wanted = {p.name: p for p in self.step_cell.get_parameters() if p.name not in NOT_RESTORED}
        bad = [
            f"{n} {tuple(params[n].shape)} vs {tuple(p.shape)}"
            for n, p in wanted.items()
            if n in params and tuple(params[n].shape) != tuple(p.shape)
        ]
        missing = [n for n in wanted if n not in params]
        if bad or missing:
            raise CheckpointError(
                f"--resume {self.resume} does not match this network/optimizer: "
                + "; ".join(bad[:3] + [f"missing {m}" for m in missing[:3]]),
                hint="resume with the same config and flags the run was started with",
            )
        ms.load_param_into_net(self.step_cell, {n: params[n] for n in wanted})
        restore_ema(self.ema, params, source=str(self.resume))
        self.start_epoch, self.start_step = start
        spe = self.steps_per_epoch
        done = f", {self.start_step} of its {spe} steps done" if self.start_step else ""
        events.info(f"resumed from {self.resume} at epoch {self.start_epoch + 1}{done}")

    def _last_good(self) -> Path | None:
        """The newest checkpoint this process wrote, else the one it resumed from."""
        written = [p for p in self.saved if p in self._written]
        return written[-1] if written else self.resume

    # -- checkpoints -------------------------------------------------------------------
    def _save(
        self,
        epoch: int,
        step_in_epoch: int,
        global_step: int,
        *,
        path: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Path | None:
        """Write an interval checkpoint (rotated), or ``path`` with ``extra`` meta (best.ckpt)."""
        from yoloqat.engine.checkpoints import save_checkpoint

        if not self.writes_ckpt:
            return None
        bad = [p.name for p in self.network.get_parameters() if not _finite(p)]
        if bad:
            last = self._last_good()
            raise RuntimeFailure(
                f"weights became non-finite by epoch {epoch + 1}, step {step_in_epoch} "
                f"({len(bad)} tensors, e.g. {bad[0]}); no checkpoint written",
                hint=f"last good checkpoint: {last}" if last else "lower the learning rate",
            )
        rotated = path is None
        path = path or self.ckpt_dir / f"{self.rank}-{epoch + 1}_{global_step}.ckpt"
        meta = {
            "epoch": epoch + 1,  # counted from 1, as on screen and in the file name
            "epoch_base": 1,  # checkpoints without this key counted from 0
            "step_in_epoch": step_in_epoch,
            "global_step": global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "quantized": self.quantizer is not None,
            "num_classes": self.network.num_classes,
            "class_names": list(self.dataset.class_names),
            "category_ids": [int(c) for c in self.dataset.category_ids],
            "config": self.cfg,
            **(extra or {}),
        }
        ema_state = self.ema.state() if self.ema is not None else None
        self.guard.saving = True
        try:
            save_checkpoint(self.step_cell, path, meta, extra=ema_state)
        finally:
            self.guard.saving = False
        self.callbacks.emit(
            "on_checkpoint",
            cb.CheckpointInfo(path, epoch + 1, step_in_epoch, global_step, best=not rotated),
        )
        if not rotated:
            return path
        # the run's checkpoints, across resumes: keep_checkpoints counts them all
        self.saved = [p for p in self.saved if p != path] + [path]
        self._written.add(path)
        self._publish_last(path)
        while len(self.saved) > self.keep:
            old = self.saved.pop(0)
            old.unlink(missing_ok=True)
        return path

    def _publish_last(self, path: Path) -> None:
        """``ckpt_<rank>/last.ckpt``: ``path`` under a name that stays, replaced atomically.

        A hard link (no copy; the rotation removing ``path``'s own name later leaves it
        whole), or a copy where the file system has none. Not counted by
        ``keep_checkpoints``; ``--resume last.ckpt`` continues the run like its twin.
        """
        from yoloqat.core.atomic import atomic_path

        with atomic_path(self.ckpt_dir / LAST_NAME) as tmp:
            try:
                os.link(path, tmp)
            except OSError:
                shutil.copyfile(path, tmp)

    def _stop(self, epoch: int, step_in_epoch: int, global_step: int, saved: Path | None) -> None:
        """After a SIGINT/SIGTERM: make sure a checkpoint of this point exists, then stop."""
        if saved is None:
            saved = self._save(epoch, step_in_epoch, global_step)
        where = f"interrupted at epoch {epoch + 1} step {step_in_epoch}"
        if saved is None:
            raise Interrupted(f"{where}; this rank writes no checkpoints")
        raise Interrupted(f"{where}; saved {saved}; continue with --resume {saved}")

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train to ``max_epoch``; SIGINT/SIGTERM stop it with a checkpoint (:class:`Interrupted`).

        A run that fails before its first step removes the run folder it created.
        """
        self.guard.install()
        self._steps_run = 0
        self._result: TrainResult | None = None
        status = "failed"
        try:
            done = self._run()
            status = "finished"
            return done
        except Interrupted:
            status = "interrupted"
            if self._steps_run == 0:
                self._remove_failed_start()
            raise
        except BaseException as exc:
            if self._steps_run == 0:
                self._remove_failed_start()
            if self.distributed:
                self._peer_check(exc)
            raise
        finally:
            self.guard.restore()
            if self._result is not None:  # on_run_start was called
                res = self._result
                end = cb.RunEndInfo(self.run_dir, res.epochs_done, res.global_step, status)
                self.callbacks.emit("on_run_end", end)

    def _peer_check(self, exc: BaseException) -> None:
        """[distributed] A collective that lost a peer: say who, when and how to resume."""
        from yoloqat.engine.training.peers import is_collective_failure, peer_failure

        if is_collective_failure(exc):
            done = self._result.global_step if self._result is not None else 0
            raise peer_failure(
                exc,
                rank=self.rank,
                group_size=self.group_size,
                global_step=done,
                steps_per_epoch=getattr(self, "steps_per_epoch", 0),
                run_dir=self.run_dir,
                written=self._last_good() if self.writes_ckpt else None,
            ) from None

    def _remove_failed_start(self) -> None:
        """Remove the run folder this run created, if it failed before its first step."""
        if self.created_run_dir and not any(self.ckpt_dir.glob("*.ckpt")):
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _run(self) -> TrainResult:
        import mindspore as ms

        ms.set_context(mode=ms.GRAPH_MODE)
        self._build()
        self.validator.prepare(self.dataset)
        ckpt_interval = self.config.train.ckpt_interval or self.steps_per_epoch
        result = TrainResult(self.run_dir)
        global_step = self.start_epoch * self.steps_per_epoch + self.start_step
        result.global_step = global_step
        run_info = cb.RunInfo(
            self.run_dir,
            self.rank,
            self.group_size,
            self.cfg,
            self.max_epoch,
            self.steps_per_epoch,
            self.start_epoch + 1,
            global_step,
            self.log_interval,
        )
        self._result = result
        self.callbacks.emit("on_run_start", run_info)
        self.clock = RunClock(
            sizes=self.loader.sizes, one_graph=self.dynamic_shapes, images_per_step=self.batch_size
        )
        events.emit("train_start", **start_summary(self))
        profiler = self._profiler()
        for epoch in range(self.start_epoch, self.max_epoch):
            first = self.start_step if epoch == self.start_epoch else 0
            global_step = self._epoch(epoch, first, global_step, ckpt_interval, profiler)
            profiler = None if global_step >= 3 else profiler
            stats = dict(getattr(self.loader, "stats", {}) or {})
            result.skipped_images += int(stats.get("skipped_images", 0))
            saved = self._save(epoch, self.steps_per_epoch, global_step)
            if self.guard.requested and epoch + 1 < self.max_epoch:
                self._stop(epoch, self.steps_per_epoch, global_step, saved)
            epoch_loss = float(np.mean(self._epoch_losses or [0.0]))
            self.callbacks.emit(
                "on_epoch_end", cb.EpochInfo(epoch + 1, global_step, epoch_loss, saved, stats)
            )
            events.emit(
                "epoch",
                epoch=epoch + 1,
                max_epoch=self.max_epoch,
                loss=epoch_loss,
                checkpoint=str(saved) if saved else None,
                **stats,
            )
            result.epochs_done = epoch + 1
            if self.validator.due(epoch) and not self.guard.requested:
                self._validate(epoch, global_step)
                if self.guard.requested and epoch + 1 < self.max_epoch:
                    self._stop(epoch, self.steps_per_epoch, global_step, saved)
        result.checkpoints = list(self.saved)
        last = self.ckpt_dir / LAST_NAME
        result.last = last if self.writes_ckpt and last.is_file() else None
        best = self.validator.best_path
        result.best = best if self.validator.active and best.is_file() else None
        result.seconds = self.clock.elapsed
        result.compile_seconds = sum(self.clock.compiles)
        events.emit("train_end", **end_summary(self, result))
        return result

    def _epoch(
        self, epoch: int, first: int, global_step: int, ckpt_interval: int, profiler: Any
    ) -> int:
        """Run the steps of ``epoch`` (an index from 0) from step ``first``; return the
        global step reached."""
        from mindspore import Tensor

        from yoloqat.engine.training.step import spatially_dynamic

        result, clock = self._result, self.clock
        assert result is not None
        self._epoch_losses = []
        total_steps = self.max_epoch * self.steps_per_epoch
        val_images = self.validator.num_images(self.dataset) or 0
        t_last = time.perf_counter()
        description = f"epoch {epoch + 1}/{self.max_epoch}"
        with events.task(description, self.steps_per_epoch - first) as bar:
            for step, batch in enumerate(self.loader.epoch(epoch, start_step=first), first):
                inputs = [Tensor(a) for a in batch["inputs"]]
                self.guard.install()  # MindSpore's data engine replaces it per iterator
                if self.dynamic_shapes and self.step_cell.get_inputs() is None:
                    self.step_cell.set_inputs(*spatially_dynamic(inputs, self._probe(batch)))
                size = int(batch["shape"])
                compiling = clock.compiles_next(size)
                if compiling:
                    events.emit("compile", phase="start", what="training graph", size=size)
                t_call = time.perf_counter()
                loss, finite, _scale = self.step_cell(*inputs)
                if self.ema is not None and bool(finite.asnumpy()):
                    self.ema.update()  # after the optimizer step; skipped steps do not count
                loss_value = float(loss.asnumpy())
                if compiling:
                    seconds = time.perf_counter() - t_call
                    events.emit(
                        "compile", phase="end", what="training graph", size=size, seconds=seconds
                    )
                lr = float(self.base_lr[global_step])
                global_step += 1
                result.global_step = global_step
                self._steps_run += 1
                self.guard.armed = True
                if not math.isfinite(loss_value):
                    last = self._last_good()
                    raise RuntimeFailure(
                        f"loss became {loss_value} at epoch {epoch + 1}, step {step}; "
                        "training stopped",
                        hint=f"last good checkpoint: {last}"
                        if last
                        else "no checkpoint was written yet; lower the learning rate",
                    )
                if profiler is not None and global_step >= 3:
                    self._stop_profiler(profiler)
                    profiler = None
                result.losses.append(loss_value)
                self._epoch_losses.append(loss_value)
                now = time.perf_counter()
                info = cb.StepInfo(
                    epoch + 1,
                    step,
                    global_step,
                    loss_value,
                    lr,
                    images=batch["image"].shape[0] * self.group_size,
                    seconds=now - t_last,
                    shape=size,
                    image_ids=tuple(int(i) for i in batch["image_ids"]),  # this rank's
                )
                t_last = now
                clock.step(info.seconds, size, compiling)
                self.callbacks.emit("on_step", info)
                eta = clock.eta(
                    total_steps - global_step, self._validations_left(epoch), val_images
                )
                speed = {} if compiling else {"img_s": info.images_per_sec}  # not the compile's
                bar.advance(
                    1, mean_loss=float(np.mean(self._epoch_losses)), **speed, lr=lr, eta=eta
                )
                saved = None
                if global_step % ckpt_interval == 0 and step + 1 < self.steps_per_epoch:
                    saved = self._save(epoch, step + 1, global_step)
                if self.guard.requested and step + 1 < self.steps_per_epoch:
                    self._stop(epoch, step + 1, global_step, saved)
        return global_step

    def _validations_left(self, epoch: int) -> int:
        """Validations from epoch index ``epoch`` (this one's included) to the end."""
        return sum(self.validator.due(e) for e in range(epoch, self.max_epoch))

    def _probe(self, batch: dict[str, Any]) -> list[np.ndarray]:
        """``batch``'s step inputs at another input size (which dims follow the size)."""
        size = int(batch["shape"]) + self.network.input_multiple
        image = np.zeros((*batch["image"].shape[:2], size, size), np.float32)
        boxes = np.concatenate([batch["gt_boxes"], batch["gt_labels"][..., None]], axis=-1)
        boxes = boxes * batch["gt_valid"][..., None]
        return self.loader.make_batch(image, boxes.astype(np.float32), batch["image_ids"])["inputs"]

    def _eval_weights(self) -> Any:
        """A context giving the network validation evaluates and ``best.ckpt`` is judged
        by: the EMA weights swapped into the trained network when ``train.ema`` is on."""
        if self.ema is None:
            return contextlib.nullcontext(self.network)
        return self.ema.swapped_in(self.network)

    def _validate(self, epoch: int, global_step: int) -> None:
        """Evaluate the val split (rank 0), keep ``best.ckpt``, tell the callbacks.

        ``best.ckpt`` is written after the EMA weights are swapped out again, so it holds
        the raw weights plus their ``ema.*`` average like every checkpoint (inference
        loads the average).
        """
        pending: list[dict[str, Any]] = []

        def save_best(meta: dict[str, Any]) -> Path | None:
            pending.append(meta)
            return self.validator.best_path

        started = time.perf_counter()
        try:
            with self._eval_weights() as network:
                info = self.validator.run(network, self.dataset, epoch, global_step, save_best)
        finally:
            self.step_cell.set_train(True)
        self.clock.validation(time.perf_counter() - started)
        self._last_validation = {
            "epoch": info.epoch,
            "AP": info.stats["AP"],
            "AP50": info.stats["AP50"],
            "metric": info.metric,
            "value": info.value,
            "best_value": info.best_value,
            "num_images": info.num_images,
        }
        for meta in pending:
            self._save(
                epoch, self.steps_per_epoch, global_step, path=self.validator.best_path, extra=meta
            )
        self.callbacks.emit("on_validation", info)

    def _stop_profiler(self, profiler: Any) -> None:
        try:
            profiler.stop()
            profiler.analyse()
            events.info(f"profile written to {self.run_dir / 'profiler'}")
        except Exception as exc:  # profiling is optional: report and go on
            events.warn(f"profiler failed: {exc}")

    def _profiler(self) -> Any:
        if not self.config.train.need_profiler:
            return None
        try:
            from mindspore import Profiler

            return Profiler(output_path=str(self.run_dir / "profiler"))
        except Exception as exc:  # profiling is optional: report and go on
            events.warn(f"profiler unavailable: {exc}")
            return None
