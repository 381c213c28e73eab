"""The seed's constants shared by the network, loss and data (spec §1.4, §4.2)."""

from __future__ import annotations

#: The 9 YOLOv3 anchors (w, h) in network-input pixels (spec §1.4).
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
#: Anchor indices of the outputs in order stride 32 ('l'), 16 ('m'), 8 ('s').
ANCHOR_MASKS: tuple[tuple[int, int, int], ...] = ((6, 7, 8), (3, 4, 5), (0, 1, 2))
#: The 10 square training sizes of the seed's multi-scale schedule (spec §4.2).
MULTI_SCALE: tuple[int, ...] = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
