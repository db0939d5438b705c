"""Speech2Image's output helpers: ranking, padding of variable keyword counts, batching waveforms."""

import numpy as np
import pytest

from espnet_speechclip.inference.result_types import KEYWORD_PADDING, Hit, concat_padded, pad_batch, rank


def test_rank_best_first_ties_in_order():
    candidates = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    hits = rank(np.array([1.0, 0.0]), candidates, ["a", "b", "c"], topk=2)
    assert hits == [Hit(0, "a", 1.0), Hit(2, "c", 1.0)]
    assert [h.item for h in rank(np.array([0.0, 1.0]), candidates, ["a", "b", "c"], None)] == ["b", "a", "c"]
    with pytest.raises(ValueError, match="topk must be at least 1"):
        rank(np.zeros(2), candidates, ["a", "b", "c"], 0)
    with pytest.raises(ValueError, match="2 items for 3 candidate embeddings"):
        rank(np.zeros(2), candidates, ["a", "b"], 1)


def test_concat_padded_pads_the_keyword_axis():
    a, b = np.ones((1, 2), np.int64), np.ones((2, 3), np.int64)
    out = concat_padded([a, b], KEYWORD_PADDING["keyword_ids"])
    assert out.shape == (3, 3) and out[0].tolist() == [1, 1, -1]
    with pytest.raises(ValueError):
        concat_padded([a, b])  # no fill: the widths must agree


def test_pad_batch():
    padded, lengths = pad_batch([np.ones(2, np.float32), np.ones(4, np.float32)])
    assert lengths.tolist() == [2, 4] and padded.shape == (2, 4) and padded[0].tolist() == [1, 1, 0, 0]
