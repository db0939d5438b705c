"""Where in an utterance a keyword was heard: span rules, from a keyword's weights over the frames.

Pure functions: arrays in, spans (seconds) out; nothing here imports a model. Time convention as in
:mod:`espnet_speechclip.evaluation.keyword_timing`: frame t at ``frame_rate`` covers
[offset + t / frame_rate, offset + (t + 1) / frame_rate).

- :func:`peak_spans` (the measured alternative to :func:`segment_spans`, kept for comparison): the run of
  frames around the attention peak whose weight stays above half the peak's, or NO span (NaN) when the peak
  does not stand out of an even spread (a keyword that attends everywhere was heard nowhere in
  particular). On the built-in corpus' test set its peak falls on the keyword's word more often than
  chance; the central 90 % of the attention mass (:func:`attention_spans`, the rule before it) spans
  most of the utterance, because a softmax over all frames leaves a long, low tail that the mass rule
  must cover.
- :func:`attention_spans`: the frames holding the central X % of a keyword's attention mass (kept for
  comparison and for callers that want a mass guarantee).
- :func:`change_boundaries`: an unsupervised segmentation of the utterance from its signal into
  syllable- to word-sized pieces: the points where the spectrum changes most or the energy dips
  (:func:`energy_dips`), a GradSeg-like peak picking with a segments-per-second target. No transcript
  is used.
- :func:`segment_windows` and :func:`occlusion_spans` (the rule inference uses for K-token cascaded and
  hybrid models): every stretch of ``SPAN_SEGMENTS`` consecutive segments is a candidate span; the model
  reads each keyword once from the stretch alone and once from the utterance without it
  (:meth:`CascadedBranch.keyword_cosines`), and the keyword's span is the stretch where keeping it alone
  keeps the keyword closest to its subword and removing it moves the keyword furthest away. A keyword
  whose best stretch does not stand out of the others by ``MIN_CONTRAST`` has no span. Occlusion asks
  the model where the keyword comes from instead of reading it off one frame's gradient: on the built-in
  corpus' dev set the input x gradient saliency peak lies in the keyword's own word for 78 % of
  keywords, and the segments around it (the rule before) overlap / contain the word for 84 / 62 % of
  keywords, where occlusion stretches of the same mean length (0.46 s) reach 93.5 / 71 % (see the
  README's keyword timing).
- :func:`segment_spans`: the segment holding a weight's peak, joined with neighbouring segments that
  hold at least a share of its weight per frame (and optionally more neighbours): CIF units go through it.
- :func:`box_weights`: each CIF unit (cascaded+ / hybrid+) as an even weight over its firing interval;
  :func:`unit_segment_spans` (the rule inference uses for CIF models) snaps a unit through it and
  :func:`segment_spans` (with ``neighbours=0``: a unit's interval already spans its word) onto the
  segments it covers. The firing intervals themselves score at chance as word spans (see the README).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from espnet_speechclip.errors import InputError

__all__ = [
    "PEAK_SHARE",
    "MIN_PEAK_RATIO",
    "SECONDS_PER_SEGMENT",
    "SEGMENT_MIN_GAP",
    "SPAN_SEGMENTS",
    "MIN_CONTRAST",
    "CHANGE_WINDOW",
    "ENERGY_WEIGHT",
    "ENERGY_WINDOW",
    "attention_spans",
    "box_weights",
    "change_boundaries",
    "energy_dips",
    "peak_ratio",
    "peak_spans",
    "occlusion_spans",
    "segment_spans",
    "segment_windows",
    "unit_segment_spans",
]

# A frame belongs to a keyword's span while its weight is at least this share of the peak's (the
# half-maximum width of a peak): measured on the built-in corpus, see the README's keyword timing.
PEAK_SHARE = 0.5
# A keyword has a span only when its peak weight is at least this many times the weight an even spread
# over the utterance's frames would give (1 / T): a flat attention has ratio 1 and no confident peak.
MIN_PEAK_RATIO = 2.0
# change_boundaries cuts an utterance into about one segment per SECONDS_PER_SEGMENT, at least
# SEGMENT_MIN_GAP feature rows (10 ms each for log_mel) apart, where the spectral change (mean spectra
# CHANGE_WINDOW rows either side) plus ENERGY_WEIGHT x the energy dip (valleys against the loudest rows
# ENERGY_WINDOW rows either side), each standardised, peaks. Chosen on the built-in corpus' DEV set
# (mean word 0.24 s): adding the energy dips puts 53 % of the word boundaries within 20 ms of a cut
# instead of 44 % (as many cuts either way, one per 0.2 s; 68 % with the cuts per 0.14 s used).
SECONDS_PER_SEGMENT = 0.14
SEGMENT_MIN_GAP = 5
CHANGE_WINDOW = 3
ENERGY_WEIGHT = 2.0
ENERGY_WINDOW = 20
# A K-token keyword's span is SPAN_SEGMENTS consecutive segments (:func:`segment_windows`), and only
# when its best stretch's score beats the median stretch's by MIN_CONTRAST (cosine units: keeping the
# stretch alone and removing it together move the keyword that much more than a typical stretch does;
# a keyword the model reads from everywhere alike scores 0). Chosen on the built-in corpus' DEV set of
# the default cascaded model, among 0.10-0.20 s per segment, stretches of 1-4 segments (and stretches
# grown while the score rises, or of any length with a duration penalty), and deletion, keeping or both:
# the most spans containing their word with the mean span under twice the mean word (dev: 71.1 %
# contained, 93.5 % overlapping, mean span 0.46 s). Containing more costs length nearly one for one:
# 0.15 s segments contain 73.8 % with a mean span of 0.49 s. A contrast of 0.05 leaves 99.7 % of the
# dev set's keywords a span (the lowest 1 % of contrasts is 0.08).
SPAN_SEGMENTS = 3
MIN_CONTRAST = 0.05
# A CIF unit (cascaded+ / hybrid+) is snapped onto segments of one per CIF_SECONDS_PER_SEGMENT (cuts at
# least CIF_SEGMENT_MIN_GAP rows apart): the segment holding the unit's middle, joined with neighbours
# holding at least CIF_SEGMENT_SHARE as much per frame (:func:`unit_segment_spans`). Chosen on the DEV
# set of a cascaded+ model trained on the built-in corpus, among 0.14 / 0.2 s and 0 / 1 extra
# neighbours: the highest boundary F1 with the mean span under twice the mean word (test set: boundary
# F1 44.1 against chance 13.2, where the firing intervals score 15.0 against 13.4). See the README.
CIF_SECONDS_PER_SEGMENT = 0.2
CIF_SEGMENT_MIN_GAP = 6
CIF_SEGMENT_SHARE = 0.3


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


def _run_around(values: np.ndarray, i: int, share: float) -> tuple[int, int]:
    """(N,) values, an index i -> the longest run i0..i1 holding i with every value >= share * values[i]
    (1e-12 slack: a value of exactly share * values[i] joins despite float rounding)."""
    above = values >= share * values[i] - 1e-12
    i0 = i1 = i
    while i0 > 0 and above[i0 - 1]:
        i0 -= 1
    while i1 + 1 < len(values) and above[i1 + 1]:
        i1 += 1
    return i0, i1


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
        p0, p1 = _run_around(row, int(np.argmax(row)), share)
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


def _zscore(values: np.ndarray) -> np.ndarray:
    """(N,) -> (values - mean) / std; all zeros for a constant input (no point stands out)."""
    std = values.std()
    return (values - values.mean()) / std if std > 0 else np.zeros_like(values)


def energy_dips(features: np.ndarray, window: int = ENERGY_WINDOW) -> np.ndarray:
    """(N, D) log spectra -> (N + 1,) how deep an energy valley each point between two rows lies in: at
    point t (between rows t - 1 and t), with e_j = log sum_d exp(f_jd) row j's log energy, how far the
    quieter of rows t - 1 and t lies below the lower of the loudest rows within ``window`` rows on either
    side, min(max e[t-window:t], max e[t:t+window]) - min(e[t-1], e[t]), clipped at 0; 0 at both ends
    (points 0 and N). Words in running speech often meet in such a valley (a stop's closure, a weak
    onset) where the spectrum's shape hardly changes."""
    f = np.asarray(features, dtype=np.float64)
    peak = f.max(axis=1, keepdims=True)  # log-sum-exp, stable for very negative log spectra
    e = peak[:, 0] + np.log(np.exp(f - peak).sum(axis=1))
    n = len(e)
    dips = np.zeros(n + 1)
    for t in range(1, n):
        rim = min(e[max(t - window, 0) : t].max(), e[t : t + window].max())
        dips[t] = max(0.0, rim - min(e[t - 1], e[t]))
    return dips


def change_boundaries(
    features: np.ndarray,
    hop: float,
    seconds_per_segment: float = SECONDS_PER_SEGMENT,
    window: int = CHANGE_WINDOW,
    min_gap: int = SEGMENT_MIN_GAP,
    energy_weight: float = ENERGY_WEIGHT,
    energy_window: int = ENERGY_WINDOW,
) -> np.ndarray:
    """Unsupervised segmentation into syllable- to word-sized pieces, cut where the spectrum changes most
    or the energy dips.

    Args:
        features: (N, D) per-hop log spectra of one utterance (e.g. log-mel, 10 ms hops); row j covers
            time j * hop.
        hop: seconds per row.
        seconds_per_segment: the utterance gets round(N * hop / this) segments (at least 1).
        window: the spectral change at point j is the distance between the mean of rows j-window..j-1
            and of rows j..j+window-1.
        min_gap: chosen boundaries are at least this many rows apart and from either end.
        energy_weight: weight of the energy valleys (:func:`energy_dips`) against the spectral change;
            0 segments on the spectral change alone.
        energy_window: rows either side that :func:`energy_dips` compares a row with.

    Returns:
        (S + 1,) float64 sorted boundary times in seconds, from 0 to N * hop: segment i is
        [b_i, b_{i+1}). A point's score is z(change) + energy_weight * z(dip), each standardised over the
        utterance's interior points so that the two add in the same units; boundaries are the local
        maxima of the score at points with some change or dip, largest first, as long as they keep
        ``min_gap``; fewer than S - 1 when too few maxima qualify.
    """
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or len(f) == 0:
        raise InputError(f"features must be (N, D) with N > 0, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise InputError("features must be finite")
    if hop <= 0 or seconds_per_segment <= 0 or window < 1 or min_gap < 1 or energy_window < 1:
        raise InputError("hop and seconds_per_segment must be positive, windows and min_gap >= 1")
    if energy_weight < 0:
        raise InputError(f"energy_weight must be >= 0, got {energy_weight}")
    n = len(f)
    # prefix sums give every window mean in O(N D)
    cum = np.vstack([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])
    j = np.arange(1, n)
    lo, hi = np.maximum(j - window, 0), np.minimum(j + window, n)
    left = (cum[j] - cum[lo]) / (j - lo)[:, None]
    right = (cum[hi] - cum[j]) / (hi - j)[:, None]
    change = np.zeros(n + 1)
    change[1:n] = np.linalg.norm(left - right, axis=1)
    dips = energy_dips(f, energy_window) if energy_weight > 0 else np.zeros(n + 1)
    score = np.full(n + 1, -np.inf)
    score[1:n] = _zscore(change[1:n]) + energy_weight * _zscore(dips[1:n])
    wanted = max(int(round(n * hop / seconds_per_segment)), 1) - 1
    # a point with neither change nor dip is no boundary, even where its neighbours have none either
    maxima = [
        t
        for t in range(1, n)
        if change[t] + dips[t] > 0 and score[t] >= score[t - 1] and score[t] >= score[t + 1]
    ]
    chosen: list[int] = []
    # stable sort: among equal scores the earlier point wins, so the result is deterministic
    for t in sorted(maxima, key=lambda t: -score[t]):
        if len(chosen) >= wanted:
            break
        if min_gap <= t <= n - min_gap and all(abs(t - c) >= min_gap for c in chosen):
            chosen.append(t)
    return np.array([0, *sorted(chosen), n], dtype=np.float64) * hop


def _boundaries(boundaries: np.ndarray | Sequence[float]) -> np.ndarray:
    """(S + 1,) sorted segment boundaries in seconds, checked."""
    b = np.asarray(boundaries, dtype=np.float64)
    if b.ndim != 1 or len(b) < 2 or (np.diff(b) <= 0).any():
        raise InputError("boundaries must be >= 2 strictly increasing times")
    return b


def _frame_segments(
    b: np.ndarray, num_frames: int, frame_rate: float, offset: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boundaries (S + 1,) -> each model frame's segment (T,) (the one holding the frame's centre; the
    first or last segment when outside), frames per segment (S,), and the segments holding at least one
    frame, in time order (U,)."""
    centres = offset + (np.arange(num_frames) + 0.5) / frame_rate
    seg = np.clip(np.searchsorted(b, centres, side="right") - 1, 0, len(b) - 2)  # (T,)
    counts = np.bincount(seg, minlength=len(b) - 1)
    return seg, counts, np.flatnonzero(counts)


def segment_spans(
    weights: np.ndarray | Sequence[Sequence[float]],
    boundaries: np.ndarray | Sequence[float],
    frame_rate: float,
    offset: float = 0.0,
    share: float = 1.0,
    min_ratio: float = MIN_PEAK_RATIO,
    neighbours: int = 0,
    peaks: Optional[Sequence[int]] = None,
) -> np.ndarray:
    """Per keyword, the segment(s) around its peak frame, or NaN without a confident peak.

    Args:
        weights: (K, T) non-negative weights of K keywords over the utterance's T model frames (e.g.
            attention, or a CIF unit's :func:`box_weights`); rows normalised here.
        boundaries: (S + 1,) sorted segment boundaries in seconds (:func:`change_boundaries`).
        frame_rate, offset: model frame t covers [offset + t / rate, offset + (t + 1) / rate); it
            belongs to the segment holding its centre (the first or last segment when outside).
        share: neighbouring segments join the peak's while their mean weight per frame is >=
            ``share`` x the peak segment's (segments holding no frame centre are skipped over).
        min_ratio: as in :func:`peak_spans`: a row whose peak is < ``min_ratio`` / T gets NaN.
        neighbours: the joined run then takes this many more segments on either side (fewer at the
            utterance's ends), whatever their weight: for a peak one or two frames wide, whose word's
            other syllable-sized segments carry too little weight to join by ``share``.
        peaks: (K,) the frame each keyword's run starts from; default: its row's first largest weight.

    Returns:
        (K, 2) float64 (start, end) seconds: from the first joined segment's start to the last one's end.
    """
    att = _rows(weights)
    _check_rate(frame_rate)
    b = _boundaries(boundaries)
    if not 0 < share <= 1:
        raise InputError(f"share must be in (0, 1], got {share}")
    if neighbours < 0:
        raise InputError(f"neighbours must be >= 0, got {neighbours}")
    if peaks is None:
        peaks = att.argmax(axis=1)
    peaks = np.asarray(peaks)
    if peaks.shape != (att.shape[0],) or ((peaks < 0) | (peaks >= att.shape[1])).any():
        raise InputError(f"peaks must be (K,) = ({att.shape[0]},) frames in [0, {att.shape[1]})")
    seg, counts, used = _frame_segments(b, att.shape[1], frame_rate, offset)
    spans = np.full((att.shape[0], 2), np.nan)
    ratio = att.max(axis=1) * att.shape[1]
    for k, row in enumerate(att):
        if ratio[k] < min_ratio:
            continue
        mean = np.bincount(seg, weights=row, minlength=len(b) - 1)[used] / counts[used]
        i0, i1 = _run_around(mean, int(np.searchsorted(used, seg[int(peaks[k])])), share)
        spans[k] = (b[max(used[i0] - neighbours, 0)], b[min(used[i1] + 1 + neighbours, len(b) - 1)])
    return spans


def segment_windows(
    boundaries: np.ndarray | Sequence[float],
    num_frames: int,
    frame_rate: float,
    offset: float = 0.0,
    segments: int = SPAN_SEGMENTS,
) -> tuple[np.ndarray, np.ndarray]:
    """The candidate spans of :func:`occlusion_spans`: every run of ``segments`` consecutive segments.

    Args:
        boundaries: (S + 1,) sorted segment boundaries in seconds (:func:`change_boundaries`).
        num_frames: T, the utterance's model frames; frame t covers [offset + t / rate,
            offset + (t + 1) / rate) and belongs to the segment holding its centre.
        frame_rate, offset: as in :func:`segment_spans`.
        segments: segments per stretch; segments holding no frame centre are skipped over (their time
            still lies inside a stretch around them). An utterance with fewer segments has one stretch,
            all of it.

    Returns:
        inside (W, T) bool, True at the frames of stretch w; times (W, 2) float64 (start, end) seconds,
        from the first segment's start to the last one's end, in time order.
    """
    b = _boundaries(boundaries)
    _check_rate(frame_rate)
    if num_frames < 1:
        raise InputError(f"num_frames must be >= 1, got {num_frames}")
    if segments < 1:
        raise InputError(f"segments must be >= 1, got {segments}")
    seg, _, used = _frame_segments(b, num_frames, frame_rate, offset)
    n = min(segments, len(used))
    first = used[: len(used) - n + 1]  # (W,) each stretch's first used segment
    last = used[n - 1 :]  # (W,) and its last
    inside = (seg[None, :] >= first[:, None]) & (seg[None, :] <= last[:, None])
    return inside, np.stack([b[first], b[last + 1]], axis=1)


def occlusion_spans(
    full: np.ndarray | Sequence[float],
    kept: np.ndarray | Sequence[Sequence[float]],
    removed: np.ndarray | Sequence[Sequence[float]],
    times: np.ndarray | Sequence[Sequence[float]],
    min_contrast: float = MIN_CONTRAST,
) -> np.ndarray:
    """Per keyword, the stretch the model reads it from, or NaN where no stretch stands out.

    Args:
        full: (K,) each keyword's cosine to its subword's embedding, read from the whole utterance.
        kept: (W, K) the same cosine read from stretch w alone (every other frame hidden).
        removed: (W, K) the same cosine read from the utterance without stretch w.
        times: (W, 2) the stretches' (start, end) seconds (:func:`segment_windows`).
        min_contrast: a keyword gets a span only when its best stretch's score is at least this much
            above the median stretch's. Whatever it is, a keyword that every stretch scores alike
            (within 1e-9; for instance, the one stretch of a short utterance) has no span.

    Returns:
        (K, 2) float64 (start, end) seconds. Stretch w's score for keyword k is
        kept[w, k] + (full[k] - removed[w, k]): what the stretch says about the keyword alone plus what
        the utterance loses without it. The span is the best-scoring stretch (the earliest on a tie);
        a keyword without one gets (NaN, NaN).
    """
    f = np.asarray(full, dtype=np.float64)
    k_in, r_in = np.asarray(kept, dtype=np.float64), np.asarray(removed, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    if f.ndim != 1 or k_in.ndim != 2 or k_in.shape != r_in.shape or k_in.shape[1] != len(f):
        raise InputError(
            f"full must be (K,), kept and removed (W, K), got {f.shape}, {k_in.shape}, {r_in.shape}"
        )
    if t.shape != (k_in.shape[0], 2) or len(t) == 0:
        raise InputError(f"times must be (W, 2) with W >= 1 matching kept, got {t.shape}")
    if not (np.isfinite(f).all() and np.isfinite(k_in).all() and np.isfinite(r_in).all()):
        raise InputError("keyword cosines must be finite")
    if min_contrast < 0:
        raise InputError(f"min_contrast must be >= 0, got {min_contrast}")
    score = k_in + (f[None, :] - r_in)  # (W, K)
    best = score.argmax(axis=0)  # (K,) the first maximum: deterministic on ties
    spans = t[best].copy()
    contrast = score.max(axis=0) - np.median(score, axis=0)
    spans[contrast < max(min_contrast, 1e-9)] = np.nan
    return spans


def box_weights(unit_frames: np.ndarray, num_frames: int) -> np.ndarray:
    """CIF units' (K, 2) fractional (start, end) frames -> (K, T) weights: each frame's overlap with the
    unit's interval (a unit of zero length keeps its one frame), for :func:`segment_spans`."""
    u = np.asarray(unit_frames, dtype=np.float64).reshape(-1, 2)
    t = np.arange(num_frames, dtype=np.float64)
    w = np.clip(np.minimum(u[:, 1:], t + 1) - np.maximum(u[:, :1], t), 0.0, None)  # (K, T)
    for k in np.flatnonzero(w.sum(axis=1) <= 0):
        w[k, int(np.clip(np.floor(u[k, 0]), 0, num_frames - 1))] = 1.0
    return w


def unit_segment_spans(
    unit_frames: np.ndarray,
    num_frames: int,
    boundaries: np.ndarray | Sequence[float],
    frame_rate: float,
    offset: float = 0.0,
) -> np.ndarray:
    """CIF units' (K, 2) fractional (start, end) frames -> (K, 2) seconds: each unit snapped onto the
    segments of the signal it covers (:func:`box_weights` through :func:`segment_spans`, share
    :data:`CIF_SEGMENT_SHARE`, no extra neighbours). Every unit gets a span: a unit is where the model
    fired, not a peak that may be missing. ``boundaries``: :func:`change_boundaries` with
    :data:`CIF_SECONDS_PER_SEGMENT` and :data:`CIF_SEGMENT_MIN_GAP`."""
    units = np.asarray(unit_frames, dtype=np.float64).reshape(-1, 2)
    weights = box_weights(units, num_frames)  # (K, T)
    # The span starts from the unit's fullest frame nearest its middle (its full frames weigh the same,
    # and a plain argmax would take the first); on a tie of both, the earlier one.
    centre = np.abs(np.arange(num_frames) + 0.5 - units.mean(axis=1, keepdims=True))  # (K, T) frames
    peaks = [int(np.lexsort((c, -w))[0]) for w, c in zip(weights, centre)]
    return segment_spans(
        weights,
        boundaries,
        frame_rate,
        offset,
        share=CIF_SEGMENT_SHARE,
        min_ratio=0.0,
        neighbours=0,
        peaks=peaks,
    )
