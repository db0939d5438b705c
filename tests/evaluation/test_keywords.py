"""Keyword hit rates vs plain-loop references (exact equality of the percentages)."""

from __future__ import annotations

import random

import pytest
import torch

from espnet_speechclip.evaluation.keywords import (
    CLIP_SPECIAL_IDS,
    content_word_hit_rate,
    keyword_hit_rate,
    pooled_keyword_hit_rate,
    token_baselines,
)

SOT, EOT = 49406, 49407


def ref_hits(keyword_ids, caption_ids, ignore, topk_ids=None) -> dict:
    n, k = len(keyword_ids), len(keyword_ids[0])
    per_slot = [0] * k
    for i in range(n):
        content = set(caption_ids[i]) - set(ignore)
        for j in range(k):
            cands = [keyword_ids[i][j]] + (list(topk_ids[i][j]) if topk_ids is not None else [])
            if any(c not in ignore and c in content for c in cands):
                per_slot[j] += 1
    out = {f"kw{j + 1}": 100.0 * per_slot[j] / n for j in range(k)}
    out["avg"] = 100.0 * sum(per_slot) / (n * k)
    return out


def ref_baselines(caption_ids, ignore, candidate_ids=None) -> dict:
    n = len(caption_ids)
    contents = [set(c) - set(ignore) for c in caption_ids]
    best_id, best_df = -1, 0
    for tok in sorted(set().union(*contents)):
        df = sum(tok in c for c in contents)
        if df > best_df:  # strict: the smallest id wins a tie
            best_id, best_df = tok, df
    out = {"best_constant": 100.0 * best_df / n, "best_constant_id": best_id}
    if candidate_ids is not None:
        cands = sorted(set(candidate_ids))
        n_in = sum(c in content for content in contents for c in cands)
        out["random"] = 100.0 * n_in / (n * len(cands))
    return out


# --------------------------------------------------------------------------------------------------
# Keyword hit rate
# --------------------------------------------------------------------------------------------------
def test_keyword_hand_made():
    captions = [
        [SOT, 320, 1929, 530, 518, 2870, EOT],  # "a dog is on the grass"
        [SOT, 320, 2368, EOT, 0, 0],  # padded
        [SOT, EOT],  # empty: always a miss
    ]
    kw = torch.tensor(
        [
            [1929, SOT, 0],  # hit, special (in caption!) never hits, pad never hits
            [2368, 1929, EOT],
            [SOT, 320, 5],
        ]
    )
    got = keyword_hit_rate(kw, captions)
    assert got == {"kw1": 200.0 / 3, "kw2": 0.0, "kw3": 0.0, "avg": 200.0 / 9}
    assert got == ref_hits(kw.tolist(), captions, CLIP_SPECIAL_IDS)
    # top-M: slot 2 of caption 1 gets 320 among its neighbours; specials among neighbours stay misses.
    topk = torch.tensor(
        [
            [[7, 8], [SOT, EOT], [0, 0]],
            [[9, 9], [320, 1], [EOT, SOT]],
            [[320, 1], [1, 2], [3, 4]],
        ]
    )
    got = keyword_hit_rate(kw, captions, topk_ids=topk)
    assert got == {"kw1": 200.0 / 3, "kw2": 100.0 / 3, "kw3": 0.0, "avg": 300.0 / 9}
    assert got == ref_hits(kw.tolist(), captions, CLIP_SPECIAL_IDS, topk.tolist())


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("use_topk", [False, True])
def test_keyword_random_vs_loop(seed, use_topk):
    rng = random.Random(seed)
    n, k, m = rng.randint(1, 30), rng.randint(1, 8), rng.randint(1, 5)
    # A tiny vocabulary that includes the specials, so that they show up on both sides often.
    vocab = [0, 1, 2, 3, 4, 5, 6, SOT, EOT]
    captions = [[SOT] + [rng.choice(vocab) for _ in range(rng.randint(0, 10))] + [EOT] for _ in range(n)]
    kw = [[rng.choice(vocab) for _ in range(k)] for _ in range(n)]
    topk = [[[rng.choice(vocab) for _ in range(m)] for _ in range(k)] for _ in range(n)] if use_topk else None
    kw_t, topk_t = torch.tensor(kw), None if topk is None else torch.tensor(topk)
    got = keyword_hit_rate(kw_t, captions, topk_ids=topk_t)
    assert got == ref_hits(kw, captions, CLIP_SPECIAL_IDS, topk)
    # Same captions as 1-D tensors, and as a 0-padded (N, L) tensor.
    assert keyword_hit_rate(kw_t, [torch.tensor(c) for c in captions], topk_ids=topk_t) == got
    width = max(len(c) for c in captions)
    padded = torch.tensor([c + [0] * (width - len(c)) for c in captions])
    assert keyword_hit_rate(kw_t, padded, topk_ids=topk_t) == got
    # Custom special set.
    special = [0, 3]
    assert keyword_hit_rate(torch.tensor(kw), captions, special) == ref_hits(kw, captions, special)


def test_keyword_errors():
    caps = [[SOT, 5, EOT], [SOT, 6, EOT]]
    kw = torch.tensor([[5], [6]])
    with pytest.raises(ValueError, match="2-D"):
        keyword_hit_rate(torch.tensor([5, 6]), caps)
    with pytest.raises(ValueError, match="captions for 2"):
        keyword_hit_rate(kw, caps[:1])
    with pytest.raises(ValueError, match="captions for 2"):
        keyword_hit_rate(kw, torch.tensor([[5, 6, 7]]))
    with pytest.raises(ValueError, match="topk_ids"):
        keyword_hit_rate(kw, caps, topk_ids=torch.zeros(2, 2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="topk_ids"):
        keyword_hit_rate(kw, caps, topk_ids=torch.zeros(2, 1, 0, dtype=torch.long))
    with pytest.raises(ValueError, match="non-negative"):
        keyword_hit_rate(torch.tensor([[5], [-1]]), caps)
    with pytest.raises(ValueError, match="non-negative"):
        keyword_hit_rate(kw, [[SOT, -1, EOT], [6]])
    with pytest.raises(ValueError, match="non-negative"):
        keyword_hit_rate(kw, torch.tensor([[5, -1], [6, 0]]))
    with pytest.raises(TypeError, match="integer"):
        keyword_hit_rate(kw.float(), caps)
    with pytest.raises(TypeError, match="integer"):
        keyword_hit_rate(kw, [[1.5], [6]])
    with pytest.raises(ValueError, match="1-D"):
        keyword_hit_rate(kw, [[[5]], [6]])


def test_content_word_hand_made():
    a, the, dog, grass, cat = 320, 518, 1929, 2870, 2368
    captions = [[SOT, a, dog, a, the, grass, EOT], [SOT, a, cat, EOT], [SOT, the, dog, EOT], [SOT, a, EOT]]
    kw = torch.tensor([[a, dog], [a, cat], [the, grass], [a, 0]])
    plain = keyword_hit_rate(kw, captions)
    assert plain["kw1"] == 100.0  # "a"/"the" always hit in the plain rate...
    got = content_word_hit_rate(kw, captions, stop_ids=[a, the], candidate_ids=[dog, cat, grass, a])
    assert got["kw1"] == 0.0  # ...and never as content words
    assert got["kw2"] == 50.0 and got["avg"] == 25.0
    assert got["best_constant_id"] == dog and got["best_constant"] == 50.0
    # dog in 2 captions, cat in 1, grass in 1, "a" never counts: 4 / (4 captions * 4 candidates)
    assert got["random"] == 25.0
    assert "random" not in content_word_hit_rate(kw, captions, stop_ids=[a, the])


@pytest.mark.parametrize("seed", range(5))
def test_content_word_random_vs_loop(seed):
    rng = random.Random(100 + seed)
    n, k, m = rng.randint(1, 25), rng.randint(1, 8), rng.randint(1, 5)
    vocab = [0, 10, 11, 12, 13, 14, 15, 16, SOT, EOT]
    stop = [10, 11]
    captions = [[SOT] + [rng.choice(vocab) for _ in range(rng.randint(0, 8))] + [EOT] for _ in range(n)]
    kw = [[rng.choice(vocab) for _ in range(k)] for _ in range(n)]
    topk = [[[rng.choice(vocab) for _ in range(m)] for _ in range(k)] for _ in range(n)]
    cands = [rng.choice(vocab) for _ in range(rng.randint(1, 8))]  # duplicates, maybe specials/stops
    ignore = list(CLIP_SPECIAL_IDS) + stop
    for tk in (None, topk):
        got = content_word_hit_rate(
            torch.tensor(kw),
            captions,
            stop,
            topk_ids=None if tk is None else torch.tensor(tk),
            candidate_ids=cands,
        )
        want = {**ref_hits(kw, captions, ignore, tk), **ref_baselines(captions, ignore, cands)}
        assert got == want
    assert token_baselines(captions, ignore, cands) == ref_baselines(captions, ignore, cands)
    assert token_baselines(captions) == ref_baselines(captions, CLIP_SPECIAL_IDS)


def test_baselines_without_content():
    got = token_baselines([[SOT, EOT], [0, 0]], candidate_ids=[5, 6])
    assert got == {"best_constant": 0.0, "best_constant_id": -1, "random": 0.0}
    with pytest.raises(ValueError, match="empty"):
        token_baselines([])
    with pytest.raises(ValueError, match="candidate_ids"):
        token_baselines([[1]], candidate_ids=[])


# --------------------------------------------------------------------------------------------------
# Pooled keyword hit rate (variable-length keywords)
# --------------------------------------------------------------------------------------------------
def ref_pooled(keyword_rows, caption_ids, ignore) -> dict:
    """keyword_rows: per utterance, its own keywords (any number)."""
    hits = emitted = 0
    own = []
    for kws, cap in zip(keyword_rows, caption_ids):
        content = set(cap) - set(ignore)
        h = sum(k not in ignore and k in content for k in kws)
        hits, emitted = hits + h, emitted + len(kws)
        if kws:
            own.append(h / len(kws))
    return {
        "pooled": 100.0 * hits / emitted,
        "utterance_avg": 100.0 * sum(own) / len(own),
        "keywords_per_utterance": emitted / len(keyword_rows),
    }


@pytest.mark.parametrize("seed", range(5))
def test_pooled_hit_rate_matches_reference(seed):
    rng = random.Random(seed)
    vocab = [0, SOT, EOT] + list(range(1, 40))
    rows = [[rng.choice(vocab) for _ in range(rng.randint(0 if i else 1, 7))] for i in range(30)]
    captions = [[SOT] + [rng.choice(vocab) for _ in range(rng.randint(0, 9))] + [EOT] for _ in rows]
    width = max(map(len, rows))
    padded = torch.tensor([r + [-1] * (width - len(r)) for r in rows])
    got = pooled_keyword_hit_rate(padded, captions)
    ref = ref_pooled(rows, captions, CLIP_SPECIAL_IDS)
    assert got["pooled"] == ref["pooled"] and got["keywords_per_utterance"] == ref["keywords_per_utterance"]
    assert got["utterance_avg"] == pytest.approx(ref["utterance_avg"], abs=1e-9)


def test_pooled_hit_rate_equals_slot_average_for_a_fixed_k():
    rng = random.Random(7)
    kw = torch.tensor([[rng.randrange(1, 30) for _ in range(4)] for _ in range(12)])
    captions = [[SOT] + [rng.randrange(1, 30) for _ in range(6)] + [EOT] for _ in range(12)]
    assert pooled_keyword_hit_rate(kw, captions)["pooled"] == keyword_hit_rate(kw, captions)["avg"]


def test_pooled_hit_rate_refuses_no_keywords():
    with pytest.raises(ValueError, match="no keywords"):
        pooled_keyword_hit_rate(torch.full((2, 3), -1), [[5], [6]])
    with pytest.raises(ValueError, match="2-D"):
        pooled_keyword_hit_rate(torch.tensor([5, 6]), [[5], [6]])
