"""Span rules on constructed attention, scored against a known word alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from espnet_speechclip.evaluation.keyword_spans import attention_spans, peak_ratio, peak_spans
from espnet_speechclip.evaluation.keyword_timing import keyword_timing_scores

RATE = 10.0  # frames per second: frame t covers [t / 10, (t + 1) / 10)
WORDS = [("a", 0.0, 0.2), ("red", 0.2, 0.6), ("star", 0.6, 1.2), ("on", 1.2, 1.4), ("grass", 1.4, 2.0)]
TOKENS = {"a": [320], "red": [736], "star": [2634], "on": [525], "grass": [3313]}


def peaked(frames: dict[int, float], t: int = 20, floor: float = 0.01) -> np.ndarray:
    """(T,) weights: ``floor`` everywhere, the given frames raised (a softmax's long low tail)."""
    row = np.full(t, floor)
    for i, w in frames.items():
        row[i] = w
    return row


def test_a_peaked_attention_gives_the_peaks_word():
    # "star" (frames 6-11) gets the peak; the low tail elsewhere holds 23 % of the mass
    star = peaked({6: 0.5, 7: 0.9, 8: 1.0, 9: 1.0, 10: 0.8, 11: 0.6}, floor=0.1)
    att = np.stack([star, peaked({3: 0.4, 4: 1.0})])
    spans = peak_spans(att, RATE)
    # row 0: frames >= half the peak around it are 6..11; row 1: 0.4 < 0.5 stops it at frame 4
    assert spans == pytest.approx(np.array([[0.6, 1.2], [0.4, 0.5]]))
    out = keyword_timing_scores([spans], [[2634, 736]], [WORDS], TOKENS.__getitem__)
    assert out["span_contains_word"] == 50.0 and out["span_overlaps_word"] == 100.0
    # the central 90 % of the mass must also cover much of the tail: frames 3..16, over twice the word
    assert attention_spans(att[:1], RATE, mass=0.9)[0] == pytest.approx((0.3, 1.7))


def test_a_flat_attention_has_no_confident_span_and_says_so():
    att = np.stack([np.ones(20), peaked({8: 1.0})])
    assert peak_ratio(att) == pytest.approx([1.0, 20 / (1 + 19 * 0.01)])
    spans = peak_spans(att, RATE)
    assert np.isnan(spans[0]).all() and spans[1] == pytest.approx([0.8, 0.9])
    # untimed keywords count as keywords, never as hits, and not in the mean span
    out = keyword_timing_scores([spans], [[2634, 2634]], [WORDS], TOKENS.__getitem__)
    assert out["timed"] == 50.0 and out["mean_span"] == pytest.approx(0.1)
    # without a confidence floor a flat row spans every frame
    assert peak_spans(att[:1], RATE, min_ratio=0.0) == pytest.approx(np.array([[0.0, 2.0]]))


def test_peak_spans_take_the_larger_peak_and_stop_at_a_valley():
    row = peaked({2: 0.6, 3: 0.7, 4: 0.2, 5: 0.9, 6: 1.0, 7: 0.55, 8: 0.3})
    # the run around frame 6 (>= 0.5): 5..7; frame 4 (0.2) separates it from the 2-3 bump
    assert peak_spans([row], RATE, offset=0.05) == pytest.approx(np.array([[0.55, 0.85]]))
    assert peak_spans([row], RATE, share=1.0) == pytest.approx(np.array([[0.6, 0.7]]))
    # a peak at the edge
    assert peak_spans([peaked({0: 1.0, 1: 0.8})], RATE) == pytest.approx(np.array([[0.0, 0.2]]))


def test_attention_spans_hand_example():
    att = np.array([[0.0, 0.1, 0.4, 0.4, 0.1, 0.0], [2.0, 0.0, 0.0, 0.0, 0.0, 2.0]])  # rows normalised
    # row 0: P = 0, .1, .5, .9, 1, 1. X = 0.8 -> lo .1, hi .9 -> frames 2..3 -> [0.04, 0.08) at 50 Hz
    # row 1: P = .5, .5, .5, .5, .5, 1 -> frames 0..5 (the central 80% straddles the silent middle)
    spans = attention_spans(att, frame_rate=50, mass=0.8)
    assert spans == [pytest.approx((0.04, 0.08)), pytest.approx((0.0, 0.12))]
    assert attention_spans(att[:1], frame_rate=50, mass=1.0, offset=0.0125) == [
        pytest.approx((0.0325, 0.1125))
    ]
    assert attention_spans([[0, 0, 1.0, 0]], 50, mass=0.5) == [pytest.approx((0.04, 0.06))]


@pytest.mark.parametrize("rule", [peak_spans, attention_spans])
def test_span_rules_reject_bad_input(rule):
    with pytest.raises(ValueError, match="sums to 0"):
        rule([[0.0, 0.0]], 50)
    with pytest.raises(ValueError, match=r"\(K, T\)"):
        rule([1.0, 2.0], 50)
    with pytest.raises(ValueError, match="non-negative"):
        rule([[1.0, -1.0, 1.0]], 50)
    with pytest.raises(ValueError, match="frame_rate"):
        rule([[1.0]], 0)
    with pytest.raises(ValueError, match="mass"):
        attention_spans([[1.0]], 50, mass=0.0)
    with pytest.raises(ValueError, match="share"):
        peak_spans([[1.0]], 50, share=0.0)
    # a single frame is an even spread too: no confident span
    assert math.isnan(float(peak_spans([[1.0]], 50)[0, 0]))
