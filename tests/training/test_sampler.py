"""The epoch-shuffle sampler: new random (optionally length-grouped) batches every epoch."""

import numpy as np
import pytest

from espnet_speechclip.training.sampler import EpochShuffleSampler, padding_fraction


# ------------------------------------------------------------------------------------------ sampler
def varied_lengths(n: int = 400, seed: int = 0):
    rng = np.random.RandomState(seed)
    keys = [f"utt{i:04d}" for i in range(n)]
    return keys, dict(zip(keys, rng.randint(16000, 102400, n).tolist()))


@pytest.mark.parametrize("group", [1, 5])
def test_sampler_new_batches_each_epoch_each_utterance_once(group):
    keys, lengths = varied_lengths(403)
    s = EpochShuffleSampler(keys, 16, lengths=lengths, group=group)
    epochs = [s.generate(seed) for seed in range(3)]
    for batches in epochs:
        assert len(batches) == len(s) == 403 // 16
        flat = [k for b in batches for k in b]
        assert len(flat) == len(set(flat)) == len(batches) * 16  # at most once, remainder dropped
        assert all(len(b) == 16 for b in batches)
    sets = [{frozenset(b) for b in batches} for batches in epochs]
    assert sets[0] != sets[1] and sets[1] != sets[2]
    assert s.generate(1) == epochs[1]  # a seed reproduces its epoch (resume)


def test_sampler_ranks_get_equal_disjoint_shares():
    keys, lengths = varied_lengths()
    world = 4
    shares = [
        EpochShuffleSampler(keys, 32, rank, world, lengths=lengths, group=5).generate(7)
        for rank in range(world)
    ]
    assert len({len(s) for s in shares}) == 1
    for step in zip(*shares):
        assert all(len(part) == 32 // world for part in step)
        merged = [k for part in step for k in part]
        assert len(set(merged)) == 32
    flat = [k for s in shares for b in s for k in b]
    assert len(flat) == len(set(flat))


def test_sampler_length_groups_pad_less_than_random_batches():
    keys, lengths = varied_lengths(2000)
    plain = EpochShuffleSampler(keys, 32, lengths=lengths, group=1)
    grouped = EpochShuffleSampler(keys, 32, lengths=lengths, group=20)
    for seed in range(3):
        random_pad = padding_fraction(plain.generate(seed), lengths)
        grouped_pad = padding_fraction(grouped.generate(seed), lengths)
        assert grouped_pad < random_pad / 4
    # the crop caps lengths before padding is counted
    assert padding_fraction([("utt0000", "utt0001")], {"utt0000": 10, "utt0001": 30}, max_length=20) == 0.25


def test_sampler_group_one_is_the_plain_random_partition():
    """group=1 keeps the batches that earlier versions drew for a seed, so resumed runs see the same data."""
    keys, _ = varied_lengths(100)
    batches = EpochShuffleSampler(keys, 10).generate(3)
    order = np.random.RandomState(3).permutation(100)
    assert batches == [tuple(sorted(keys)[j] for j in order[i * 10 : (i + 1) * 10]) for i in range(10)]


def test_sampler_grouping_needs_lengths():
    keys, lengths = varied_lengths(50)
    with pytest.raises(ValueError, match="lengths"):
        EpochShuffleSampler(keys, 10, group=5)
    with pytest.raises(KeyError, match="utt0049"):
        EpochShuffleSampler(keys, 10, lengths={k: lengths[k] for k in keys[:-1]}, group=5)
    with pytest.raises(ValueError, match="group"):
        EpochShuffleSampler(keys, 10, lengths=lengths, group=0)
