"""The markdown tables of retrieval recalls, keyword hit rates and keyword timing: RESULTS.md and the
packed model's card show the same scores the same way.

Pure functions of the scores in results.json's shape (see :mod:`espnet_speechclip.evaluation.results`).
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Tuple

DIRECTIONS = [
    ("speech_to_image", "S→I"),
    ("image_to_speech", "I→S"),
    ("speech_to_text", "S→T (zero-shot)"),
    ("text_to_speech", "T→S (zero-shot)"),
]


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def retrieval_table(scores: Dict[str, Dict]) -> List[str]:
    lines = ["| branch | direction | R@1 | R@5 | R@10 |", "|---|---|---:|---:|---:|"]
    for branch, res in scores.items():
        for key, name in DIRECTIONS:
            if key in res:
                r = res[key]
                lines.append(
                    f"| {branch} | {name} | {_fmt(r['R@1'])} | {_fmt(r['R@5'])} | {_fmt(r['R@10'])} |"
                )
    return lines


def is_results(results: Any) -> bool:
    """Whether ``results`` has results.json's shape: ``{test set: {branch: {direction: {R@K: x}}}}``."""
    return (
        isinstance(results, dict)
        and bool(results)
        and all(
            isinstance(scores, dict)
            and bool(scores)
            and all(isinstance(r, dict) and any(key in r for key, _ in DIRECTIONS) for r in scores.values())
            for scores in results.values()
        )
    )


def keyword_rate_rows(scores: Dict[str, Dict]) -> List[Tuple[str, Dict[str, float]]]:
    """(row name, its rates) of every keyword hit rate in a cascaded branch's scores: kw1..kwK + avg
    for K keyword slots; pooled, utterance_avg, keywords_per_utterance for CIF keywords."""
    rows = [("top-1 (the keyword itself)", scores["keyword_hit_rate"])]
    for key, rates in scores.items():
        m = re.fullmatch(r"keyword_hit_rate_top(\d+)_neighbours", key)
        if m:
            rows.append((f"top-{m.group(1)} neighbours (the authors' metric)", rates))
    return rows


def hit_rate_table(scores: Dict[str, Dict]) -> List[str]:
    """Every keyword hit rate of a cascaded branch's ``scores`` as a markdown table, with what it counts."""
    rows = keyword_rate_rows(scores)
    if "pooled" in rows[0][1]:  # variable-length keywords (CIF): no slots
        lines = [
            "A keyword hits when it (top-1), or any of its nearest codebook subwords by cosine, the keyword "
            "first (top-5, as the authors counted), occurs among the CLIP subwords of the transcript; "
            "special tokens never count. CIF keywords have no slots: pooled over all keywords emitted, "
            "and the mean of the utterances' own rates. The two rows do not compare with each other.",
            "",
            "| keyword hit rate | pooled | utterance avg | keywords per utterance |",
            "|---|---:|---:|---:|",
        ]
        for name, rates in rows:
            lines.append(
                f"| {name} | {_fmt(rates['pooled'])} | {_fmt(rates['utterance_avg'])} | "
                f"{rates['keywords_per_utterance']:.2f} |"
            )
        return lines
    slots = [k for k in rows[0][1] if k != "avg"]
    lines = [
        "A slot hits when its keyword (top-1), or any of its nearest codebook subwords by cosine, the "
        "keyword first (top-5: how the authors' published averages were counted), occurs among the CLIP "
        "subwords of the transcript; special tokens never count. The two rows do not compare with each "
        "other.",
        "",
        "| keyword hit rate | " + " | ".join(slots) + " | avg |",
        "|---|" + "---:|" * (len(slots) + 1),
    ]
    for name, rates in rows:
        lines.append(
            f"| {name} | " + " | ".join(_fmt(rates[k]) for k in slots) + f" | {_fmt(rates['avg'])} |"
        )
    return lines


# How each kind of model's keyword spans are chosen (``keyword_timing.spans_from`` of the scores).
SPANS_FROM = {
    "cif_segment": (
        "the syllable-sized segments of the signal (cut where its spectrum changes most or its energy dips) "
        "that hold most of the stretch each CIF unit integrated"
    ),
    "cif": "the stretch each CIF unit integrated, between its firing boundaries",
    "occlusion_segment": (
        "the stretch of three syllable-sized segments of the signal (cut where its spectrum changes most or "
        "its energy dips) that the model reads each keyword from: kept alone it keeps the keyword closest "
        "to its subword, removed it moves the keyword furthest away; no span where no stretch stands out "
        "of the others"
    ),
    "saliency_segment": (
        "the syllable-sized segment of the signal, cut where its spectrum changes most or its energy dips, "
        "holding the peak of each keyword's input x gradient saliency, with one segment on either side; "
        "no span where the peak is under twice the weight of an even spread"
    ),
    "attention_peak": (
        "the run of frames around each keyword's attention peak whose weight is at least half the peak's; "
        "no span where the peak is under twice the weight of an even spread"
    ),
    "attention": "the frames holding the central 90 % of each keyword's attention",
}


def keyword_timing_table(timing: Dict[str, float]) -> List[str]:
    """The keyword-timing scores of :mod:`espnet_speechclip.evaluation.scoring` as a table, each figure
    with its chance level beside it (scores written before a chance level existed show a dash)."""
    source = SPANS_FROM.get(timing.get("spans_from", ""), timing.get("spans_from", "?"))
    ms = round(1000 * timing["tolerance"])

    def pct(key: str) -> str:
        return _fmt(timing[key]) if key in timing else "–"

    def sec(key: str) -> str:
        return f"{timing[key]:.2f} s" if key in timing else "–"

    # scores written by older versions lack the counts: the table then leaves them out
    counted = ", ".join(
        f"{timing[key]} {what}"
        for key, what in (("keywords", "keywords"), ("keywords_in_transcript", "in the transcript"))
        if key in timing
    )
    counted = f" ({counted})" if counted else ""
    return [
        f"Keyword time spans ({source}) against the word alignment{counted}. Boundaries: the spans' "
        f"edges against the word boundaries within {ms} ms (utterance edges left out on both sides); chance "
        f"is as many equal spans over the same stretch. Words: how often a keyword that occurs in the "
        f"transcript has a span overlapping / containing (edges within {ms} ms) a word holding its subword; "
        f"chance is the same spans placed uniformly at random in the utterance's speech.",
        "",
        "| measure | keyword spans | chance |",
        "|---|---:|---:|",
        f"| boundary F1 | {pct('boundary_f1')} | {pct('boundary_f1_equal')} |",
        f"| boundary precision / recall | {pct('boundary_precision')} / {pct('boundary_recall')} | |",
        f"| R-value | {pct('boundary_r_value')} | |",
        f"| over-segmentation | {timing['over_segmentation']:+.2f} | |",
        f"| span overlaps its word (%) | {pct('span_overlaps_word')} | {pct('span_overlaps_word_chance')} |",
        f"| span contains its word (%) | {pct('span_contains_word')} | {pct('span_contains_word_chance')} |",
        f"| mean span / mean word | {sec('mean_span')} | {sec('mean_word')} |",
        f"| keywords with a span (%) | {pct('timed')} | |",
    ]
