"""Retrieval recall (the package's only one) vs plain-loop references (exact equality)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from espnet_speechclip.evaluation import retrieval as metrics
from espnet_speechclip.evaluation.keywords import (
    keyword_hit_rate,
)
from espnet_speechclip.evaluation.retrieval import dedupe_images, mean_r10, retrieval_recall


# --------------------------------------------------------------------------------------------------
# Loop references: written from the definition, as literally as possible.
# --------------------------------------------------------------------------------------------------
def ref_recall(sim: list[list[float]], utt2img: list[int], ks=(1, 5, 10)) -> dict:
    n_utt, n_img = len(sim), len(sim[0])
    s2i = {}
    i2s = {}
    for k in ks:
        hits = 0
        for i in range(n_utt):
            target = sim[i][utt2img[i]]
            rank = 0
            for j in range(n_img):
                if j != utt2img[i] and sim[i][j] >= target:
                    rank += 1
            if rank < k:
                hits += 1
        s2i[f"R@{k}"] = 100.0 * hits / n_utt

        hits = 0
        queries = 0
        for j in range(n_img):
            caps = [u for u in range(n_utt) if utt2img[u] == j]
            if not caps:
                continue  # an image nobody describes is not a query
            queries += 1
            target = max(sim[u][j] for u in caps)
            rank = 0
            for u in range(n_utt):
                if utt2img[u] != j and sim[u][j] >= target:
                    rank += 1
            if rank < k:
                hits += 1
        i2s[f"R@{k}"] = 100.0 * hits / queries
    return {"speech_to_image": s2i, "image_to_speech": i2s}


# --------------------------------------------------------------------------------------------------
# Retrieval
# --------------------------------------------------------------------------------------------------
def _check(sim: torch.Tensor, utt2img: torch.Tensor, ks=(1, 5, 10)) -> dict:
    got = retrieval_recall(sim, utt2img, ks)
    want = ref_recall(sim.tolist(), utt2img.tolist(), ks)
    assert got == want
    return got


def test_hand_made_with_ties():
    # 3 images, 5 utterances: image 0 has captions 0,1; image 1 has 2,3; image 2 has 4.
    sim = torch.tensor(
        [
            [0.9, 0.9, 0.1],  # tie with image 1: pessimistic rank 1
            [0.8, 0.2, 0.3],  # clear rank 0
            [0.5, 0.5, 0.5],  # all tied: rank 2
            [0.1, 0.7, 0.6],  # rank 0
            [0.4, 0.3, 0.2],  # own image 2 scores lowest: rank 2
        ]
    )
    utt2img = torch.tensor([0, 0, 1, 1, 2])
    got = _check(sim, utt2img, ks=(1, 2, 3))
    assert got["speech_to_image"] == {"R@1": 40.0, "R@2": 60.0, "R@3": 100.0}
    # image 0: target max(0.9, 0.8)=0.9; others in col 0: 0.5, 0.1, 0.4 -> rank 0
    # image 1: target max(0.5, 0.7)=0.7; others in col 1: 0.9 (>=), 0.2, 0.3 -> rank 1
    # image 2: target 0.2; others in col 2: 0.1, 0.3, 0.5, 0.6 -> 3 are >= -> rank 3
    assert got["image_to_speech"] == {"R@1": 100.0 / 3, "R@2": 200.0 / 3, "R@3": 200.0 / 3}


def test_constant_matrix_is_never_flattering():
    sim = torch.full((12, 4), 0.25)
    utt2img = torch.arange(12) % 4
    got = _check(sim, utt2img, ks=(1, 3, 4, 10))
    assert got["speech_to_image"]["R@1"] == 0.0
    assert got["image_to_speech"]["R@1"] == 0.0
    # speech->image: 3 competitors, all tied -> rank 3 -> hit only for K >= 4
    assert got["speech_to_image"]["R@3"] == 0.0 and got["speech_to_image"]["R@4"] == 100.0
    # image->speech: 9 competitor utterances -> rank 9 -> hit only for K >= 10
    assert got["image_to_speech"]["R@4"] == 0.0 and got["image_to_speech"]["R@10"] == 100.0


def test_perfect_matrix():
    utt2img = torch.tensor([0, 1, 2, 0, 1, 2, 2])
    sim = torch.nn.functional.one_hot(utt2img, 3).float()
    got = _check(sim, utt2img)
    assert all(v == 100.0 for d in got.values() for v in d.values())
    assert mean_r10(got) == 100.0


def test_k_larger_than_number_of_images():
    gen = torch.Generator().manual_seed(0)
    sim = torch.randn(9, 3, generator=gen)
    utt2img = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2])
    got = _check(sim, utt2img, ks=(1, 5, 10, 100))
    assert got["speech_to_image"]["R@5"] == 100.0  # only 2 competitors
    assert got["image_to_speech"]["R@10"] == 100.0  # only 6 competitors


@pytest.mark.parametrize("seed", range(6))
def test_random_with_ties_and_captionless_images(seed, monkeypatch):
    # Small chunks so that the row-chunk loop runs many times with a ragged last chunk.
    monkeypatch.setattr(metrics, "_CHUNK_ELEMS", 37)
    rng = random.Random(seed)
    n_img = rng.randint(2, 12)
    n_utt = rng.randint(1, 40)
    # Images n_img-2.. never get a caption: image->speech must skip them.
    described = max(1, n_img - 2)
    utt2img = torch.tensor([rng.randrange(described) for _ in range(n_utt)])
    gen = torch.Generator().manual_seed(seed)
    # Few distinct values -> many ties, in both directions.
    sim = torch.randint(0, 4, (n_utt, n_img), generator=gen).float() / 4
    _check(sim, utt2img, ks=(1, 2, 5, 10, 50))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64])
def test_other_dtypes(dtype):
    gen = torch.Generator().manual_seed(3)
    sim = torch.randint(-3, 3, (20, 6), generator=gen).to(dtype)
    utt2img = torch.randint(0, 5, (20,), generator=gen)
    _check(sim, utt2img, ks=(1, 3))


def test_retrieval_errors():
    sim = torch.zeros(4, 3)
    ok = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="2-D"):
        retrieval_recall(torch.zeros(4), ok)
    with pytest.raises(ValueError, match="non-empty"):
        retrieval_recall(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        retrieval_recall(sim, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        retrieval_recall(sim, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        retrieval_recall(sim, torch.tensor([0, -1, 2, 0]))
    with pytest.raises(TypeError, match="integer"):
        retrieval_recall(sim, ok.float())
    for bad in (float("nan"), float("inf"), float("-inf")):
        s = sim.clone()
        s[3, 1] = bad
        with pytest.raises(ValueError, match="non-finite"):
            retrieval_recall(s, ok)
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall(sim, ok, ks=())
    with pytest.raises(ValueError, match="positive"):
        retrieval_recall(sim, ok, ks=(0,))
    with pytest.raises(TypeError):
        retrieval_recall(sim.tolist(), ok)
    with pytest.raises(KeyError, match="R@10"):
        mean_r10(retrieval_recall(sim, ok, ks=(1, 5)))


def test_mean_r10():
    res = {"speech_to_image": {"R@10": 70.0}, "image_to_speech": {"R@10": 85.0}}
    assert mean_r10(res) == 77.5


def test_dedupe_images():
    keys, index = dedupe_images(["b.jpg", "a.jpg", "b.jpg", "c.jpg", "a.jpg"])
    assert keys == ["b.jpg", "a.jpg", "c.jpg"]
    assert index.dtype == torch.long and index.tolist() == [0, 1, 0, 2, 1]
    assert [keys[i] for i in index] == ["b.jpg", "a.jpg", "b.jpg", "c.jpg", "a.jpg"]
    keys, index = dedupe_images([])
    assert keys == [] and index.shape == (0,)
    with pytest.raises(TypeError):
        dedupe_images("abc")


def test_percentages_are_plain_floats():
    res = retrieval_recall(torch.eye(3), torch.arange(3))
    assert all(type(v) is float and math.isfinite(v) for d in res.values() for v in d.values())
    kw = keyword_hit_rate(torch.tensor([[1]]), [[1]])
    assert all(type(v) is float for v in kw.values())


def test_grouped_recall_against_loop_reference():
    from espnet_speechclip.evaluation.retrieval import grouped_recall

    g = torch.Generator().manual_seed(3)
    sim = torch.randint(0, 4, (9, 9), generator=g).float()  # many ties
    groups = torch.tensor([0, 0, 1, 1, 1, 2, 3, 3, 4])
    out = grouped_recall(sim, groups, groups)
    for k in (1, 5, 10):
        hits = 0
        for i in range(9):
            best = max(float(sim[i, j]) for j in range(9) if groups[j] == groups[i])
            rank = sum(1 for j in range(9) if groups[j] != groups[i] and float(sim[i, j]) >= best)
            hits += rank < k
        assert out[f"R@{k}"] == 100.0 * hits / 9
    # with one column per group it is speech->image retrieval
    img = torch.tensor([0, 0, 1, 2, 2, 3])
    s = torch.randn(6, 4, generator=g)
    assert grouped_recall(s, img, torch.arange(4)) == retrieval_recall(s, img)["speech_to_image"]


@pytest.mark.parametrize("seed", range(4))
def test_grouped_recall_uneven_groups_against_loop_reference(seed):
    """Rows and columns with different groupings, groups of any size, rows whose group has no column
    (skipped), columns whose group has no row, arbitrary (non-contiguous) group ids, small chunks."""
    from espnet_speechclip.evaluation import retrieval as metrics

    g = torch.Generator().manual_seed(seed)
    n_row, n_col = 23, 17
    row_groups = torch.randint(0, 9, (n_row,), generator=g) * 7 - 5
    col_groups = torch.randint(0, 9, (n_col,), generator=g) * 7 - 5
    sim = torch.randint(0, 5, (n_row, n_col), generator=g).double()  # many ties
    ref, count = {1: 0, 3: 0, 5: 0}, 0
    for i in range(n_row):
        own = [float(sim[i, j]) for j in range(n_col) if col_groups[j] == row_groups[i]]
        if not own:
            continue
        count += 1
        rank = sum(1 for j in range(n_col) if col_groups[j] != row_groups[i] and float(sim[i, j]) >= max(own))
        for k in ref:
            ref[k] += rank < k
    expected = {f"R@{k}": 100.0 * h / count for k, h in ref.items()}
    assert metrics.grouped_recall(sim, row_groups, col_groups, ks=(1, 3, 5)) == expected
    old_chunk = metrics._CHUNK_ELEMS
    try:
        metrics._CHUNK_ELEMS = 2 * n_col  # two rows per chunk
        assert metrics.grouped_recall(sim, row_groups, col_groups, ks=(1, 3, 5)) == expected
    finally:
        metrics._CHUNK_ELEMS = old_chunk


def test_grouped_recall_rejects_rows_without_own_columns():
    from espnet_speechclip.evaluation.retrieval import grouped_recall

    with pytest.raises(ValueError, match="no row has a column"):
        grouped_recall(torch.zeros(2, 2), torch.tensor([0, 1]), torch.tensor([2, 3]))
    with pytest.raises(ValueError, match="does not match"):
        grouped_recall(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        grouped_recall(
            torch.tensor([[0.0, float("nan")], [1.0, 0.0]]), torch.tensor([0, 1]), torch.tensor([0, 1])
        )
    with pytest.raises(TypeError, match="floating"):
        grouped_recall(torch.zeros(2, 2, dtype=torch.long), torch.tensor([0, 1]), torch.tensor([0, 1]))
