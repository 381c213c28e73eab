"""The seed's constants shared by the config schema, the network and the data loaders
(docs/seed.md §4.2). Config defaults live in :mod:`yoloqat.core.schema`, which reads these."""

from __future__ import annotations

#: The 10 square training sizes of the seed's multi-scale schedule (docs/seed.md §4.2).
MULTI_SCALE: tuple[int, ...] = (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)

#: Network input sides must be multiples of this (the stride of the coarsest output of the
#: bundled families); checked where no network is at hand.
INPUT_MULTIPLE = 32
