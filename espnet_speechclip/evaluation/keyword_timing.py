"""Where in time the keywords of a cascaded model come from, scored against word alignments.

Pure functions: numbers, lists and tensors in, numbers out. Nothing here imports a model, ESPnet or a
tokenizer; the functions that need CLIP's BPE take the tokenizer as a callable
(``espnet_speechclip.models.clip.text_token_ids`` is the one to pass).

Time convention: seconds. A frame-level quantity at frame rate ``frame_rate`` (50 Hz for HuBERT) maps
frame t to the interval [offset + t / frame_rate, offset + (t + 1) / frame_rate); ``offset`` lets the
caller account for the upstream's receptive field (HuBERT's first frame is centred at about 12.5 ms).

- :func:`boundary_prf`: word-boundary precision / recall / F1 with a tolerance window (e.g. CIF firing
  positions against forced-alignment word boundaries).
- :func:`spans_to_boundaries`: the boundary set of a sequence of (start, end) spans.
- :func:`span_contains_word`: how often a keyword's time span matches a word that contains its subword.
- :func:`attention_spans`: the time span holding the central X% of a keyword's attention (K-token models).
- :func:`keyword_timing_scores`: all of the above for a decoded corpus, as scoring reports them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

from espnet_speechclip.errors import InputError

__all__ = [
    "boundary_prf",
    "equal_spans",
    "interior_boundaries",
    "keyword_timing_scores",
    "keyword_word_matches",
    "KeywordMatch",
    "span_contains_word",
    "spans_to_boundaries",
]

# pad 0, <start_of_text>, <end_of_text> of CLIP's BPE vocabulary (as espnet_speechclip.models.clip)
CLIP_SPECIAL_IDS: tuple[int, ...] = (0, 49406, 49407)

# Times are floats: 0.32 - 0.30 = 0.020000000000000018 > 0.02. Comparisons with a tolerance forgive this
# much (a nanosecond), so a boundary exactly at the tolerance counts as intended.
_SLACK = 1e-9


def _match_count(pred: list[float], ref: list[float], tolerance: float) -> int:
    """Size of a maximum one-to-one matching between two sorted lists of times, pairs within tolerance."""
    i = j = hits = 0
    while i < len(pred) and j < len(ref):
        if abs(pred[i] - ref[j]) <= tolerance + _SLACK:
            hits += 1
            i += 1
            j += 1
        elif pred[i] < ref[j]:
            i += 1  # pred[i] is too early for ref[j], hence for every later reference too
        else:
            j += 1
    return hits


def boundary_prf(
    predicted: Sequence[Sequence[float]], reference: Sequence[Sequence[float]], tolerance: float = 0.02
) -> dict[str, float]:
    """Boundary precision, recall and F1 over a corpus, with one-to-one matching within ``tolerance``.

    Args:
        predicted: per utterance, the predicted boundary times in seconds (any order).
        reference: per utterance, the reference boundary times (e.g. word starts and ends of a forced
            alignment; whether utterance edges and pauses count is the caller's choice, made the same way
            for both sides).
        tolerance: a predicted and a reference boundary match if at most this far apart (20 ms is the
            usual window in unsupervised word segmentation, e.g. Kamper et al.; Harwath & Glass).

    Returns:
        dict(precision, recall, f1 in [0, 1]; n_pred, n_ref, n_hit counts summed over utterances;
        os = n_pred / n_ref - 1, the over-segmentation; r_value, Rasanen et al.'s R-value, which
        penalises over-segmentation that F1 can reward). Ratios with a zero denominator are 0.0.

    Matching: each reference boundary is matched to at most one predicted boundary and vice versa, and
    n_hit is the size of a MAXIMUM such matching, found by scanning both sorted lists (match the two
    current boundaries if within tolerance, else drop the earlier one). On a line this greedy scan is
    optimal (exchange argument: if the two current boundaries are compatible, any matching that pairs
    them elsewhere can be re-paired without loss). Matching greedily by smallest distance is NOT: with
    reference [0.000, 0.025], predicted [0.015, 0.040] and 20 ms, the closest pair (0.025, 0.015) would
    be taken first and leave one hit where two are possible. Two predictions near one reference boundary
    count one hit and one false alarm.
    """
    if len(predicted) != len(reference):
        raise InputError(f"{len(predicted)} predicted and {len(reference)} reference utterances")
    if tolerance < 0:
        raise InputError(f"tolerance must be >= 0, got {tolerance}")
    n_pred = n_ref = n_hit = 0
    for pred, ref in zip(predicted, reference):
        p, r = sorted(float(x) for x in pred), sorted(float(x) for x in ref)
        n_pred += len(p)
        n_ref += len(r)
        n_hit += _match_count(p, r, tolerance)
    precision = n_hit / n_pred if n_pred else 0.0
    recall = n_hit / n_ref if n_ref else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    over_seg = n_pred / n_ref - 1 if n_ref else 0.0
    r1 = math.sqrt((1 - recall) ** 2 + over_seg**2)
    r2 = (-over_seg + recall - 1) / math.sqrt(2)
    r_value = 1 - (abs(r1) + abs(r2)) / 2 if n_ref else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_pred": n_pred,
        "n_ref": n_ref,
        "n_hit": n_hit,
        "os": over_seg,
        "r_value": r_value,
    }


def spans_to_boundaries(spans: Sequence[tuple[float, float]], merge_tolerance: float = 1e-6) -> list[float]:
    """The sorted boundary times of a sequence of (start, end) spans: every start and end, with times
    closer than ``merge_tolerance`` merged into one (adjacent units share their border: N contiguous
    units give N + 1 boundaries; a pause between two units gives two)."""
    times = sorted(float(t) for span in spans for t in span)
    out: list[float] = []
    for t in times:
        if not out or t - out[-1] > merge_tolerance:
            out.append(t)
    return out


class KeywordMatch(NamedTuple):
    """How one keyword's span relates to the words of its utterance that hold its subword.

    ``in_transcript``: some word of the alignment holds the keyword's CLIP subword (only such keywords
    can be timed against the alignment); ``timed``: the keyword has a span (not NaN); ``overlap``,
    ``contains``, ``within``: the span relates so to one such word (see :func:`span_contains_word`);
    ``overlap_chance``, ``contains_chance``: the probability of the same for a span of the same length
    placed uniformly at random inside the utterance's speech, first word start to last word end."""

    in_transcript: bool
    timed: bool
    overlap: bool = False
    contains: bool = False
    within: bool = False
    overlap_chance: float = 0.0
    contains_chance: float = 0.0


def _covered(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Length of the union of ``intervals`` clipped to [lo, hi]."""
    total, reach = 0.0, lo
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= max(a, reach):
            continue
        total += b - max(a, reach)
        reach = b
    return total


def _placement_chance(length: float, extent: tuple[float, float], starts: list[tuple[float, float]]) -> float:
    """Probability that a span of ``length`` seconds whose start is uniform on [lo, hi - length]
    (``extent`` = (lo, hi)) starts in one of the intervals ``starts``; a span as long as the extent or
    longer can only start at lo."""
    lo, hi = extent
    room = hi - lo - length
    if room <= _SLACK:
        return float(any(a <= lo + _SLACK and lo <= b + _SLACK for a, b in starts))
    return min(1.0, _covered(starts, lo, lo + room) / room)


def keyword_word_matches(
    keyword_spans: Sequence[Sequence[tuple[float, float]]],
    keyword_ids: Sequence[Sequence[int]],
    word_alignments: Sequence[Sequence[tuple[str, float, float]]],
    word_token_ids: Callable[[str], Sequence[int]],
    tolerance: float = 0.02,
    special_ids: Sequence[int] = CLIP_SPECIAL_IDS,
) -> list[KeywordMatch]:
    """One :class:`KeywordMatch` per keyword of a corpus, utterance by utterance.

    Args:
        keyword_spans: per utterance, one (start, end) per keyword in seconds; (NaN, NaN) for a keyword
            that has no span (a span rule that found no confident peak).
        keyword_ids: per utterance, the CLIP BPE id of each keyword (same lengths as ``keyword_spans``).
        word_alignments: per utterance, (word, start, end) entries of a forced alignment; drop silence
            and noise entries first.
        word_token_ids: word -> its CLIP BPE ids (``espnet_speechclip.models.clip.text_token_ids``).
            CLIP's BPE splits text into words before merging, so a word's ids do not depend on context.
        tolerance: seconds a span may miss a word's edges by and still contain it (or lie within it).
        special_ids: ids that never match a word (pad, SOT, EOT).
    """
    if not len(keyword_spans) == len(keyword_ids) == len(word_alignments):
        raise InputError(
            f"{len(keyword_spans)} span lists, {len(keyword_ids)} id lists and "
            f"{len(word_alignments)} alignments: one of each per utterance expected"
        )
    special = {int(i) for i in special_ids}
    cache: dict[str, frozenset[int]] = {}

    def ids_of(word: str) -> frozenset[int]:
        if word not in cache:
            cache[word] = frozenset(int(i) for i in word_token_ids(word))
        return cache[word]

    tol = tolerance + _SLACK
    out: list[KeywordMatch] = []
    for u, (spans, ids, words) in enumerate(zip(keyword_spans, keyword_ids, word_alignments)):
        if len(spans) != len(ids):
            raise InputError(f"utterance {u}: {len(spans)} keyword spans but {len(ids)} keyword ids")
        extent = (
            min((float(s) for _, s, _ in words), default=0.0),
            max((float(e) for *_, e in words), default=0.0),
        )
        for (sk, ek), v in zip(spans, ids):
            sk, ek, v = float(sk), float(ek), int(v)
            held = [] if v in special else [(float(s), float(e)) for w, s, e in words if v in ids_of(w)]
            timed = not (math.isnan(sk) or math.isnan(ek))
            if not held or not timed:
                out.append(KeywordMatch(bool(held), timed))
                continue
            length = ek - sk
            out.append(
                KeywordMatch(
                    True,
                    True,
                    overlap=any(min(ek, ew) - max(sk, sw) > 0 for sw, ew in held),
                    contains=any(sk <= sw + tol and ek >= ew - tol for sw, ew in held),
                    within=any(sk >= sw - tol and ek <= ew + tol for sw, ew in held),
                    # starts s of a span of this length that overlap word [sw, ew]: sw - length < s < ew;
                    # that contain it: ew - tol - length <= s <= sw + tol
                    overlap_chance=_placement_chance(length, extent, [(sw - length, ew) for sw, ew in held]),
                    contains_chance=_placement_chance(
                        length,
                        extent,
                        [(ew - tol - length, sw + tol) for sw, ew in held if ew - sw <= length + 2 * tol],
                    ),
                )
            )
    return out


def span_contains_word(
    keyword_spans: Sequence[Sequence[tuple[float, float]]],
    keyword_ids: Sequence[Sequence[int]],
    word_alignments: Sequence[Sequence[tuple[str, float, float]]],
    word_token_ids: Callable[[str], Sequence[int]],
    mode: str = "overlap",
    tolerance: float = 0.02,
    special_ids: Sequence[int] = CLIP_SPECIAL_IDS,
) -> float:
    """Share of the keywords that occur in the transcript whose time span matches a word that holds
    the keyword's CLIP subword.

    A keyword k of an utterance (span [s_k, e_k] seconds, CLIP BPE id v_k) OCCURS in the transcript iff
    the utterance's alignment has a word w with v_k among the BPE ids of w (``word_token_ids(w)``); it
    is a HIT iff for one such word (span [s_w, e_w]) the spans relate according to ``mode``:

    - ``"overlap"``: they overlap for a positive time, min(e_k, e_w) - max(s_k, s_w) > 0 (spans that
      only touch do not count);
    - ``"contains"``: the keyword span covers the word, s_k <= s_w + tolerance and e_k >= e_w - tolerance;
    - ``"within"``: the keyword span lies inside the word, s_k >= s_w - tolerance and e_k <= e_w + tolerance
      (the natural test for subword units such as CIF's).

    A keyword without a span (NaN) is never a hit. Keywords that do not occur in the transcript are left
    out: whether a wrong keyword was heard in the right place has no answer (the keyword hit rate scores
    which keywords are right). Arguments as :func:`keyword_word_matches`.

    Returns:
        hits / keywords occurring in the transcript, over the whole corpus, in [0, 1] (0.0 when none
        occurs). Raises ValueError when there are no keywords at all.
    """
    if mode not in ("overlap", "contains", "within"):
        raise InputError(f"mode must be overlap, contains or within, got {mode!r}")
    matches = keyword_word_matches(
        keyword_spans, keyword_ids, word_alignments, word_token_ids, tolerance, special_ids
    )
    if not matches:
        raise InputError("no keywords to score")
    occurring = [m for m in matches if m.in_transcript]
    return sum(getattr(m, mode) for m in occurring) / len(occurring) if occurring else 0.0


def interior_boundaries(spans: Sequence[tuple[float, float]]) -> list[float]:
    """:func:`spans_to_boundaries` without the first and the last: where an utterance's speech starts
    and ends is no segmentation decision (CIF's first unit starts at the first frame whatever the model
    learned), so both sides of a boundary evaluation leave the utterance edges out."""
    return spans_to_boundaries(spans)[1:-1]


def equal_spans(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """As many equal, contiguous spans as ``spans`` has, from its earliest start to its latest end: a
    segmentation that knows only how many units there are and where the speech is (the chance level
    of a boundary score)."""
    if not spans:
        return []
    lo, hi = min(float(s) for s, _ in spans), max(float(e) for _, e in spans)
    step = (hi - lo) / len(spans)
    return [(lo + k * step, lo + (k + 1) * step) for k in range(len(spans))]


def _timed(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The spans that are not NaN (keywords a span rule gave a span)."""
    return [(float(s), float(e)) for s, e in spans if not (math.isnan(float(s)) or math.isnan(float(e)))]


def keyword_timing_scores(
    keyword_spans: Sequence[Sequence[tuple[float, float]]],
    keyword_ids: Sequence[Sequence[int]],
    word_alignments: Sequence[Sequence[tuple[str, float, float]]],
    word_token_ids: Callable[[str], Sequence[int]],
    tolerance: float = 0.02,
) -> dict[str, float]:
    """How well keyword time spans match a word alignment, over a corpus (percentages in percent).

    Args:
        keyword_spans, keyword_ids, word_alignments, word_token_ids: one entry per utterance, as in
            :func:`keyword_word_matches` ((NaN, NaN): a keyword without a span).
        tolerance: seconds; boundaries match within it (20 ms, the word-discovery convention), and a span
            may miss a word's edges by it and still contain the word.

    Returns:
        dict of

        - ``boundary_precision``, ``boundary_recall``, ``boundary_f1``, ``boundary_r_value``: the interior
          boundaries of the keyword spans (:func:`interior_boundaries`) against those of the words,
          :func:`boundary_prf`; ``boundary_f1_equal``: the F1 of :func:`equal_spans` of the same spans,
          what the number of spans alone would score (the chance level); ``over_segmentation``:
          predicted / reference boundaries - 1;
        - ``span_overlaps_word``, ``span_contains_word``: of the keywords that occur in the transcript, the
          share whose span overlaps / covers (edges within ``tolerance``) a word holding the keyword's
          subword (:func:`span_contains_word`); ``span_overlaps_word_chance``,
          ``span_contains_word_chance``: the same for the same spans placed uniformly at random inside the
          utterance's speech (expected value);
        - ``mean_span``: mean span in seconds of the keywords that have one; ``mean_word``: mean word
          duration of the alignment (a span that localises a word is about as long);
        - ``timed``: share of keywords with a span (a span rule may find no confident one);
        - ``keywords``: keywords scored; ``keywords_in_transcript``: those whose subword a word of the
          transcript holds; ``tolerance``.
    """
    timed_spans = [_timed(spans) for spans in keyword_spans]
    pred = [interior_boundaries(spans) for spans in timed_spans]
    ref = [interior_boundaries([(s, e) for _, s, e in words]) for words in word_alignments]
    prf = boundary_prf(pred, ref, tolerance)
    equal = boundary_prf([interior_boundaries(equal_spans(spans)) for spans in timed_spans], ref, tolerance)
    matches = keyword_word_matches(keyword_spans, keyword_ids, word_alignments, word_token_ids, tolerance)
    occurring = [m for m in matches if m.in_transcript]

    def share(values: Sequence[float]) -> float:
        return 100.0 * sum(values) / len(occurring) if occurring else 0.0

    durations = [e - s for spans in timed_spans for s, e in spans]
    word_durations = [float(e) - float(s) for words in word_alignments for _, s, e in words]
    return {
        "boundary_precision": 100.0 * prf["precision"],
        "boundary_recall": 100.0 * prf["recall"],
        "boundary_f1": 100.0 * prf["f1"],
        "boundary_r_value": 100.0 * prf["r_value"],
        "boundary_f1_equal": 100.0 * equal["f1"],
        "over_segmentation": prf["os"],
        "span_overlaps_word": share([m.overlap for m in occurring]),
        "span_overlaps_word_chance": share([m.overlap_chance for m in occurring]),
        "span_contains_word": share([m.contains for m in occurring]),
        "span_contains_word_chance": share([m.contains_chance for m in occurring]),
        "mean_span": sum(durations) / len(durations) if durations else 0.0,
        "mean_word": sum(word_durations) / len(word_durations) if word_durations else 0.0,
        "timed": 100.0 * len(durations) / len(matches) if matches else 0.0,
        "keywords": len(matches),
        "keywords_in_transcript": len(occurring),
        "tolerance": tolerance,
    }
