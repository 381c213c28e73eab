"""Exponential moving average (EMA) of a network's weights, updated in-graph after each step.

After optimizer step ``t`` (``t = 1, 2, ...``) every floating-point parameter ``w`` of the
network (convolution weights, BN gamma/beta *and* moving statistics, and for QAT networks
the fake-quant observers' ranges) updates its shadow ``e``::

    d_t = decay * (1 - exp(-t / ramp))        (d_t = decay when ramp = 0)
    e_t = d_t * e_(t-1) + (1 - d_t) * w_t,    e_0 = w_0 (the weights before the first step)

the Ultralytics ``ModelEMA`` rule: the ramp keeps early averages from being dominated by the
random initial weights. Integer state (the QAT layers' step counters) is not averaged; an
EMA network uses the raw network's. The update is one compiled graph over the parameter
lists (a ``HyperMap`` of ``assign_sub(e, (e - w) * (1 - d))``), not a Python loop over tensors.

The shadows are checkpointed as ``ema.<parameter name>`` entries plus ``ema.updates`` (``t``),
so a resumed run continues the average exactly; inference loading picks the ``ema.`` entries
in place of the raw weights (see :func:`yoloqat.engine.checkpoints.weights_only`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from yoloqat.core.config import Config, as_config
from yoloqat.core.errors import CheckpointError, ConfigError
from yoloqat.engine.checkpoints import EMA_PREFIX as PREFIX

#: The update counter ``t`` in a checkpoint.
UPDATES = PREFIX + "updates"

_blend = ops.MultitypeFuncGraph("ema_blend")


@_blend.register("Tensor", "Tensor", "Tensor")
def _blend_one(k, shadow, value):
    # e - (e - w) * (1 - d) = d * e + (1 - d) * w, updated in place. ops.lerp launches fewer
    # kernels but its CPU kernel is 4x slower at full size (benchmarks/bench_ema.py)
    return ops.assign_sub(shadow, (shadow - value) * ops.cast(k, shadow.dtype))


def decay_at(updates: int | np.ndarray, decay: float, ramp: float) -> np.ndarray:
    """``d_t`` of the module docstring, in float64 (for tests and documentation)."""
    t = np.asarray(updates, np.float64)
    return decay * (1.0 - np.exp(-t / ramp)) if ramp > 0 else np.full_like(t, decay)


def ema_settings(cfg: Config | Mapping[str, Any]) -> tuple[float, float] | None:
    """``(decay, ramp)`` from ``train.ema`` (``None`` when EMA is off)."""
    ema = as_config(cfg).train.ema
    if ema is None:
        return None
    if not math.isfinite(ema.ramp):
        raise ConfigError(f"train.ema.ramp={ema.ramp} is not valid: expected a finite value")
    return float(ema.decay), float(ema.ramp)


class ModelEMA(nn.Cell):
    """Shadow copies of ``network``'s floating-point parameters and their in-graph update.

    ``update()`` (after each optimizer step) blends the current weights into the shadows;
    :meth:`swapped_in` puts the shadows into ``network`` for evaluation and puts the raw
    weights back afterwards; :meth:`state` / :meth:`load_state` are the checkpoint entries.
    """

    def __init__(self, network: nn.Cell, *, decay: float = 0.9999, ramp: float = 2000.0) -> None:
        super().__init__(auto_prefix=False)
        self.network_ref = [network]  # a list: not a sub-cell, its parameters are not ours
        self.decay = float(decay)
        self.ramp = float(ramp)
        params = [p for p in network.get_parameters() if _floating(p)]
        self.sources = ParameterTuple(params)
        self.shadows = ParameterTuple(
            Parameter(Tensor(p.asnumpy().copy()), name=PREFIX + p.name, requires_grad=False)
            for p in params
        )
        self.updates = Parameter(Tensor(0, ms.int32), name=UPDATES, requires_grad=False)
        self.hyper_map = ops.HyperMap()

    @property
    def names(self) -> list[str]:
        """The averaged parameters' names (the network's, without the ``ema.`` prefix)."""
        return [p.name for p in self.sources]

    def construct(self):
        t = self.updates + 1
        ops.assign(self.updates, t)
        d = ops.fill(ms.float32, (), self.decay)
        if self.ramp > 0:
            d = d * (1.0 - ops.exp(ops.cast(t, ms.float32) * (-1.0 / self.ramp)))
        self.hyper_map(ops.partial(_blend, 1.0 - d), self.shadows, self.sources)
        return t

    def update(self) -> int:
        """One EMA step (call after each optimizer step); returns the update count ``t``."""
        return int(self().asnumpy())

    def state(self) -> dict[str, Parameter]:
        """The checkpoint entries: ``ema.<name>`` shadows and ``ema.updates``."""
        out: dict[str, Parameter] = {p.name: p for p in self.shadows}
        out[UPDATES] = self.updates
        return out

    def load_state(self, params: Mapping[str, Any], *, source: str) -> None:
        """Restore the shadows and counter from checkpoint ``params`` (all must be present)."""
        missing = [p.name for p in self.shadows if p.name not in params]
        if UPDATES not in params:
            missing.append(UPDATES)
        bad = [
            f"{p.name} {tuple(params[p.name].shape)} vs {tuple(p.shape)}"
            for p in self.shadows
            if p.name in params and tuple(params[p.name].shape) != tuple(p.shape)
        ]
        if missing or bad:
            raise CheckpointError(
                f"the EMA weights in {source} do not match this network: "
                + "; ".join(bad[:3] + [f"missing {m}" for m in missing[:3]]),
                hint="resume with the config the run was started with",
            )
        for p in self.shadows:
            p.set_data(Tensor(params[p.name].asnumpy().copy(), p.dtype))
        self.updates.set_data(Tensor(int(params[UPDATES].asnumpy()), ms.int32))

    def reset(self) -> None:
        """Start the average afresh from the network's current weights (``t = 0``)."""
        for shadow, src in zip(self.shadows, self.sources):
            shadow.set_data(Tensor(src.asnumpy().copy()))
        self.updates.set_data(Tensor(0, ms.int32))

    @contextlib.contextmanager
    def swapped_in(self, network: nn.Cell | None = None) -> Iterator[nn.Cell]:
        """Inside the block, ``network`` (default: the one averaged) holds the EMA weights.

        The raw weights are put back on exit (also after an exception). The network object
        is the same, so a compiled eval graph of it is reused; the values only are swapped.
        """
        net = network if network is not None else self.network_ref[0]
        by_name = {p.name: p for p in net.get_parameters()}
        targets = [(by_name[n], s) for n, s in zip(self.names, self.shadows) if n in by_name]
        raw = [(p, p.asnumpy().copy()) for p, _ in targets]
        try:
            for p, shadow in targets:
                p.set_data(Tensor(shadow.asnumpy().copy()))
            yield net
        finally:
            for p, value in raw:
                p.set_data(Tensor(value))


_FLOATS = (ms.float16, ms.float32, ms.float64, ms.bfloat16)


def _floating(param: Parameter) -> bool:
    return param.dtype in _FLOATS


def build_ema(cfg: Config | Mapping[str, Any], network: nn.Cell) -> ModelEMA | None:
    """The ``train.ema`` averager of ``network``, or ``None`` when the config has none."""
    settings = ema_settings(cfg)
    if settings is None:
        return None
    decay, ramp = settings
    return ModelEMA(network, decay=decay, ramp=ramp)


def has_ema(params: Mapping[str, Any]) -> bool:
    """Whether checkpoint ``params`` hold EMA weights."""
    return UPDATES in params


def restore_ema(ema: ModelEMA | None, params: Mapping[str, Any], *, source: str) -> None:
    """On resume: restore the average from the checkpoint, or say why it is not.

    A checkpoint without EMA entries resumed with ``train.ema`` on starts the average at the
    resumed weights (``t = 0``); one with EMA entries resumed with ``train.ema`` off drops
    them (the run goes on with the raw weights). Both are warned about.
    """
    from yoloqat.core import events

    if ema is None:
        if has_ema(params):
            events.warn(
                f"{source} holds EMA weights but train.ema is off: they are dropped, the run "
                "continues with the raw weights"
            )
        return
    if has_ema(params):
        ema.load_state(params, source=source)
        return
    ema.reset()
    events.warn(f"{source} holds no EMA weights: the average starts at the resumed weights")
