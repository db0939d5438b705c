"""Span rules on constructed attention, scored against a known word alignment."""

from __future__ import annotations

import math

import numpy as np
import pytest

from espnet_speechclip.evaluation.keyword_spans import (
    attention_spans,
    box_weights,
    change_boundaries,
    energy_dips,
    occlusion_spans,
    peak_ratio,
    peak_spans,
    segment_spans,
    segment_windows,
    unit_segment_spans,
)
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


def word_features(hop: float = 0.01) -> np.ndarray:
    """(200, 3) features of the WORDS alignment: constant within each word, a different level per word,
    so the spectrum changes exactly at the word boundaries (0.2, 0.6, 1.2, 1.4 s)."""
    levels = [(0, 0, 0), (4, 0, 0), (0, 4, 0), (0, 0, 4), (4, 4, 0)]
    rows = [levels[i] for i, (_, s, e) in enumerate(WORDS) for _ in range(round((e - s) / hop))]
    return np.array(rows, dtype=float)


def test_change_boundaries_find_the_word_boundaries_of_a_constructed_signal():
    f = word_features()
    # five segments wanted (2.0 s / 0.4 s): the four changes, at the words' boundaries (the log energy
    # log(e^a + e^b + e^c) only rises or falls at each boundary: no dip, the spectral change decides)
    assert change_boundaries(f, 0.01, seconds_per_segment=0.4) == pytest.approx([0, 0.2, 0.6, 1.2, 1.4, 2.0])
    # the largest change comes first (1.4 s: |(0,0,4) - (4,4,0)| = 6.9 > 5.7 at 0.6 and 1.2 > 4 at 0.2);
    # boundaries 30 rows apart and from the ends keep 1.4, then 0.6, and drop 1.2 (too near) and 0.2
    assert change_boundaries(f, 0.01, seconds_per_segment=0.4, min_gap=30) == pytest.approx(
        [0, 0.6, 1.4, 2.0]
    )
    # fewer segments wanted: the largest change only
    assert change_boundaries(f, 0.01, seconds_per_segment=1.0) == pytest.approx([0, 1.4, 2.0])
    # one flat row: one segment
    assert change_boundaries(np.zeros((5, 2)), 0.01) == pytest.approx([0, 0.05])
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        change_boundaries(np.zeros(5), 0.01)
    with pytest.raises(ValueError, match="energy_weight"):
        change_boundaries(f, 0.01, energy_weight=-1.0)


def test_energy_dips_hand_example():
    # one band: the log energy is the row itself; row 3 lies 3 below its surroundings
    e = np.array([0.0, 0, 0, -3, 0, 0, 1, 1])
    # point t lies between rows t-1 and t: min(max e[t-2:t], max e[t:t+2]) - min(e[t-1], e[t]), >= 0;
    # t=3 and 4 border the quiet row (0 - (-3)); t=7: min(1, 1) - 1 = 0; both ends 0
    assert energy_dips(e[:, None], window=2).tolist() == [0, 0, 0, 3, 3, 0, 0, 0, 0]
    # two equal bands: log(2 e^x) = x + log 2, the same valleys (log-sum-exp over the bands)
    assert energy_dips(np.stack([e, e], 1), window=2) == pytest.approx([0, 0, 0, 3, 3, 0, 0, 0, 0])
    # log spectra of silence (-50) do not underflow to -inf
    assert energy_dips(np.full((4, 3), -50.0), window=2) == pytest.approx([0] * 5)


def test_change_boundaries_cut_where_the_energy_dips():
    # 1.0 s at 10 ms: the spectrum's shape changes at 0.4 s ((0,0) -> (0,1): change 1.0, the largest);
    # row 70 is 2 quieter in both bands, a valley of depth log(1+e) - log(e^-2+e^-1) = 2.0 at points 70
    # and 71, where the spectral change is only 0.94 (|(0,1) - (-2/3,1/3)|)
    f = np.array([(0.0, 0.0)] * 40 + [(0.0, 1.0)] * 60)
    f[70] -= 2.0
    assert energy_dips(f)[[40, 70, 71]] == pytest.approx([0.0, 2.0, 2.0])
    # one boundary wanted: the spectrum alone takes the change at 0.4 s; with the dips, standardised
    # (2.0 stands ~7 standard deviations out of the zeros), the valley wins, its first point (0.7 s)
    assert change_boundaries(f, 0.01, seconds_per_segment=0.5, energy_weight=0.0) == pytest.approx(
        [0, 0.4, 1.0]
    )
    assert change_boundaries(f, 0.01, seconds_per_segment=0.5) == pytest.approx([0, 0.7, 1.0])


def test_segment_spans_cover_the_peaks_whole_word():
    bounds = [0.0, 0.2, 0.6, 1.2, 1.4, 2.0]  # the WORDS alignment, as change_boundaries found it
    # keyword 0 peaks on frame 8 (inside "star") and is low elsewhere in the word: the span is still the
    # whole word, where the half-maximum run (peak_spans) is the one frame
    star = peaked({8: 1.0, 7: 0.3, 9: 0.3})
    # keyword 1 peaks in "red" with "star" holding more than half its weight per frame: both joined
    red = peaked({2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 0.6, 7: 0.6, 8: 0.6, 9: 0.6, 10: 0.6, 11: 0.6})
    spans = segment_spans(np.stack([star, red, np.ones(20)]), bounds, RATE, share=0.3, neighbours=0)
    assert spans[:2] == pytest.approx(np.array([[0.6, 1.2], [0.2, 1.2]]))
    assert np.isnan(spans[2]).all()  # flat: no confident peak, no span
    assert peak_spans(star[None], RATE) == pytest.approx(np.array([[0.8, 0.9]]))
    out = keyword_timing_scores([spans[:2]], [[2634, 736]], [WORDS], TOKENS.__getitem__)
    assert out["span_contains_word"] == 100.0 and out["boundary_f1"] > 0
    # share 1: only the peak's segment
    assert segment_spans([red], bounds, RATE, share=1.0, neighbours=0) == pytest.approx(
        np.array([[0.2, 0.6]])
    )
    with pytest.raises(ValueError, match="increasing"):
        segment_spans([red], [0.0, 0.0, 2.0], RATE)
    with pytest.raises(ValueError, match="neighbours"):
        segment_spans([red], bounds, RATE, neighbours=-1)


def test_segment_spans_take_a_segment_either_side_of_the_peaks():
    # syllable-sized cuts: "red" is [0.2, 0.4) + [0.4, 0.6), "star" [0.6, 0.9) + [0.9, 1.2)
    bounds = [0.0, 0.2, 0.4, 0.6, 0.9, 1.2, 1.4, 2.0]
    # the peak on frame 4 (the end of "red"'s first half) -> its segment [0.4, 0.6) and one either
    # side: [0.2, 0.9); the peak on frame 6, the first frame of "star": [0.4, 1.2), all of "star" and
    # the half of "red" before it; the peak on frame 0: no segment before the first, [0.0, 0.4)
    rows = np.stack([peaked({4: 1.0}), peaked({6: 1.0}), peaked({0: 1.0})])
    spans = segment_spans(rows, bounds, RATE, neighbours=1)  # share 1: the peak's segment
    assert spans == pytest.approx(np.array([[0.2, 0.9], [0.4, 1.2], [0.0, 0.4]]))
    # two neighbours: [0.2, 1.4)
    assert segment_spans(rows[1:2], bounds, RATE, neighbours=2) == pytest.approx(np.array([[0.2, 1.4]]))
    assert segment_spans(rows[1:2], bounds, RATE) == pytest.approx(np.array([[0.6, 0.9]]))  # none
    # scored: [0.2, 0.9) contains "red" [0.2, 0.6) and [0.4, 1.2) "star" [0.6, 1.2)
    out = keyword_timing_scores([spans[:2]], [[736, 2634]], [WORDS], TOKENS.__getitem__)
    assert out["span_contains_word"] == 100.0
    assert out["mean_span"] == pytest.approx((0.7 + 0.8) / 2)


def test_segment_spans_start_from_given_peaks():
    bounds = [0.0, 0.2, 0.6, 1.2, 1.4, 2.0]
    # the largest frame (4) lies in "red" [0.2, 0.6), most of the weight in "star" [0.6, 1.2)
    row = peaked({4: 1.0, 6: 0.9, 7: 0.9, 8: 0.9, 9: 0.9, 10: 0.9, 11: 0.9})
    # from frame 4: "star" holds more per frame than "red" and joins; from frame 8: "red" holds less
    assert segment_spans([row], bounds, RATE) == pytest.approx(np.array([[0.2, 1.2]]))
    assert segment_spans([row], bounds, RATE, peaks=[8]) == pytest.approx(np.array([[0.6, 1.2]]))
    with pytest.raises(ValueError, match="peaks"):
        segment_spans([row], bounds, RATE, peaks=[20])


def test_box_weights_snap_a_cif_unit_onto_the_segments_it_covers():
    # unit 0 integrated frames 6.5..11.5 (most of "star"); unit 1 is a zero-length unit at frame 3.2
    w = box_weights(np.array([[6.5, 11.5], [3.2, 3.2]]), 20)
    assert w[0, 6] == pytest.approx(0.5) and w[0, 7:11].tolist() == [1, 1, 1, 1] and w[0, 12] == 0
    assert w[1].tolist() == [0, 0, 0, 1] + [0] * 16
    spans = segment_spans(w, [0.0, 0.2, 0.6, 1.2, 1.4, 2.0], RATE, share=0.3, min_ratio=0.0, neighbours=0)
    assert spans == pytest.approx(np.array([[0.6, 1.2], [0.2, 0.6]]))


def test_unit_segment_spans_snap_every_cif_unit_onto_the_segments_it_covers():
    # 50 frames a second; cuts at 0.2, 0.6, 1.2, 1.4 s. Unit 0 integrated frames 30.5..58.5 (0.61-1.17 s:
    # the segment 0.6-1.2 s), unit 1 frames 9..31 (0.18-0.62 s: mostly 0.2-0.6 s, and the 0.6-1.2 s
    # segment holds under 0.3 of its weight per frame), unit 2 is a zero-length unit at frame 62.
    cuts = [0.0, 0.2, 0.6, 1.2, 1.4, 2.0]
    units = np.array([[30.5, 58.5], [9.0, 31.0], [62.0, 62.0]])
    spans = unit_segment_spans(units, 100, cuts, 50.0)
    assert spans == pytest.approx(np.array([[0.6, 1.2], [0.2, 0.6], [1.2, 1.4]]))
    assert not np.isnan(spans).any()  # every unit gets a span


# syllable-sized cuts of the WORDS alignment: "star" [0.6, 1.2) is [0.6, 0.9) + [0.9, 1.2)
SYLLABLES = [0.0, 0.2, 0.4, 0.6, 0.9, 1.2, 1.4, 1.7, 2.0]


def test_segment_windows_are_runs_of_consecutive_segments():
    inside, times = segment_windows(SYLLABLES, 20, RATE, segments=2)
    assert times == pytest.approx(
        np.array([[0, 0.4], [0.2, 0.6], [0.4, 0.9], [0.6, 1.2], [0.9, 1.4], [1.2, 1.7], [1.4, 2.0]])
    )
    # frame t's centre is (t + 0.5) / 10 s: the stretch [0.6, 1.2) holds frames 6-11
    assert np.flatnonzero(inside[3]).tolist() == [6, 7, 8, 9, 10, 11]
    assert inside.shape == (7, 20) and inside.sum(axis=0).tolist() == [1, 1] + [2] * 15 + [1, 1, 1]
    # a segment holding no frame centre ([0.6, 0.64)) is skipped over: two stretches, not three, and
    # its time lies inside the one around it
    _, times = segment_windows([0.0, 0.6, 0.64, 1.2, 2.0], 20, RATE, segments=2)
    assert times == pytest.approx(np.array([[0.0, 1.2], [0.64, 2.0]]))
    # fewer segments than a stretch takes: one stretch, all of it
    inside, times = segment_windows([0.0, 0.9, 2.0], 20, RATE)
    assert inside.all() and times == pytest.approx(np.array([[0.0, 2.0]]))
    with pytest.raises(ValueError, match="segments"):
        segment_windows(SYLLABLES, 20, RATE, segments=0)


def toy_cosines(word_frames, inside):
    """A toy keyword read from the frames of one word: its cosine with its subword is the share of the
    word's frames it sees (0.5 for a keyword read from everywhere alike, ``word_frames`` None)."""
    seen = ~inside
    if word_frames is None:
        return 0.5, np.full(len(inside), 0.5), np.full(len(inside), 0.5)
    share_in = inside[:, word_frames].mean(axis=1)  # (W,) of the word inside each stretch
    return 1.0, share_in, seen[:, word_frames].mean(axis=1)


def test_occlusion_spans_find_the_stretch_a_keyword_is_read_from():
    inside, times = segment_windows(SYLLABLES, 20, RATE, segments=2)
    star, red, flat = (toy_cosines(w, inside) for w in (list(range(6, 12)), [2, 3, 4, 5], None))
    full = [c[0] for c in (star, red, flat)]
    kept = np.stack([c[1] for c in (star, red, flat)], axis=1)  # (W, K)
    removed = np.stack([c[2] for c in (star, red, flat)], axis=1)
    spans = occlusion_spans(full, kept, removed, times)
    # "star": only [0.6, 1.2) holds all of it (kept 1, removed 0: score 2); "red" [0.2, 0.6) likewise
    assert spans[:2] == pytest.approx(np.array([[0.6, 1.2], [0.2, 0.6]]))
    # read from everywhere alike: every stretch scores the same, no confident span, and it says so
    assert np.isnan(spans[2]).all()
    out = keyword_timing_scores([spans], [[2634, 736, 3313]], [WORDS], TOKENS.__getitem__)
    assert out["span_contains_word"] == pytest.approx(200 / 3) and out["timed"] == pytest.approx(200 / 3)
    # scores by hand for "star": stretch [0.4, 0.9) holds frames 4-8, 3 of its 6 -> 0.5 + (1 - 0.5) = 1;
    # the median of (0, 0, 1, 2, 1, 0, 0) is 0, so its contrast is 2; a floor above it leaves no span
    assert np.isnan(occlusion_spans(full[:1], kept[:, :1], removed[:, :1], times, min_contrast=2.5)).all()
    assert occlusion_spans(full[:1], kept[:, :1], removed[:, :1], times, min_contrast=2.0) == pytest.approx(
        np.array([[0.6, 1.2]])
    )
    # one stretch only: nothing to compare it with
    assert np.isnan(occlusion_spans([1.0], [[1.0]], [[0.0]], [[0.0, 2.0]], min_contrast=0.0)).all()


def test_occlusion_spans_refuse_bad_input():
    with pytest.raises(ValueError, match="kept and removed"):
        occlusion_spans([1.0], [[1.0, 0.0]], [[0.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="times"):
        occlusion_spans([1.0], [[1.0]], [[0.0]], [[0.0, 1.0], [1.0, 2.0]])
    with pytest.raises(ValueError, match="finite"):
        occlusion_spans([float("nan")], [[1.0]], [[0.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="min_contrast"):
        occlusion_spans([1.0], [[1.0]], [[0.0]], [[0.0, 1.0]], min_contrast=-1)
