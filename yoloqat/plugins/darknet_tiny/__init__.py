"""YOLOv3-tiny backbone plugin (manifest only: the model code is imported by the factory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import DarknetTiny


def darknet_tiny(
    *,
    activation: str = "leaky",
    negative_slope: float = 0.1,
    width: float = 1.0,
    bn_momentum: float = 0.9,
    bn_eps: float = 1e-5,
    in_channels: int = 3,
) -> DarknetTiny:
    """YOLOv3-tiny's maxpool backbone (7 convs) returning C4, C5 at strides 16, 32.

    Parameters:
        activation: "leaky" (Darknet's) or "relu".
        negative_slope: slope of the leaky activation (0.1 in Darknet).
        width: multiplies every channel count; 1.0 is Darknet's (C4/C5 = 256/1024 channels).
        bn_momentum: BatchNorm momentum in MindSpore semantics
            (``running = m * running + (1 - m) * batch``).
        bn_eps: BatchNorm epsilon: 1e-5, or 1e-6 for Darknet's weights.
        in_channels: channels of the input image.
    """
    from .model import DarknetTiny

    return DarknetTiny(
        activation=activation,
        negative_slope=negative_slope,
        width=width,
        bn_momentum=bn_momentum,
        bn_eps=bn_eps,
        in_channels=in_channels,
    )


@hookimpl
def yoloqat_backbones() -> dict:
    """Register the bundled backbones."""
    return {"darknet_tiny": darknet_tiny}
