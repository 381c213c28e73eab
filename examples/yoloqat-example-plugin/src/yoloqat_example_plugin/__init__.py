"""An example third-party yoloqat plugin: a ``tiny_darknet`` backbone and a ``constant`` LR.

This module is the plugin's manifest. yoloqat imports it through the entry point
``[project.entry-points."yoloqat.plugins"]`` in ``pyproject.toml`` and calls its hooks, so it
must stay cheap to import: MindSpore is imported inside the factories, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat import hookimpl

if TYPE_CHECKING:
    from .schedules import Constant
    from .tiny_darknet import TinyDarkNet

__version__ = "0.1.0"


def tiny_darknet(
    *,
    activation: str = "leaky",
    negative_slope: float = 0.1,
    width: float = 1.0,
    depth: int = 1,
    padding: str = "symmetric",
    bn_momentum: float = 0.9,
    in_channels: int = 3,
) -> TinyDarkNet:
    """A small DarkNet-style backbone (5 downsamplings, residual blocks) returning C3, C4, C5.

    It takes the same parameters as ``darknet53`` (plus ``depth``), so any config can switch
    to it with ``--set model.backbone.name=tiny_darknet``.

    Parameters:
        activation: "leaky" (LeakyReLU) or "relu".
        negative_slope: slope of the leaky activation; unused for "relu".
        width: multiplies every channel count; at 1.0 C3/C4/C5 have 128/256/512 channels.
        depth: residual blocks after each downsampling conv (>= 0).
        padding: "symmetric" (k//2 on every side) or "same" (TensorFlow SAME).
        bn_momentum: BatchNorm momentum (``running = m * running + (1 - m) * batch``).
        in_channels: channels of the input image.
    """
    from .tiny_darknet import TinyDarkNet

    return TinyDarkNet(
        activation=activation,
        negative_slope=negative_slope,
        width=width,
        depth=depth,
        padding=padding,
        bn_momentum=bn_momentum,
        in_channels=in_channels,
    )


def constant(*, lr: float = 0.001, warmup_epochs: float = 0) -> Constant:
    """A constant learning rate, after an optional linear warmup from 0.

    Parameters:
        lr: the learning rate of every step.
        warmup_epochs: epochs over which the LR ramps linearly up to ``lr`` (0: none).
    """
    from .schedules import Constant

    return Constant.build(lr=lr, warmup_epochs=warmup_epochs)


@hookimpl
def yoloqat_backbones() -> dict:
    """Backbones of this plugin."""
    return {"tiny_darknet": tiny_darknet}


@hookimpl
def yoloqat_schedulers() -> dict:
    """LR schedulers of this plugin."""
    return {"constant": constant}
