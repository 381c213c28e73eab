"""Checkpoints: atomic MindSpore ``.ckpt`` files with metadata, and checked loading.

A training checkpoint holds the full state (network weights and BN statistics, quantizer
observers, optimizer moments and step, loss scale) plus a JSON metadata string
``yoloqat_meta`` (epoch, step, quantized or not, the config), and with ``train.ema`` the
averaged weights as ``ema.<name>`` entries (what inference loads; see :func:`weights_only`).
Files are written through :func:`yoloqat.core.atomic.atomic_path` (a temporary in the same
folder, fsync, rename), so a crash never leaves a half-written file under the final name.
Every file carries a CRC; a file that fails it is refused (never re-read without the
check), and so is one holding NaN or inf.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mindspore as ms
from mindspore import nn

from yoloqat.core.atomic import atomic_path
from yoloqat.core.errors import CheckpointError

META_KEY = "yoloqat_meta"
FORMAT = "yoloqat-ckpt"
#: Optimizer/wrapper state that a weights-only load ignores (seed names included).
NON_WEIGHT_PREFIXES = (
    "moments.",
    "global_step",
    "global_",
    "learning_rate",
    "momentum",
    "loss_scale",
    "accum.",
    "stat.",
)
#: Name prefix of the seed's checkpoints (saved from its training wrapper).
SEED_PREFIX = "yolo_network."
#: Name prefix of the weights' moving average (``train.ema``; see training/ema.py).
EMA_PREFIX = "ema."


def save_checkpoint(
    cell: nn.Cell,
    path: str | Path,
    meta: Mapping[str, Any],
    *,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``cell``'s parameters and ``meta`` to ``path`` atomically (with a CRC).

    ``extra``: more named tensors to store (e.g. the ``ema.*`` weights of a ModelEMA).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"format": FORMAT, **meta}, default=str)
    append = {**(extra or {}), META_KEY: payload}
    # MindSpore writes its own temporary (``.tmp`` for ``.ckpt``) and renames it to ``tmp``
    with atomic_path(path, extra_suffixes=(".tmp",)) as tmp:
        ms.save_checkpoint(cell, str(tmp), append_dict=append, crc_check=True)
    return path


@contextlib.contextmanager
def _quiet_mindspore() -> Any:
    """Silence MindSpore's own ERROR log line while we raise a clearer error."""
    from mindspore import log

    logger = log._get_logger()
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def non_finite(params: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``params`` holding NaN or inf."""
    import numpy as np

    bad = []
    for name, value in params.items():
        if not hasattr(value, "asnumpy"):
            continue
        array = value.asnumpy()
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            bad.append(name)
    return bad


def read_checkpoint(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Load ``(parameters, meta)``; a CheckpointError naming the file when it is unusable.

    Missing, a folder, empty, truncated, failing its CRC, or holding non-finite tensors.
    Files written without a CRC (the seed's, other tools') load; a CRC that does not match
    is an error, with no second read that skips the check.
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.rglob("*.ckpt"))
        lasts = [p for p in found if p.name == "last.ckpt"]  # a run's newest, if it is one
        hint = (
            f"it holds {len(found)} checkpoint(s), e.g. {(lasts or found)[-1]}"
            if found
            else "give the path of a .ckpt file"
        )
        raise CheckpointError(f"checkpoint {path} is a folder, not a .ckpt file", hint=hint)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    from yoloqat.core.limits import check_input_file

    check_input_file(path, "checkpoint", error=CheckpointError, what="checkpoint")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        with _quiet_mindspore():
            params = ms.load_checkpoint(str(path), crc_check=True)
    except Exception as exc:
        raise CheckpointError(_unreadable(path, exc), hint=_CORRUPT_HINT) from exc
    meta_raw = params.pop(META_KEY, None)
    bad = non_finite(params)
    if bad:
        raise CheckpointError(
            f"checkpoint {path} holds non-finite values (NaN or inf) in {len(bad)} tensor(s): "
            f"{', '.join(bad[:5])}{', ...' if len(bad) > 5 else ''}",
            hint=_CORRUPT_HINT,
        )
    meta: dict[str, Any] = {}
    if isinstance(meta_raw, str):
        try:
            meta = json.loads(meta_raw)
        except json.JSONDecodeError:
            meta = {}
    return dict(params), meta


_CORRUPT_HINT = "use another checkpoint of the run (or a backup copy); this one cannot be trusted"


def _unreadable(path: Path, exc: Exception) -> str:
    """Why ``path`` failed to load: a CRC mismatch if it parses without the check."""
    try:
        with _quiet_mindspore():
            ms.load_checkpoint(str(path))
    except Exception:
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        return (
            f"checkpoint {path} is truncated or not a MindSpore checkpoint "
            f"({type(exc).__name__}: {first})"
        )
    return f"checkpoint {path} failed its CRC check: the file is corrupt (changed after writing)"


def weights_only(params: Mapping[str, Any], *, ema: bool = True) -> dict[str, Any]:
    """The network weights: drop optimizer state, strip the seed's ``yolo_network.`` prefix.

    A checkpoint of a run with ``train.ema`` holds the raw weights (for ``--resume``) and
    their moving average as ``ema.<name>``; with ``ema=True`` (every inference loader:
    eval, predict, export, calibrate, ``--resume_yolov3``) the averaged values replace the
    raw ones, with ``ema=False`` the raw ones are returned.
    """
    out = {}
    for name, value in params.items():
        if name.startswith(NON_WEIGHT_PREFIXES) or name.startswith(EMA_PREFIX):
            continue
        if name.startswith(SEED_PREFIX):
            name = name[len(SEED_PREFIX) :]
        out[name] = value
    if ema:
        for name, value in params.items():
            base = name[len(EMA_PREFIX) :]
            if name.startswith(EMA_PREFIX) and base in out:
                out[base] = value
    return out


def _seed_rename(name: str) -> str:
    """Map the seed float model's names onto ours (docs/seed.md §6.6).

    The seed's network holds everything under ``feature_map``: its ``feature_map.backbone.*``
    is our ``backbone.*``, its other cells (``backblock0-2``, ``conv1``, ``conv2``) are our
    ``head.*``; its Sequential indices ``0``/``1`` are ConvBnAct's ``conv``/``bn``.
    """
    if name.startswith("feature_map.backbone."):
        name = name[len("feature_map.") :]
    elif name.startswith("feature_map."):
        name = "head." + name[len("feature_map.") :]
    name = re.sub(r"\.1\.(gamma|beta|moving_mean|moving_variance)$", r".bn.\1", name)
    return re.sub(r"\.0\.weight$", ".conv.weight", name)


def load_weights(
    network: nn.Cell,
    params: Mapping[str, Any],
    *,
    source: str | Path,
    allow_missing: tuple[str, ...] = (),
) -> list[str]:
    """Load weights into ``network`` after checking every name and shape.

    Parameters of ``network`` whose names contain one of ``allow_missing`` may be absent
    (e.g. quantizer observers when starting QAT from a float checkpoint); they are returned.
    Anything else missing, unexpected or of another shape is a CheckpointError naming the
    tensors.
    """
    wanted = {p.name: p for p in network.get_parameters()}
    given = weights_only(params)
    if given and not set(given) & set(wanted):
        renamed = {_seed_rename(k): v for k, v in given.items()}
        if set(renamed) & set(wanted):
            given = renamed
    if not set(given) & set(wanted):
        sample = ", ".join(sorted(given)[:3]) or "nothing"
        raise CheckpointError(
            f"checkpoint {source} does not belong to this network: none of its tensors "
            f"({sample}, ...) match the network's parameters",
            hint="was it written by another tool or for another architecture?",
        )
    mismatched = [
        f"{n} {tuple(given[n].shape)} vs network {tuple(p.shape)}"
        for n, p in wanted.items()
        if n in given and tuple(given[n].shape) != tuple(p.shape)
    ]
    missing = [n for n in wanted if n not in given and not any(a in n for a in allow_missing)]
    unexpected = [n for n in given if n not in wanted]
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatch(es): {'; '.join(mismatched[:4])}")
    if missing:
        problems.append(f"{len(missing)} missing: {', '.join(missing[:4])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {', '.join(unexpected[:4])}")
    if problems:
        raise CheckpointError(
            f"checkpoint {source} does not match the network ({' | '.join(problems)})",
            hint="check the config (num_classes, width, quantizer) the checkpoint was trained with",
        )
    ms.load_param_into_net(network, {n: v for n, v in given.items() if n in wanted})
    return [n for n in wanted if n not in given]
