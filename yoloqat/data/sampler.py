"""Distributed sampler of docs/seed.md §4.1: a per-epoch permutation shared by all ranks, padded to
a multiple of the rank count, rank r taking every ``num_shards``-th index from r."""

from __future__ import annotations

import numpy as np

from yoloqat.core.errors import ConfigError


class DistributedSampler:
    """Indices of one rank's shard for a given epoch.

    The permutation is drawn from a generator keyed by (seed, epoch), so it is identical on
    every rank (the seed keyed it by the epoch alone). The padded order repeats its first
    indices; ``positions`` are the places of the shard's items in that padded order.
    """

    def __init__(
        self,
        size: int,
        *,
        num_shards: int = 1,
        shard_id: int = 0,
        shuffle: bool = True,
        seed: int = 1,
    ) -> None:
        if num_shards < 1 or not 0 <= shard_id < num_shards:
            raise ConfigError(f"need 0 <= shard_id < num_shards, got {shard_id}/{num_shards}")
        if size < 1:
            raise ConfigError("the dataset is empty: no image to sample")
        self.size = int(size)
        self.num_shards = int(num_shards)
        self.shard_id = int(shard_id)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.total = -(-self.size // self.num_shards) * self.num_shards

    def __len__(self) -> int:
        return self.total // self.num_shards

    def order(self, epoch: int) -> np.ndarray:
        """The padded global order of all ranks for ``epoch``."""
        if self.shuffle:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFF, int(epoch)])
            idx = rng.permutation(self.size)
        else:
            idx = np.arange(self.size)
        pad = self.total - self.size
        return np.concatenate([idx, np.resize(idx, pad)]) if pad else idx

    def indices(self, epoch: int) -> np.ndarray:
        """This rank's dataset indices for ``epoch``."""
        return self.order(epoch)[self.shard_id :: self.num_shards]

    def positions(self) -> np.ndarray:
        """Places of this rank's items in the padded global order."""
        return np.arange(self.shard_id, self.total, self.num_shards)
