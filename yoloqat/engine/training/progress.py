"""What a training run tells while it runs: its summary, the time left, compile times.

:func:`conv_flops` counts a network's multiply-adds; :func:`run_summary` is the
``train_start`` event's data (family, parameters, GFLOPs, data, device, batch, steps);
:class:`RunClock` times steps, compiles and validations and estimates the time left for the
whole run (not the epoch): the steady step time (the median of the recent steps that
compiled nothing) times the steps left, plus a validation's time for each one left, plus a
compile for each training size not compiled yet.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from yoloqat.core import events
from yoloqat.core.config import get_dotted

#: Steps that compiled nothing, kept for the steady step time.
WINDOW = 20
#: Until a validation has been timed, one costs this fraction of a training step per image
#: (an eval forward at batch 1 against a forward and backward at the training batch).
VAL_STEP_FRACTION = 0.5
#: The first validation compiles the eval graph: guessed at this fraction of a train compile.
EVAL_COMPILE_FRACTION = 0.5


def conv_flops(network: Any, size: int) -> int:
    """Multiply-adds of ``network``'s convolutions and dense layers for one image of
    ``size`` x ``size`` (what "GFLOPs" reports, doubled: one multiply and one add).

    Counted in one eval-mode PYNATIVE forward at ``size`` with forward hooks that read each
    layer's output shape; the network's training flag and MindSpore's mode are restored.
    The float network is counted (fake quantization adds no multiply-adds a deployed int8
    network runs).
    """
    import mindspore as ms
    from mindspore import Tensor, nn

    macs = [0]

    def conv_hook(cell: Any, _args: Any, output: Any) -> None:
        kh, kw = cell.kernel_size
        in_per_group = cell.in_channels // max(int(cell.group), 1)
        _n, c, h, w = output.shape
        macs[0] += int(c * h * w * in_per_group * kh * kw)

    def dense_hook(cell: Any, _args: Any, output: Any) -> None:
        rows = int(np.prod(output.shape[:-1])) if len(output.shape) > 1 else 1
        macs[0] += rows * int(cell.in_channels) * int(cell.out_channels)

    handles = []
    for _name, cell in network.cells_and_names():
        if isinstance(cell, nn.Conv2d):
            handles.append(cell.register_forward_hook(conv_hook))
        elif isinstance(cell, nn.Dense):
            handles.append(cell.register_forward_hook(dense_hook))
    mode, training = ms.get_context("mode"), network.training
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        network.set_train(False)
        network(Tensor(np.zeros((1, 3, size, size), np.float32)))
    finally:
        for handle in handles:
            handle.remove()
        network.set_train(training)
        ms.set_context(mode=mode)
    return macs[0]


def gflops(macs: int) -> float:
    """GFLOPs of ``macs`` multiply-adds (a multiply and an add each, as Darknet and
    Ultralytics count)."""
    return 2.0 * macs / 1e9


def data_location(block: Mapping[str, Any]) -> str:
    """Where a dataset block reads from, for the summary (its ``data_dir`` or the paths)."""
    if block.get("data_dir"):
        return str(block["data_dir"])
    paths = [str(v) for k, v in block.items() if k != "name" and isinstance(v, str)]
    return ", ".join(paths) or "-"


def run_summary(
    cfg: Mapping[str, Any],
    *,
    network: Any,
    dataset: Any,
    train_images: int,
    val_images: int | None,
    sizes: Iterable[int],
    macs_at: Mapping[int, int],
    device: str,
    group_size: int,
    batch_size: int,
    steps_per_epoch: int,
    max_epoch: int,
    start_epoch: int,
    start_step: int,
    quantized: bool,
    run_dir: Any,
) -> dict[str, Any]:
    """The data of the ``train_start`` event (epochs counted from 1)."""
    family = cfg.get("family")
    family = family.get("name") if isinstance(family, Mapping) else family
    block = cfg["dataset"] if isinstance(cfg.get("dataset"), Mapping) else {}
    names = [str(n) for n in dataset.class_names]
    return {
        "family": family,
        "backbone": get_dotted(cfg, "model.backbone.name", None),
        "head": get_dotted(cfg, "model.head.name", None),
        "quantizer": get_dotted(cfg, "quantizer.name", None) if quantized else None,
        "parameters": sum(int(np.prod(p.shape)) for p in network.trainable_params()),
        "sizes": sorted(set(int(s) for s in sizes)),
        "gflops": {int(s): gflops(m) for s, m in sorted(macs_at.items())},
        "dataset": block.get("name"),
        "data": data_location(block),
        "num_classes": len(names),
        "class_names": names,
        "train_images": int(train_images),
        "val_images": val_images,
        "device": device,
        "group_size": int(group_size),
        "batch_size": int(batch_size),
        "steps_per_epoch": int(steps_per_epoch),
        "max_epoch": int(max_epoch),
        "start_epoch": int(start_epoch),
        "start_step": int(start_step),
        "total_steps": int(steps_per_epoch) * int(max_epoch),
        "val_interval": int(get_dotted(cfg, "train.val_interval", 0) or 0),
        "run_dir": str(run_dir),
    }


class RunClock:
    """Times a run's steps, compiles and validations; estimates the time left."""

    def __init__(self, *, sizes: Iterable[int], one_graph: bool, images_per_step: int) -> None:
        self.start = time.perf_counter()
        self.steady: deque[float] = deque(maxlen=WINDOW)
        self.compiles: list[float] = []
        self.validations: list[float] = []
        self.compiled: set[int] = set()
        self.sizes = set(int(s) for s in sizes)
        #: one graph serves every size (``train.dynamic_shapes``)
        self.one_graph = one_graph
        self.images_per_step = images_per_step

    def compiles_next(self, size: int) -> bool:
        """Whether a step at ``size`` compiles the train step first."""
        if self.one_graph:
            return not self.compiled
        return int(size) not in self.compiled

    def step(self, seconds: float, size: int, compiled: bool) -> None:
        """A step took ``seconds``; ``compiled``: it compiled the graph first."""
        if compiled:
            self.compiled.add(int(size))
            self.compiles.append(seconds)
        else:
            self.steady.append(seconds)

    def validation(self, seconds: float) -> None:
        self.validations.append(seconds)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    @property
    def step_seconds(self) -> float | None:
        """The steady step time (median of the recent steps that compiled nothing)."""
        return statistics.median(self.steady) if self.steady else None

    def eta(self, steps_left: int, validations_left: int, val_images: int) -> float | None:
        """Seconds left in the run; None until a step that compiled nothing was timed."""
        step = self.step_seconds
        if step is None:
            return None
        per_compile = statistics.mean(self.compiles) if self.compiles else 0.0
        # a validation: its images at a fraction of a step's time per image, until one was
        # timed; the first also compiles the eval graph (guessed at half the train step's)
        per_val = step / max(self.images_per_step, 1) * VAL_STEP_FRACTION * val_images
        eval_compile = EVAL_COMPILE_FRACTION * per_compile
        if len(self.validations) > 1:
            per_val = self.validations[-1]
        elif self.validations:
            per_val = max(self.validations[0] - eval_compile, per_val)
        first_val = eval_compile if validations_left and not self.validations else 0.0
        if self.one_graph:
            sizes_left = 0 if self.compiled else 1
        else:
            sizes_left = len(self.sizes - self.compiled)
        return step * steps_left + per_val * validations_left + first_val + per_compile * sizes_left


def count_macs(network: Any, sizes: Iterable[int]) -> dict[int, int]:
    """Multiply-adds per image at each training size (empty when they cannot be counted:
    a warning says why). Counted once at the smallest size, or at a probe size of twice the
    input multiple when that is smaller, and scaled with the image area (exact for the
    fully convolutional detectors here)."""
    sizes = sorted(set(int(s) for s in sizes))
    multiple = int(getattr(network, "input_multiple", 32) or 32)
    probe = min(sizes[0], max(2 * multiple, 64))
    try:
        macs = conv_flops(network, probe)
    except Exception as exc:  # the count is information: never a reason to stop
        events.warn(f"could not count the network's GFLOPs: {exc}")
        return {}
    return {s: round(macs * (s / probe) ** 2) for s in sizes}


def start_summary(trainer: Any) -> dict[str, Any]:
    """The ``train_start`` event's data for a built :class:`Trainer`: what is trained on
    what, and how."""
    import mindspore as ms

    sizes = sorted(set(int(s) for s in trainer.loader.sizes))
    return run_summary(
        trainer.cfg,
        network=trainer.network,
        dataset=trainer.dataset,
        train_images=len(trainer.dataset.train_source()),
        val_images=trainer.validator.num_images(trainer.dataset),
        sizes=sizes,
        macs_at=trainer.macs_at,
        device=str(ms.get_context("device_target")),
        group_size=trainer.group_size,
        batch_size=trainer.batch_size,
        steps_per_epoch=trainer.steps_per_epoch,
        max_epoch=trainer.max_epoch,
        start_epoch=trainer.start_epoch + 1,
        start_step=trainer.start_step,
        quantized=trainer.quantizer is not None,
        run_dir=trainer.run_dir,
    )


def end_summary(trainer: Any, result: Any) -> dict[str, Any]:
    """The ``train_end`` event's data: time, final metrics, where the checkpoints are."""
    best = trainer.validator.best_record if result.best is not None else None
    last_of = str(trainer.saved[-1]) if result.last is not None and trainer.saved else None
    return {
        "run_dir": str(trainer.run_dir),
        "epochs_done": result.epochs_done,
        "max_epoch": trainer.max_epoch,
        "global_step": result.global_step,
        "steps_run": trainer._steps_run,
        "seconds": result.seconds,
        "compile_seconds": result.compile_seconds,
        "validation_seconds": sum(trainer.clock.validations),
        "loss": float(np.mean(trainer._epoch_losses)) if trainer._epoch_losses else None,
        "validation": trainer._last_validation,
        "best": {k: v for k, v in best.items() if k != "stats"} if best else None,
        "best_checkpoint": str(result.best) if result.best else None,
        "last_checkpoint": str(result.last) if result.last else None,
        "last_of": last_of,
    }
