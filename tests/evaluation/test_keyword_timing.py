"""Keyword timing metrics on hand-computed examples."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from espnet_speechclip.evaluation.keyword_timing import (
    boundary_prf,
    equal_spans,
    interior_boundaries,
    keyword_timing_scores,
    span_contains_word,
    spans_to_boundaries,
)


# ------------------------------------------------------------------------------------------ boundaries
def test_boundary_prf_hand_example():
    ref = [[0.10, 0.40, 0.90, 1.30]]
    pred = [[0.11, 0.395, 0.43, 1.00, 1.32]]  # 0.43 duplicates 0.40's window; 1.00 is 100 ms off
    out = boundary_prf(pred, ref, tolerance=0.02)
    assert (out["n_pred"], out["n_ref"], out["n_hit"]) == (5, 4, 3)
    assert out["precision"] == pytest.approx(3 / 5)
    assert out["recall"] == pytest.approx(3 / 4)
    assert out["f1"] == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert out["os"] == pytest.approx(5 / 4 - 1)


def test_boundary_prf_matching_is_maximum_not_greedy_by_distance():
    # closest pair first would match (0.025, 0.015) and leave 0.000 and 0.040 unmatched
    out = boundary_prf([[0.015, 0.040]], [[0.000, 0.025]], tolerance=0.02)
    assert out["n_hit"] == 2 and out["f1"] == 1.0


def test_boundary_prf_tolerance_edge_and_float_rounding():
    assert boundary_prf([[0.32]], [[0.30]], 0.02)["n_hit"] == 1  # 0.32 - 0.30 > 0.02 in floats
    assert boundary_prf([[0.3201]], [[0.30]], 0.02)["n_hit"] == 0


def test_boundary_prf_is_micro_averaged_and_order_free():
    out = boundary_prf([[0.5, 0.1], [], [2.0]], [[0.1], [0.7], [2.01, 3.0]])
    # utt 1: 0.1 hits, 0.5 false alarm; utt 2: miss; utt 3: 2.0 hits 2.01, 3.0 missed
    assert (out["n_pred"], out["n_ref"], out["n_hit"]) == (3, 4, 2)
    assert out["precision"] == pytest.approx(2 / 3) and out["recall"] == pytest.approx(0.5)


def test_boundary_prf_r_value_hand_computed():
    out = boundary_prf([[0.0, 0.5, 1.0, 1.5]], [[0.0, 0.6, 1.2, 1.5]])
    # HR = 0.5, OS = 0: r1 = 0.5, r2 = -0.5 / sqrt(2), R = 1 - (0.5 + 0.3536) / 2
    assert out["r_value"] == pytest.approx(1 - (0.5 + 0.5 / math.sqrt(2)) / 2)


def test_boundary_prf_empty_and_bad_inputs():
    out = boundary_prf([[]], [[]])
    assert out["precision"] == out["recall"] == out["f1"] == 0.0
    with pytest.raises(ValueError, match="utterances"):
        boundary_prf([[0.1]], [[0.1], [0.2]])


def test_boundary_matching_equals_brute_force_maximum():
    rng = random.Random(0)
    for _ in range(200):
        pred = [round(rng.uniform(0, 0.3), 3) for _ in range(rng.randint(0, 5))]
        ref = [round(rng.uniform(0, 0.3), 3) for _ in range(rng.randint(0, 5))]
        best = 0
        for perm in itertools.permutations(range(len(pred)), min(len(pred), len(ref))):
            for r_sel in itertools.combinations(range(len(ref)), len(perm)):
                best = max(best, sum(abs(pred[p] - ref[r]) <= 0.02 + 1e-9 for p, r in zip(perm, r_sel)))
        assert boundary_prf([pred], [ref])["n_hit"] == best


def test_spans_to_boundaries():
    assert spans_to_boundaries([(0.0, 0.4), (0.4, 0.9), (1.2, 1.5)]) == [0.0, 0.4, 0.9, 1.2, 1.5]
    assert spans_to_boundaries([(0.4, 0.9), (0.0, 0.4 + 1e-9)]) == [0.0, 0.4, 0.9]
    assert spans_to_boundaries([]) == []


# ------------------------------------------------------------------------------------ keyword spans
TOKENS = {"a": [320], "dog": [10], "running": [20, 21], "on": [525], "grass": [30]}
ALIGN = [("a", 0.0, 0.1), ("dog", 0.1, 0.4), ("running", 0.5, 0.9), ("on", 0.9, 1.0), ("grass", 1.0, 1.5)]
SPANS = [(0.15, 0.35), (0.45, 0.95), (0.2, 0.3), (0.4, 0.5), (0.1, 0.4)]
IDS = [10, 21, 30, 10, 49406]


def tokens(word: str) -> list[int]:
    return TOKENS[word]


@pytest.mark.parametrize(
    "mode, hits",
    [
        # overlap: kw0 inside "dog", kw1 over "running" (id 21 is its 2nd subword); kw2's id is "grass" but
        # the time is "dog"'s; kw3 only touches "dog" at 0.4; kw4 is SOT, never a hit
        ("overlap", 2),
        # contains (20 ms): kw1 covers "running" (0.45 <= 0.52, 0.95 >= 0.88); kw0 starts 50 ms into "dog"
        ("contains", 1),
        # within (20 ms): only kw0 lies inside its word
        ("within", 1),
    ],
)
def test_span_contains_word_hand_example(mode, hits):
    # four keywords occur in the transcript (SOT does not): the share is of those four
    rate = span_contains_word([SPANS], [IDS], [ALIGN], tokens, mode=mode, tolerance=0.02)
    assert rate == pytest.approx(hits / 4)
    # a keyword without a span (NaN) occurs but is never a hit
    rate = span_contains_word([SPANS + [(math.nan, math.nan)]], [IDS + [10]], [ALIGN], tokens, mode=mode)
    assert rate == pytest.approx(hits / 5)


def test_span_contains_word_pools_utterances_and_checks_inputs():
    rate = span_contains_word([SPANS, [(1.0, 1.4)]], [IDS, [30]], [ALIGN, ALIGN], tokens)
    assert rate == pytest.approx(3 / 5)
    with pytest.raises(ValueError, match="mode"):
        span_contains_word([SPANS], [IDS], [ALIGN], tokens, mode="near")
    with pytest.raises(ValueError, match="utterance 0"):
        span_contains_word([SPANS], [IDS[:2]], [ALIGN], tokens)
    with pytest.raises(ValueError, match="no keywords"):
        span_contains_word([[]], [[]], [ALIGN], tokens)


# ------------------------------------------------------------------------------------ corpus scores
def test_interior_boundaries_leave_the_utterance_edges_out():
    assert interior_boundaries([(0.0, 0.3), (0.3, 0.5), (0.6, 0.9)]) == [0.3, 0.5, 0.6]
    assert interior_boundaries([(0.0, 0.3)]) == []


def test_equal_spans():
    assert equal_spans([]) == []
    got = equal_spans([(0.5, 0.9), (0.1, 0.3), (0.2, 0.4)])  # any order, overlapping (attention spans)
    assert [a for span in got for a in span] == pytest.approx(
        [0.1, 0.1 + 0.8 / 3, 0.1 + 0.8 / 3, 0.1 + 1.6 / 3, 0.1 + 1.6 / 3, 0.9]
    )


def test_keyword_timing_scores_hand_example():
    words = [[("a", 0.00, 0.10), ("red", 0.10, 0.40), ("star", 0.40, 0.80)]]
    ids = {"a": [320], "red": [736], "star": [2634]}
    # units: "a" 0.00-0.11, "red" 0.11-0.45 (its end 50 ms late), "star" 0.45-0.80
    spans = [[(0.00, 0.11), (0.11, 0.45), (0.45, 0.80)]]
    out = keyword_timing_scores(spans, [[320, 736, 2634]], words, ids.__getitem__, tolerance=0.02)
    # interior boundaries: predicted 0.11, 0.45 against 0.10, 0.40: one hit
    assert (out["boundary_precision"], out["boundary_recall"], out["boundary_f1"]) == (50.0, 50.0, 50.0)
    assert out["over_segmentation"] == 0.0
    # three equal spans over 0.0-0.8 put boundaries at 0.267 and 0.533: no hit
    assert out["boundary_f1_equal"] == 0.0
    # "a" and "red" (0.11-0.45: starts 10 ms late, within the tolerance) contain their words; "star"
    # (0.45-0.80) starts 50 ms into its word: it only overlaps it
    assert out["span_contains_word"] == pytest.approx(200 / 3) and out["span_overlaps_word"] == 100.0
    assert out["mean_span"] == pytest.approx(0.8 / 3) and out["keywords"] == 3
    # a keyword whose span lies over another word does not count
    out = keyword_timing_scores([[(0.45, 0.80)]], [[736]], words, ids.__getitem__)
    assert out["span_contains_word"] == 0.0 and out["span_overlaps_word"] == 0.0


def test_keyword_timing_scores_chance_and_untimed_keywords_hand_computed():
    words = [[("a", 0.00, 0.10), ("red", 0.10, 0.40), ("star", 0.40, 0.80)]]
    ids = {"a": [320], "red": [736], "star": [2634]}
    # "red" heard over "star"; "a" covering "a"; "star" without a span; id 999 occurs in no word
    spans = [[(0.5, 0.7), (0.0, 0.2), (math.nan, math.nan), (0.3, 0.5)]]
    out = keyword_timing_scores(spans, [[736, 320, 2634, 999]], words, ids.__getitem__, tolerance=0.02)
    assert (out["keywords"], out["keywords_in_transcript"], out["timed"]) == (4, 3, 75.0)
    # of the three occurring keywords only "a" overlaps and contains its word
    assert out["span_overlaps_word"] == pytest.approx(100 / 3)
    assert out["span_contains_word"] == pytest.approx(100 / 3)
    # chance: a 0.2 s span starts uniformly in [0, 0.6]. It overlaps "red" (0.1-0.4) for starts in
    # [0, 0.4): 2/3; "a" (0-0.1) for [0, 0.1): 1/6. It contains "a" for starts in [0, 0.02]: 1/30,
    # and can never contain the 0.3 s "red". The untimed "star" counts 0.
    assert out["span_overlaps_word_chance"] == pytest.approx(100 * (2 / 3 + 1 / 6) / 3)
    assert out["span_contains_word_chance"] == pytest.approx(100 * (1 / 30) / 3)
    assert out["mean_span"] == pytest.approx(0.2) and out["mean_word"] == pytest.approx(0.8 / 3)
    # boundaries of the timed spans only: 0.2, 0.3, 0.5 against 0.1, 0.4
    assert out["boundary_f1"] == 0.0 and out["over_segmentation"] == pytest.approx(0.5)


def test_placement_chance_of_a_span_as_long_as_the_speech():
    words = [[("a", 0.0, 0.5), ("red", 0.5, 1.0)]]
    # a 1.0 s span can only start at 0: it overlaps and contains both words
    out = keyword_timing_scores([[(0.0, 1.0)]], [[736]], words, {"a": [320], "red": [736]}.__getitem__)
    assert out["span_overlaps_word_chance"] == 100.0 and out["span_contains_word_chance"] == 100.0
