"""Data side of yoloqat: COCO and box-list sources, augmentation, loaders, synth data.

It knows no detector family: the training loader pads each batch's ground truth to a
fixed size and runs the loss's own target builder, if it has one.

Everything here is NumPy/OpenCV; only :mod:`yoloqat.data.loader` imports MindSpore, and
only when a loader is built. Nothing is imported at package import time.
"""

from __future__ import annotations

from yoloqat.core.defaults import MULTI_SCALE

#: ImageNet statistics in RGB order (docs/seed.md §4.3 step 7).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

__all__ = ["MEAN", "MULTI_SCALE", "STD"]
