"""An example third-party yoloqat plugin: a ``mobile_lite`` backbone and a ``constant`` LR.

This module is the plugin's manifest. yoloqat imports it through the entry point
``[project.entry-points."yoloqat.plugins"]`` in ``pyproject.toml`` and calls its hooks, so it
must stay cheap to import: MindSpore is imported inside the factories, not here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat import hookimpl

if TYPE_CHECKING:
    from .mobile_lite import MobileLite
    from .schedules import Constant

__version__ = "0.2.0"


def mobile_lite(
    *,
    width: float = 1.0,
    depth: int = 1,
    expand: int = 4,
    bn_momentum: float = 0.9,
    in_channels: int = 3,
) -> MobileLite:
    """A small MobileNetV2-style backbone (depthwise convs, SiLU, inverted residuals).

    Plain MindSpore cells only: yoloqat's int8_qat quantizes it by pattern and its ONNX
    exporter traces it, with no quantizer or export code here.

    Parameters:
        width: multiplies every channel count; at 1.0 C3/C4/C5 have 32/64/128 channels.
        depth: stride-1 inverted residual blocks after each downsampling block (>= 0).
        expand: expansion ratio of the inverted residual blocks (>= 1).
        bn_momentum: BatchNorm momentum (``running = m * running + (1 - m) * batch``).
        in_channels: channels of the input image.
    """
    from .mobile_lite import MobileLite

    return MobileLite(
        width=width, depth=depth, expand=expand, bn_momentum=bn_momentum, in_channels=in_channels
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
    return {"mobile_lite": mobile_lite}


@hookimpl
def yoloqat_schedulers() -> dict:
    """LR schedulers of this plugin."""
    return {"constant": constant}
