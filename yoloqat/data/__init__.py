"""Data side of yoloqat: COCO sources, augmentation, targets, loaders, synthetic data.

Everything here is NumPy/OpenCV; only :mod:`yoloqat.data.loader` imports MindSpore, and
only when a loader is built. Nothing is imported at package import time.
"""

from __future__ import annotations

#: The 10 square training sizes of the seed's multi-scale schedule (spec §4.2).
MULTI_SCALE: tuple[int, ...] = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)

#: The seed's anchors in network-input pixels, (w, h) (spec §1.4).
ANCHORS: tuple[tuple[int, int], ...] = (
    (10, 13),
    (16, 30),
    (33, 23),
    (30, 61),
    (62, 45),
    (59, 119),
    (116, 90),
    (156, 198),
    (373, 326),
)

#: Anchor masks in output order: stride 32 ('l'), 16 ('m'), 8 ('s').
ANCHOR_MASKS: tuple[tuple[int, int, int], ...] = ((6, 7, 8), (3, 4, 5), (0, 1, 2))

#: ImageNet statistics in RGB order (spec §4.3 step 7).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

__all__ = ["ANCHORS", "ANCHOR_MASKS", "MEAN", "MULTI_SCALE", "STD"]
