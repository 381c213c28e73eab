"""Helpers shared by the training-path tests: tiny configs and snapshots of network state.

Not a test module (pytest collects ``test_*.py`` only); the test files import it by name
because ``tests/`` is on ``sys.path`` under pytest's default import mode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from yoloqat.core.config import apply_overrides, load_config

#: Observer ranges and step counters of the int8_qat layers (names end with these).
QUANT_STATE = (".min_value", ".max_value", ".step")
#: The two training sizes of the multi-scale tests.
MULTI_SIZES = (64, 96)


def tiny_cfg(data_dir: Path, out: Path, *extra: str, quant: bool = False) -> dict[str, Any]:
    """``synth_tiny`` (or ``synth_tiny_quant``) at 1/16 width, one residual block per stage
    (16 backbone convs instead of 52: about half the graph to compile), 64 px, batch 4, 2 epochs."""
    return apply_overrides(
        load_config("synth_tiny_quant" if quant else "synth_tiny"),
        [
            f"dataset.data_dir={data_dir}",
            f"train.ckpt_path={out}",
            "model.num_classes=3",
            "model.backbone.width=0.0625",
            "model.backbone.blocks=[1, 1, 1, 1, 1]",
            "model.head.width=0.0625",
            "data.training_shape=64",
            "train.per_batch_size=4",
            "train.max_epoch=2",
            "train.log_interval=1",
            "train.keep_checkpoints=10",
            "scheduler.T_max=2",
            "scheduler.warmup_epochs=0",
            *extra,
        ],
    )


def state(cell: Any, suffixes: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """Copies of ``cell``'s parameters (optionally only names ending with ``suffixes``)."""
    return {
        p.name: p.asnumpy().copy()
        for p in cell.get_parameters()
        if suffixes is None or p.name.endswith(suffixes)
    }


def inputs(batch: dict[str, Any]) -> list[Any]:
    """A loader batch as the train step's input Tensors (image, padded ground truth, the
    loss's host-built targets)."""
    from mindspore import Tensor

    return [Tensor(a) for a in batch["inputs"]]


def cli(*args: str) -> Any:
    """``yoloqat ARGS`` in-process (Typer's runner), as a ``subprocess.CompletedProcess``.

    The same command code, exit code, stdout and stderr as ``python -m yoloqat ARGS``
    without an interpreter start and MindSpore import each: for tests of a command's
    errors and output, not of the process itself (signals, exit 130, launchers).
    The MindSpore mode the commands switch to (GRAPH_MODE) is reset to PYNATIVE_MODE.
    """
    import subprocess

    import mindspore as ms
    from typer.testing import CliRunner

    from yoloqat.cli import app

    try:
        res = CliRunner().invoke(app, list(args))
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    return subprocess.CompletedProcess(list(args), res.exit_code, res.stdout, res.stderr)


def step_shapes(run: Path) -> list[int]:
    """The training size of each step a run logged (its metrics.jsonl)."""
    records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["shape"] for r in records if r["kind"] == "step"]


def check_schedule(trainer: Any, shapes: list[int]) -> None:
    """Epoch 0's logged sizes follow the loader's schedule, both sizes occur, and each batch
    has images and targets of its size."""
    assert shapes == [trainer.loader.shape(0, s) for s in range(len(shapes))]
    assert set(shapes) == set(MULTI_SIZES), f"both sizes must occur: {shapes}"
    for batch in trainer.loader.epoch(0):  # the batches the run saw, at their sizes
        size = batch["shape"]
        assert batch["image"].shape[-2:] == (size, size)
        grids = [y.shape[1:3] for y in batch["extras"][:3]]  # the YOLO targets per output
        assert grids == [(size // 32,) * 2, (size // 16,) * 2, (size // 8,) * 2]


def is_dynamic(step_cell: Any) -> bool:
    """Whether the step was compiled with the input size unknown (train.dynamic_shapes)."""
    inputs = step_cell.get_inputs()
    return bool(inputs) and tuple(inputs[0].shape[2:]) == (-1, -1)  # -1: unknown
