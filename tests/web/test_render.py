"""HTML of the page's results: escaped, with the data attributes the browser test reads."""

import pytest

from espnet_speechclip.inference.result_types import Hit, Keyword
from espnet_speechclip.web import render


def test_status_escapes_and_carries_its_state():
    html = render.status("error", "a <b> file", "x & y", seq=3, file="n<>.wav")
    assert html == (
        '<div class="sc-status sc-error" data-state="error" data-seq="3" data-file="n&lt;&gt;.wav">'
        'a &lt;b&gt; file<br><span class="sc-detail">x &amp; y</span></div>'
    )
    with pytest.raises(ValueError, match="info, ok or error"):
        render.status("fine", "x")


def test_image_cards_rank_score_and_true_image(tmp_path):
    paths = {"a": str(tmp_path / "a b.png"), "c": str(tmp_path / "c.png")}
    html = render.image_cards([Hit(1, "c", 0.5), Hit(0, "a", -0.25)], paths, true_key="a")
    assert html.count(" data-rank=") == 2
    assert 'data-rank="1" data-key="c" data-score="0.5000"' in html
    assert 'class="sc-card sc-true" data-rank="2" data-key="a"' in html and "its image" in html
    assert f"/gradio_api/file={tmp_path}/a%20b.png" in html  # served by Gradio, quoted
    assert render.image_cards([], paths) == ""


def test_keyword_chips_and_utterance_table(tmp_path):
    chips = render.keyword_chips([Keyword("red", 1, 0.812, 0.2, 0.44), Keyword("sq", 2, 0.5)])
    assert 'data-token="red"' in chips and "0.81 \u00b7 0.20\u20130.44 s" in chips
    assert "0.50</span>" in chips  # untimed: no span
    table = render.utterance_table(
        [Hit(0, "u1", 0.9), Hit(1, "u2", 0.1)],
        {"u1": str(tmp_path / "u1.wav"), "u2": str(tmp_path / "u2.wav")},
        {"u1": "a red <square>"},
        {"u2": [Keyword("blue", 3, 0.7)]},
        true_ids=["u2"],
    )
    assert table.count('<tr class="sc-utt') == 2 and "a red &lt;square&gt;" in table
    assert '<tr class="sc-utt sc-true" data-rank="2" data-utt="u2"' in table and "describes it" in table
    assert "<th>transcript</th>" in table and "<th>keywords</th>" in table and "<td>blue</td>" in table
