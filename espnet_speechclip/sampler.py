"""Training batches drawn afresh every epoch.

ESPnet fixes batch composition at start-up and only reorders batches per epoch; for a contrastive loss
that means the same negatives every epoch, and in a key-sorted corpus (Flickr's five captions of an
image are adjacent) batches full of one image's captions. This sampler draws a new random partition of
the utterances for every epoch seed.
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple

import numpy as np
from espnet2.samplers.abs_sampler import AbsSampler


class EpochShuffleSampler(AbsSampler):
    """Random batches of ``batch_size`` utterances, new for every seed.

    The incomplete last batch is dropped (it reappears shuffled into later epochs): every step then
    sees the full batch, BatchNorm never gets a single sample, and under DDP (``world_size`` > 1)
    every rank gets the same number of utterances, which the all-gather of the loss needs.
    Each global batch is split across ranks as ``batch[rank::world_size]``, as ESPnet does.
    """

    def __init__(self, keys: Sequence[str], batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 2:
            raise ValueError(f"contrastive training needs batch_size >= 2, got {batch_size}")
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes {world_size}")
        if len(keys) < batch_size:
            raise ValueError(f"only {len(keys)} training utterances for batch_size {batch_size}")
        self.keys = sorted(keys)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def __len__(self) -> int:
        return len(self.keys) // self.batch_size

    def generate(self, seed: int) -> List[Tuple[str, ...]]:
        order = np.random.RandomState(seed).permutation(len(self.keys))
        batches = []
        for i in range(len(self)):
            batch = [self.keys[j] for j in order[i * self.batch_size : (i + 1) * self.batch_size]]
            batches.append(tuple(batch[self.rank :: self.world_size]))
        return batches

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        return iter(self.generate(0))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(N-batch={len(self)}, batch_size={self.batch_size}, "
                f"world_size={self.world_size})")
