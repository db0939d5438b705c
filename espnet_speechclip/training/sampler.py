"""Training batches drawn afresh every epoch, grouped by length so that little padding is computed.

ESPnet fixes batch composition at start-up and only reorders batches per epoch; for a contrastive loss
that means the same negatives every epoch, and in a key-sorted corpus (Flickr's five captions of an
image are adjacent) batches full of one image's captions. This sampler draws a new random partition of
the utterances for every epoch seed.

A purely random batch of 256 utterances almost always holds one utterance at the crop length (6.4 s),
so the frozen upstream, which runs on the padded batch, computes every utterance at the longest length:
about a third of its work is padding on Flickr-like length spreads. Drawing ``group`` batches' worth of
utterances at random, sorting them by length and cutting them into batches keeps batches random (new
members every epoch, every batch a random stratum of a random draw) while each batch's lengths are
close, so the padded frames nearly vanish. ``group=1`` is the plain random partition.
"""

from __future__ import annotations

from typing import Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from espnet2.samplers.abs_sampler import AbsSampler

from espnet_speechclip.errors import InputError, MissingKeyError


class EpochShuffleSampler(AbsSampler):
    """Random batches of ``batch_size`` utterances, new for every seed, optionally length-grouped.

    The incomplete last batch is dropped (it reappears shuffled into later epochs): every step then
    sees the full batch, BatchNorm never gets a single sample, and under DDP (``world_size`` > 1)
    every rank gets the same number of utterances, which the all-gather of the loss needs.
    Each global batch is split across ranks as ``batch[rank::world_size]``, as ESPnet does.

    Args:
        keys: utterance ids.
        batch_size: utterances per global batch (all ranks together).
        rank, world_size: this process's share of each batch under DDP.
        lengths: ``key -> length`` (samples) of every key; needed when ``group`` > 1.
        group: number of batches drawn together, sorted by length and cut into batches (a
            "mega-batch"); 1 = plain random batches.
    """

    def __init__(
        self,
        keys: Sequence[str],
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        lengths: Optional[Mapping[str, int]] = None,
        group: int = 1,
    ):
        if batch_size < 2:
            raise InputError(f"contrastive training needs batch_size >= 2, got {batch_size}")
        if batch_size % world_size:
            raise InputError(
                f"batch_size {batch_size} must be divisible by the number of processes {world_size}"
            )
        if len(keys) < batch_size:
            raise InputError(f"only {len(keys)} training utterances for batch_size {batch_size}")
        if group < 1:
            raise InputError(f"group must be >= 1 batches, got {group}")
        self.keys = sorted(keys)
        self.lengths = None
        if group > 1:
            if lengths is None:
                raise InputError("length-grouped batches (group > 1) need the utterance lengths")
            missing = [k for k in self.keys if k not in lengths]
            if missing:
                raise MissingKeyError(f"no length for {len(missing)} utterance(s), e.g. {missing[:3]}")
            self.lengths = np.array([int(lengths[k]) for k in self.keys], dtype=np.int64)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.group = group

    def __len__(self) -> int:
        return len(self.keys) // self.batch_size

    def generate(self, seed: int) -> List[Tuple[str, ...]]:
        """This rank's batches for the epoch of ``seed``: each a tuple of ``batch_size / world_size`` keys."""
        rng = np.random.RandomState(seed)
        n_batches = len(self)
        # The random permutation decides which utterances are left out this epoch (the remainder) and
        # which land in the same group; ties in length stay in this random order (stable sort).
        order = rng.permutation(len(self.keys))[: n_batches * self.batch_size]
        if self.lengths is not None:
            span = self.group * self.batch_size
            order = np.concatenate(
                [
                    chunk[np.argsort(self.lengths[chunk], kind="stable")]
                    for chunk in np.split(order, range(span, len(order), span))
                ]
            )
        batches = order.reshape(n_batches, self.batch_size)
        if self.lengths is not None:
            # Sorted groups would otherwise run short-to-long within each group in the same pattern
            # every epoch; the step order should not follow utterance length.
            batches = batches[rng.permutation(n_batches)]
        return [tuple(self.keys[j] for j in batch[self.rank :: self.world_size]) for batch in batches]

    def __iter__(self) -> Iterator[Tuple[str, ...]]:
        return iter(self.generate(0))

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(N-batch={len(self)}, batch_size={self.batch_size}, "
            f"world_size={self.world_size}, group={self.group})"
        )


def padding_fraction(
    batches: Sequence[Sequence[str]], lengths: Mapping[str, int], max_length: Optional[int] = None
) -> float:
    """Share of the padded batch tensors that is padding: ``1 - sum(len) / sum(B * max(len))`` over
    ``batches``, each length first capped at ``max_length`` (the training crop, applied before the
    upstream runs)."""
    real = padded = 0
    for batch in batches:
        ls = np.array([int(lengths[k]) for k in batch], dtype=np.int64)
        if max_length is not None:
            ls = np.minimum(ls, max_length)
        real += int(ls.sum())
        padded += int(ls.max()) * len(ls)
    if padded == 0:
        raise InputError("no batches to measure")
    return 1.0 - real / padded
