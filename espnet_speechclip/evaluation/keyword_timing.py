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

import torch

__all__ = [
    "attention_spans",
    "boundary_prf",
    "equal_spans",
    "interior_boundaries",
    "keyword_timing_scores",
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
        raise ValueError(f"{len(predicted)} predicted and {len(reference)} reference utterances")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
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


def span_contains_word(
    keyword_spans: Sequence[Sequence[tuple[float, float]]],
    keyword_ids: Sequence[Sequence[int]],
    word_alignments: Sequence[Sequence[tuple[str, float, float]]],
    word_token_ids: Callable[[str], Sequence[int]],
    mode: str = "overlap",
    tolerance: float = 0.02,
    special_ids: Sequence[int] = CLIP_SPECIAL_IDS,
) -> float:
    """Share of keywords whose time span matches a word that contains the keyword's CLIP subword.

    A keyword k of an utterance (span [s_k, e_k] seconds, CLIP BPE id v_k) is a HIT iff the utterance's
    alignment has a word w (span [s_w, e_w]) such that v_k is one of the BPE ids of w, i.e.
    ``v_k in word_token_ids(w)``, and the spans relate according to ``mode``:

    - ``"overlap"``: they overlap for a positive time, min(e_k, e_w) - max(s_k, s_w) > 0 (spans that
      only touch do not count);
    - ``"contains"``: the keyword span covers the word, s_k <= s_w + tolerance and e_k >= e_w - tolerance;
    - ``"within"``: the keyword span lies inside the word, s_k >= s_w - tolerance and e_k <= e_w + tolerance
      (the natural test for subword units such as CIF's).

    Args:
        keyword_spans: per utterance, one (start, end) per keyword (e.g. CIF unit spans or
            :func:`attention_spans`, in seconds).
        keyword_ids: per utterance, the CLIP BPE id of each keyword (same lengths as ``keyword_spans``).
        word_alignments: per utterance, (word, start, end) entries of a forced alignment; drop silence
            and noise entries first.
        word_token_ids: word -> its CLIP BPE ids (``espnet_speechclip.encoders.clip.text_token_ids``).
            CLIP's BPE splits text into words before merging, so a word's ids do not depend on context.
        mode, tolerance: see above; ``tolerance`` in seconds, unused by ``"overlap"``.
        special_ids: ids that never hit (pad, SOT, EOT) but still count as keywords.

    Returns:
        hits / keywords over the whole corpus, in [0, 1].
    """
    if mode not in ("overlap", "contains", "within"):
        raise ValueError(f"mode must be overlap, contains or within, got {mode!r}")
    if not len(keyword_spans) == len(keyword_ids) == len(word_alignments):
        raise ValueError(
            f"{len(keyword_spans)} span lists, {len(keyword_ids)} id lists and "
            f"{len(word_alignments)} alignments: one of each per utterance expected"
        )
    special = {int(i) for i in special_ids}
    cache: dict[str, frozenset[int]] = {}

    def ids_of(word: str) -> frozenset[int]:
        if word not in cache:
            cache[word] = frozenset(int(i) for i in word_token_ids(word))
        return cache[word]

    def related(sk: float, ek: float, sw: float, ew: float) -> bool:
        if mode == "overlap":
            return min(ek, ew) - max(sk, sw) > 0
        if mode == "contains":
            return sk <= sw + tolerance + _SLACK and ek >= ew - tolerance - _SLACK
        return sk >= sw - tolerance - _SLACK and ek <= ew + tolerance + _SLACK

    hits = total = 0
    for u, (spans, ids, words) in enumerate(zip(keyword_spans, keyword_ids, word_alignments)):
        if len(spans) != len(ids):
            raise ValueError(f"utterance {u}: {len(spans)} keyword spans but {len(ids)} keyword ids")
        for (sk, ek), v in zip(spans, ids):
            total += 1
            v = int(v)
            if v in special:
                continue
            hits += any(
                v in ids_of(w) and related(float(sk), float(ek), float(sw), float(ew)) for w, sw, ew in words
            )
    if total == 0:
        raise ValueError("no keywords to score")
    return hits / total


def attention_spans(
    attention: torch.Tensor | Sequence[Sequence[float]],
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
        offset: seconds added to every time (see the module docstring).

    Returns:
        K (start, end) spans in seconds. With P_t the cumulative attention of frames 0..t and
        lo = (1 - X) / 2, hi = 1 - lo, the span runs from the first frame with P_t > lo to the first frame
        with P_t >= hi, both included: [offset + t_lo / rate, offset + (t_hi + 1) / rate). X = 1 gives the
        span from the first to the last frame with non-zero attention. Frame granular: it never splits a
        frame. (A 1e-9 slack on lo and hi keeps float rounding of the cumulative sum from moving a span.)
    """
    att = torch.as_tensor(attention, dtype=torch.float64).detach().cpu()
    if att.dim() != 2:
        raise ValueError(f"attention must be (K, T), got shape {tuple(att.shape)}")
    if not 0 < mass <= 1:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    if frame_rate <= 0:
        raise ValueError(f"frame_rate must be positive, got {frame_rate}")
    if bool((att < 0).any()) or not bool(torch.isfinite(att).all()):
        raise ValueError("attention weights must be finite and non-negative")
    sums = att.sum(dim=1, keepdim=True)
    if bool((sums <= 0).any()):
        raise ValueError("every keyword needs some attention on the frames (a row sums to 0)")
    cum = torch.cumsum(att / sums, dim=1)  # (K, T)
    lo = (1.0 - mass) / 2
    hi = 1.0 - lo
    spans = []
    for row in cum:
        start = int(torch.nonzero(row > lo + 1e-9)[0])
        end = max(int(torch.nonzero(row >= hi - 1e-9)[0]), start)
        spans.append((offset + start / frame_rate, offset + (end + 1) / frame_rate))
    return spans


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
            :func:`span_contains_word`.
        tolerance: seconds; boundaries match within it (20 ms, the word-discovery convention), and a span
            may miss a word's edges by it and still contain the word.

    Returns:
        dict(``boundary_precision``, ``boundary_recall``, ``boundary_f1``, ``boundary_r_value``: the
        interior boundaries of the keyword spans (:func:`interior_boundaries`) against those of the
        words, :func:`boundary_prf`; ``boundary_f1_equal``: the F1 of :func:`equal_spans` of the same
        keywords, what the number of keywords alone would score; ``over_segmentation``: predicted /
        reference boundaries - 1;
        ``span_contains_word``: share of keywords whose span covers a word containing the keyword's
        subword, edges within ``tolerance``; ``span_overlaps_word``: ... whose span overlaps such a
        word; ``mean_span``: mean keyword span in seconds (wide spans contain words easily);
        ``keywords``: keywords scored; ``tolerance``).
    """
    pred = [interior_boundaries(spans) for spans in keyword_spans]
    ref = [interior_boundaries([(s, e) for _, s, e in words]) for words in word_alignments]
    prf = boundary_prf(pred, ref, tolerance)
    equal = boundary_prf([interior_boundaries(equal_spans(spans)) for spans in keyword_spans], ref, tolerance)
    args = (keyword_spans, keyword_ids, word_alignments, word_token_ids)
    durations = [float(e) - float(s) for spans in keyword_spans for s, e in spans]
    return {
        "boundary_precision": 100.0 * prf["precision"],
        "boundary_recall": 100.0 * prf["recall"],
        "boundary_f1": 100.0 * prf["f1"],
        "boundary_r_value": 100.0 * prf["r_value"],
        "boundary_f1_equal": 100.0 * equal["f1"],
        "over_segmentation": prf["os"],
        "span_contains_word": 100.0 * span_contains_word(*args, mode="contains", tolerance=tolerance),
        "span_overlaps_word": 100.0 * span_contains_word(*args, mode="overlap"),
        "mean_span": sum(durations) / len(durations) if durations else 0.0,
        "keywords": len(durations),
        "tolerance": tolerance,
    }
