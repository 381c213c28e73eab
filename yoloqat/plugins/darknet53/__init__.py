"""DarkNet-53 backbone plugin (manifest only: the model code is imported by the factory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from yoloqat.core.hookspecs import hookimpl

if TYPE_CHECKING:
    from .model import DarkNet53


def darknet53(
    *,
    activation: str = "relu",
    negative_slope: float = 0.1,
    width: float = 1.0,
    padding: str = "symmetric",
    bn_momentum: float = 0.9,
    bn_eps: float = 1e-5,
    in_channels: int = 3,
    blocks: tuple[int, ...] | list[int] = (1, 2, 8, 8, 4),
) -> DarkNet53:
    """DarkNet-53 backbone of YOLOv3 (52 convs) returning C3, C4, C5 at strides 8, 16, 32.

    Parameters:
        activation: "relu" (the seed's backbone) or "leaky" (Darknet's LeakyReLU).
        negative_slope: slope of the leaky activation (Darknet uses 0.1); unused for "relu".
        width: multiplies every channel count (``max(1, round(c * width))``); 1.0 is the
            real network (C3/C4/C5 = 256/512/1024 channels), small values give fast toys.
        padding: "symmetric" pads k//2 on every side (Darknet); "same" is TensorFlow SAME
            padding (asymmetric for stride-2 convs), as the seed used.
        bn_momentum: BatchNorm momentum in MindSpore semantics
            (``running = m * running + (1 - m) * batch``).
        bn_eps: BatchNorm epsilon: 1e-5 (the seed's layers) or 1e-6 (Darknet's, which
            imported Darknet weights need to reproduce Darknet's outputs).
        in_channels: channels of the input image (3 for RGB).
        blocks: residual blocks of each of the 5 stages; (1, 2, 8, 8, 4) is DarkNet-53.
            Fewer give a shallower network with the same parameter names (``layerK.i``)
            for fast experiments and tests; checkpoints load only into the same depth.
    """
    from .model import DarkNet53

    return DarkNet53(
        activation=activation,
        negative_slope=negative_slope,
        width=width,
        padding=padding,
        bn_momentum=bn_momentum,
        bn_eps=bn_eps,
        in_channels=in_channels,
        blocks=blocks,
    )


@hookimpl
def yoloqat_backbones() -> dict:
    """Register the bundled backbones."""
    return {"darknet53": darknet53}
