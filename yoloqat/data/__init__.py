"""Data side of yoloqat: COCO and box-list sources, augmentation, targets, loaders, synth data.

Everything here is NumPy/OpenCV; only :mod:`yoloqat.data.loader` imports MindSpore, and
only when a loader is built. Nothing is imported at package import time.
"""

from __future__ import annotations

from yoloqat.core.defaults import ANCHOR_MASKS, ANCHORS, MULTI_SCALE

#: ImageNet statistics in RGB order (spec §4.3 step 7).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

__all__ = ["ANCHORS", "ANCHOR_MASKS", "MEAN", "MULTI_SCALE", "STD"]
