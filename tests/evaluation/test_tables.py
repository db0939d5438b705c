"""evaluation/tables: the markdown tables of recalls, keyword hit rates and keyword timing."""

import pytest

from espnet_speechclip.evaluation.tables import (
    SPANS_FROM,
    hit_rate_table,
    is_results,
    keyword_timing_table,
    retrieval_table,
)

RECALLS = {"R@1": 6.666, "R@5": 28.35, "R@10": 46.7}


def test_retrieval_rows_in_direction_order_with_one_decimal():
    scores = {"parallel": {"text_to_speech": RECALLS, "speech_to_image": RECALLS, "keyword_hit_rate": {}}}
    lines = retrieval_table(scores)
    assert lines[2:] == [
        "| parallel | S→I | 6.7 | 28.4 | 46.7 |",
        "| parallel | T→S (zero-shot) | 6.7 | 28.4 | 46.7 |",
    ]
    assert all(line.count("|") == lines[0].count("|") for line in lines)


@pytest.mark.parametrize(
    "results, expected",
    [
        ({"test": {"parallel": {"speech_to_image": RECALLS}}}, True),
        ({"test": {"cascaded": {"keyword_hit_rate": {"avg": 1.0}}}}, False),  # no recall of any direction
        ({"test": {}}, False),
        ({}, False),
        ({"parallel": {"speech_to_image": RECALLS}}, False),  # scores.json of one set, not results.json
        ([1], False),
    ],
)
def test_is_results(results, expected):
    assert is_results(results) is expected


def test_slot_rates_of_k_keywords_with_the_neighbour_rows():
    rates = {"kw1": 50.0, "kw2": 25.04, "avg": 37.5}
    scores = {"keyword_hit_rate": rates, "keyword_hit_rate_top5_neighbours": dict(rates, kw1=75.0)}
    lines = hit_rate_table(scores)
    assert "| keyword hit rate | kw1 | kw2 | avg |" in lines
    assert lines[-2:] == [
        "| top-1 (the keyword itself) | 50.0 | 25.0 | 37.5 |",
        "| top-5 neighbours (the authors' metric) | 75.0 | 25.0 | 37.5 |",
    ]


def test_cif_rates_are_pooled_without_slots():
    rates = {"pooled": 40.0, "utterance_avg": 45.0, "keywords_per_utterance": 2.5}
    lines = hit_rate_table({"keyword_hit_rate": rates})
    assert "| keyword hit rate | pooled | utterance avg | keywords per utterance |" in lines
    assert lines[-1] == "| top-1 (the keyword itself) | 40.0 | 45.0 | 2.50 |"


def test_timing_table_says_how_spans_were_chosen_and_dashes_what_old_scores_lack():
    timing = dict(spans_from="cif", tolerance=0.05, over_segmentation=-0.25, boundary_f1=57.14)
    timing.update(boundary_precision=66.7, boundary_recall=50.0, boundary_r_value=60.0, timed=90.0)
    timing.update(span_overlaps_word=100.0, span_contains_word=80.0, mean_span=0.36, mean_word=0.3)
    lines = keyword_timing_table(timing)
    assert SPANS_FROM["cif"] in lines[0] and "within 50 ms" in lines[0]
    assert "the word alignment. Boundaries" in lines[0]  # no counts recorded: none shown
    assert "| boundary F1 | 57.1 | – |" in lines  # no chance level recorded
    assert "| over-segmentation | -0.25 | |" in lines
    assert "| mean span / mean word | 0.36 s | 0.30 s |" in lines
    counted = keyword_timing_table(dict(timing, keywords=12, keywords_in_transcript=8, spans_from="x"))
    assert (
        "Keyword time spans (x) against the word alignment (12 keywords, 8 in the transcript)" in counted[0]
    )
