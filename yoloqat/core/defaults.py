"""The seed's constants shared by the trainer and the data loaders (docs/seed.md §4.2)."""

from __future__ import annotations

#: The 10 square training sizes of the seed's multi-scale schedule (docs/seed.md §4.2).
MULTI_SCALE: tuple[int, ...] = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
