"""The keyword figure: waveform and each keyword's attention over time, as SVG."""

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from espnet_speechclip.inference.result_types import Keyword, KeywordTiming
from espnet_speechclip.web.keyword_figure import LABEL_W, PLOT_W, keyword_figure, tick_step

SVG = "{http://www.w3.org/2000/svg}"


def _timing():
    """A 1.0 s utterance at 25 frames/s: keyword 0 heard at 0.20-0.40 s, keyword 1 (a token to escape)
    spread over everything, keyword 2 spread evenly and so without a span."""
    att = np.zeros((3, 25), dtype=np.float32)
    att[0, 5:10] = 0.2
    att[1:] = 1 / 25
    kws = [
        Keyword("red", 1000, 0.81, 0.2, 0.4),
        Keyword("<b>&", 1001, 0.5, 0.0, 1.0),
        Keyword("star", 1002, 0.4),
    ]
    return KeywordTiming(kws, att, 25.0, 1.0)


def test_one_row_per_keyword_with_its_span_on_a_shared_time_axis():
    svg = keyword_figure(np.sin(np.arange(16000) / 10.0), _timing())
    root = ET.fromstring(svg)  # well-formed: the token is escaped
    rows = root.findall(f"{SVG}g[@class='keyword']")
    assert [r.get("data-token") for r in rows] == ["red", "<b>&", "star"]
    assert [(r.get("data-start"), r.get("data-end")) for r in rows] == [
        ("0.20", "0.40"),
        ("0.00", "1.00"),
        (None, None),
    ]
    # no span: nothing shaded, and the row says why
    assert rows[2].get("data-span") == "none" and len(rows[2].findall(f"{SVG}rect")) == 1
    assert rows[2].find(f"{SVG}title").text == "star: not localised, no stretch stands out (score 0.400)"
    assert [t.text for t in rows[2].findall(f"{SVG}text")][-1] == "not localised"
    assert rows[0].find(f"{SVG}title").text == "red: heard 0.20\u20130.40 s (score 0.810)"
    span = rows[0].findall(f"{SVG}rect")[1]  # the row's background, then its span
    assert float(span.get("x")) == pytest.approx(LABEL_W + 0.2 * PLOT_W, abs=0.1)
    assert float(span.get("width")) == pytest.approx(0.2 * PLOT_W, abs=0.2)
    ticks = [t.text for t in root.findall(f"{SVG}text") if t.get("text-anchor") == "middle"]
    assert ticks == ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]


def test_attention_curve_starts_at_the_frames_offset():
    """Frames are shifted by the encoder's frame offset (HuBERT: 2.5 ms): the curve is drawn there."""
    plain, shifted = _timing(), _timing()
    shifted.frame_offset = 0.1

    def first_step_x(timing):
        rows = ET.fromstring(keyword_figure(np.zeros(16000), timing)).findall(f"{SVG}g[@class='keyword']")
        path = rows[0].findall(f"{SVG}path")[0].get("d")
        # the keyword's weight starts at frame 5: its rise is the first point above the baseline
        points = [tuple(map(float, p.split(","))) for p in path[1:-2].split(" L")]
        base = points[0][1]
        return next(x for x, y in points if y < base)

    assert first_step_x(plain) == pytest.approx(LABEL_W + 0.2 * PLOT_W, abs=0.1)
    assert first_step_x(shifted) == pytest.approx(LABEL_W + 0.3 * PLOT_W, abs=0.1)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="non-empty"):
        keyword_figure(np.zeros(0), _timing())
    t = _timing()
    t.attention = t.attention[:1]
    with pytest.raises(ValueError, match="3 keywords but 1 attention rows"):
        keyword_figure(np.zeros(160), t)


@pytest.mark.parametrize(
    "duration, step", [(0.3, 0.1), (1.0, 0.1), (2.4, 0.25), (4.9, 0.5), (9.0, 1.0), (45.0, 5.0)]
)
def test_tick_step(duration, step):
    assert tick_step(duration) == pytest.approx(step)
