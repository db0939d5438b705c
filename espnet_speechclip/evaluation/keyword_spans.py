"""Where in an utterance a keyword was heard: span rules, from a keyword's weights over the frames.

Pure functions: arrays in, spans (seconds) out; nothing here imports a model. Time convention as in
:mod:`espnet_speechclip.evaluation.keyword_timing`: frame t at ``frame_rate`` covers
[offset + t / frame_rate, offset + (t + 1) / frame_rate).

- :func:`peak_spans` (the rule inference uses for K-token cascaded and hybrid models): the run of frames
  around the attention peak whose weight stays above half the peak's, or NO span (NaN) when the peak
  does not stand out of an even spread (a keyword that attends everywhere was heard nowhere in
  particular). On the built-in corpus' test set this localises the word a keyword names; the
  central 90 % of the attention mass (:func:`attention_spans`, the rule before it) spans most of the
  utterance, because a softmax over all frames leaves a long, low tail that the mass rule must cover.
- :func:`attention_spans`: the frames holding the central X % of a keyword's attention mass (kept for
  comparison and for callers that want a mass guarantee).
- :func:`unit_peak_spans` (CIF models, cascaded+ / hybrid+): the peak rule applied to each unit's
  integration weights within its firing boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from espnet_speechclip.errors import InputError

__all__ = ["PEAK_SHARE", "MIN_PEAK_RATIO", "attention_spans", "peak_ratio", "peak_spans"]

# A frame belongs to a keyword's span while its weight is at least this share of the peak's (the
# half-maximum width of a peak): measured on the built-in corpus, see the README's keyword timing.
PEAK_SHARE = 0.5
# A keyword has a span only when its peak weight is at least this many times the weight an even spread
# over the utterance's frames would give (1 / T): a flat attention has ratio 1 and no confident peak.
MIN_PEAK_RATIO = 2.0


def _rows(attention: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(K, T) non-negative finite weights, each row normalised to sum 1 (ValueError otherwise)."""
    att = np.asarray(attention, dtype=np.float64)
    if att.ndim != 2:
        raise InputError(f"attention must be (K, T), got shape {att.shape}")
    if not np.isfinite(att).all() or (att < 0).any():
        raise InputError("attention weights must be finite and non-negative")
    sums = att.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise InputError("every keyword needs some attention on the frames (a row sums to 0)")
    return att / sums


def _check_rate(frame_rate: float) -> None:
    if frame_rate <= 0:
        raise InputError(f"frame_rate must be positive, got {frame_rate}")


def peak_ratio(attention: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """(K, T) weights -> (K,) each row's peak weight over the weight of an even spread, max_t a_t * T
    (rows normalised first): 1 for a flat row, T for all weight on one frame."""
    att = _rows(attention)
    return att.max(axis=1) * att.shape[1]


def peak_spans(
    attention: np.ndarray | Sequence[Sequence[float]],
    frame_rate: float,
    offset: float = 0.0,
    share: float = PEAK_SHARE,
    min_ratio: float = MIN_PEAK_RATIO,
) -> np.ndarray:
    """Per keyword, the frames around its attention peak, or NaN where it has no confident peak.

    Args:
        attention: (K, T) non-negative weights of K keywords over the utterance's T frames (padding cut
            off); each row is normalised to sum 1 here.
        frame_rate: frames per second.
        offset: seconds added to every time.
        share: a frame joins the span while its weight is >= ``share`` x the peak weight, in (0, 1].
        min_ratio: a keyword gets a span only when its peak weight is >= ``min_ratio`` / T
            (:func:`peak_ratio`); 0 gives every keyword a span.

    Returns:
        (K, 2) float64 (start, end) seconds. With p the first frame of largest weight, the span is the
        longest run of frames p0..p1 holding p with every weight >= share * a_p:
        [offset + p0 / rate, offset + (p1 + 1) / rate). A row whose peak ratio is below ``min_ratio``
        gets (NaN, NaN): no confident span. Frame granular: it never splits a frame.
    """
    att = _rows(attention)
    _check_rate(frame_rate)
    if not 0 < share <= 1:
        raise InputError(f"share must be in (0, 1], got {share}")
    if min_ratio < 0:
        raise InputError(f"min_ratio must be >= 0, got {min_ratio}")
    spans = np.full((att.shape[0], 2), np.nan)
    ratio = att.max(axis=1) * att.shape[1]
    for k, row in enumerate(att):
        if ratio[k] < min_ratio:
            continue
        p = int(np.argmax(row))
        # 1e-12 slack: a frame of exactly share * peak joins despite float rounding of the division
        above = row >= share * row[p] - 1e-12
        p0 = p
        while p0 > 0 and above[p0 - 1]:
            p0 -= 1
        p1 = p
        while p1 + 1 < len(row) and above[p1 + 1]:
            p1 += 1
        spans[k] = (offset + p0 / frame_rate, offset + (p1 + 1) / frame_rate)
    return spans


def attention_spans(
    attention: np.ndarray | Sequence[Sequence[float]],
    frame_rate: float,
    mass: float = 0.9,
    offset: float = 0.0,
) -> list[tuple[float, float]]:
    """Per keyword, the time span of the frames holding the central ``mass`` of its attention.

    Args:
        attention: (K, T) non-negative attention weights of K keyword (CLS) queries over the T speech
            frames only (slice the CLS keys off; padded frames should be 0). Each row is normalised to sum
            1 here.
        frame_rate: frames per second (50 for HuBERT).
        mass: X, the central share of attention to cover, in (0, 1].
        offset: seconds added to every time.

    Returns:
        K (start, end) spans in seconds. With P_t the cumulative attention of frames 0..t and
        lo = (1 - X) / 2, hi = 1 - lo, the span runs from the first frame with P_t > lo to the first frame
        with P_t >= hi, both included: [offset + t_lo / rate, offset + (t_hi + 1) / rate). X = 1 gives the
        span from the first to the last frame with non-zero attention. Frame granular: it never splits a
        frame. (A 1e-9 slack on lo and hi keeps float rounding of the cumulative sum from moving a span.)
    """
    att = _rows(attention)
    if not 0 < mass <= 1:
        raise InputError(f"mass must be in (0, 1], got {mass}")
    _check_rate(frame_rate)
    cum = np.cumsum(att, axis=1)  # (K, T)
    lo = (1.0 - mass) / 2
    hi = 1.0 - lo
    spans = []
    for row in cum:
        start = int(np.flatnonzero(row > lo + 1e-9)[0])
        end = max(int(np.flatnonzero(row >= hi - 1e-9)[0]), start)
        spans.append((offset + start / frame_rate, offset + (end + 1) / frame_rate))
    return spans
