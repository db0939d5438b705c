"""HTML of the web page's results: status lines, ranked image cards, ranked utterance tables, keyword
chips. Pure functions (values in, escaped markup out), so the page's content is tested without a browser.

Element classes and ``data-*`` attributes are stable: the browser test and screenshots read them.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, List, Optional, Sequence
from urllib.parse import quote

from espnet_speechclip.errors import InputError
from espnet_speechclip.inference.result_types import Hit, Keyword
from espnet_speechclip.web.keyword_figure import PALETTE  # one colour per keyword slot, as in the figure

# Gradio serves files of the folders it was launched with (allowed_paths) under this route.
FILE_ROUTE = "/gradio_api/file="

# The page's own styles (passed to Gradio's launch as css).
CSS = """
.sc-status { padding: 10px 14px; border-radius: 8px; font-size: 15px; line-height: 1.45; }
.sc-status.sc-info { background: #eef4ff; border: 1px solid #c9dafc; color: #1d3a6e; }
.sc-status.sc-ok { background: #effaf1; border: 1px solid #bfe5c7; color: #1f4d2b; }
.sc-status.sc-error { background: #fdeeee; border: 1px solid #f2b8b8; color: #7a1c1c; }
.sc-status .sc-detail { color: inherit; opacity: .8; font-size: 13.5px; }
.sc-cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 12px; }
.sc-card { border: 1px solid #e3e6ea; border-radius: 10px; overflow: hidden; background: #fff; }
.sc-card.sc-true { border: 2px solid #2e9b4f; box-shadow: 0 0 0 2px #d6f0dd; }
.sc-card img { width: 100%; aspect-ratio: 1 / 1; object-fit: contain; background: #f4f5f7; display: block; }
.sc-card .sc-cap { padding: 6px 8px; font-size: 13px; display: flex; justify-content: space-between;
  gap: 6px; align-items: baseline; }
.sc-card .sc-key { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; color: #333; }
.sc-rank { font-weight: 700; color: #555; margin-right: 4px; }
.sc-score { font-variant-numeric: tabular-nums; color: #555; }
.sc-bar { height: 4px; background: #e8eaee; }
.sc-bar > div { height: 4px; background: #4a7bd0; }
.sc-badge { display: inline-block; background: #2e9b4f; color: #fff; border-radius: 9px; padding: 0 7px;
  font-size: 12px; margin-left: 4px; }
.sc-chips { display: flex; flex-wrap: wrap; gap: 8px; margin: 4px 0 10px; }
.sc-chip { border-radius: 16px; padding: 4px 12px; font-size: 14px; border: 1px solid; background: #fff; }
.sc-chip b { font-weight: 600; }
.sc-chip span { color: #666; font-size: 12.5px; font-variant-numeric: tabular-nums; }
table.sc-utts { width: 100%; border-collapse: collapse; font-size: 14px; border: 0 !important; }
table.sc-utts th { text-align: left; color: #555; font-weight: 600; padding: 6px;
  border: 0 !important; border-bottom: 1px solid #d5d8dc !important; }
table.sc-utts td { padding: 6px; vertical-align: middle;
  border: 0 !important; border-bottom: 1px solid #eceef1 !important; }
table.sc-utts td.sc-num { font-variant-numeric: tabular-nums; white-space: nowrap; }
table.sc-utts audio { height: 32px; width: 220px; }
table.sc-utts tr.sc-true td { background: #f0faf2; }
.sc-note { color: #555; font-size: 14px; padding: 6px 2px; }
"""


def file_url(path: str) -> str:
    """The page's URL of a local file (in a folder the server was allowed to serve)."""
    return FILE_ROUTE + quote(str(Path(path).resolve()))


def status(state: str, message: str, detail: str = "", seq: Optional[int] = None, **data: str) -> str:
    """A status line: ``state`` is info, ok or error; ``detail`` a second, quieter line. ``seq`` and
    ``data`` become ``data-*`` attributes (the browser test waits on ``data-seq``)."""
    if state not in ("info", "ok", "error"):
        raise InputError(f"status state must be info, ok or error, got {state!r}")
    attrs = f' data-state="{state}"'
    if seq is not None:
        attrs += f' data-seq="{seq}"'
    for key, value in data.items():
        attrs += f' data-{key}="{html.escape(str(value))}"'
    body = html.escape(message)
    if detail:
        body += f'<br><span class="sc-detail">{html.escape(detail)}</span>'
    return f'<div class="sc-status sc-{state}"{attrs}>{body}</div>'


def image_cards(hits: Sequence[Hit], paths: Dict[str, str], true_key: Optional[str] = None) -> str:
    """Ranked images as cards (rank, key, cosine score and a bar); the true image, when known, framed
    green with a badge. Hits carry image keys."""
    if not hits:
        return ""
    cards = []
    for rank, hit in enumerate(hits, 1):
        key = str(hit.item)
        true = key == true_key
        width = max(0.0, min(1.0, (hit.score + 1) / 2)) * 100  # cosine in [-1, 1] -> bar length
        cards.append(
            f'<div class="sc-card{" sc-true" if true else ""}" data-rank="{rank}" '
            f'data-key="{html.escape(key)}" data-score="{hit.score:.4f}">'
            f'<img src="{html.escape(file_url(paths[key]))}" alt="{html.escape(key)}" loading="lazy">'
            f'<div class="sc-bar"><div style="width:{width:.1f}%"></div></div>'
            f'<div class="sc-cap"><span class="sc-key"><span class="sc-rank">{rank}</span>'
            f"{html.escape(key)}</span>"
            f'<span class="sc-score">{hit.score:.3f}</span></div>'
            + ('<div class="sc-cap"><span class="sc-badge">its image</span></div>' if true else "")
            + "</div>"
        )
    return f'<div class="sc-cards">{"".join(cards)}</div>'


def keyword_chips(keywords: Sequence[Keyword]) -> str:
    """Each keyword as a chip: the subword, its score and (when timed) the span it was heard in."""
    chips = []
    for i, k in enumerate(keywords):
        colour = PALETTE[i % len(PALETTE)]
        timed = k.start is not None and k.end is not None
        span = f" \u00b7 {k.start:.2f}\u2013{k.end:.2f} s" if timed else ""
        chips.append(
            f'<div class="sc-chip" style="border-color:{colour}" data-token="{html.escape(k.token)}">'
            f'<b style="color:{colour}">{html.escape(k.token)}</b> '
            f"<span>{k.score:.2f}{span}</span></div>"
        )
    return f'<div class="sc-chips">{"".join(chips)}</div>'


def utterance_table(
    hits: Sequence[Hit],
    paths: Dict[str, str],
    transcripts: Dict[str, str],
    keywords: Dict[str, List[Keyword]],
    true_ids: Sequence[str] = (),
) -> str:
    """Ranked utterances: rank, score, a player, the id, the transcript (when the data dir has one) and
    the model's keywords (cascaded); rows in ``true_ids`` (captions of the query image) marked."""
    if not hits:
        return ""
    true = set(true_ids)
    has_text = any(str(h.item) in transcripts for h in hits)
    has_kw = any(str(h.item) in keywords for h in hits)
    head = "<tr><th>#</th><th>score</th><th>listen</th><th>utterance</th>"
    head += ("<th>transcript</th>" if has_text else "") + ("<th>keywords</th>" if has_kw else "") + "</tr>"
    rows = []
    for rank, hit in enumerate(hits, 1):
        utt = str(hit.item)
        badge = ' <span class="sc-badge">describes it</span>' if utt in true else ""
        row = (
            f'<tr class="sc-utt{" sc-true" if utt in true else ""}" data-rank="{rank}" '
            f'data-utt="{html.escape(utt)}" data-score="{hit.score:.4f}">'
            f'<td class="sc-num">{rank}</td><td class="sc-num">{hit.score:.3f}</td>'
            f'<td><audio controls preload="none" src="{html.escape(file_url(paths[utt]))}"></audio></td>'
            f"<td>{html.escape(utt)}{badge}</td>"
        )
        if has_text:
            row += f"<td>{html.escape(transcripts.get(utt, ''))}</td>"
        if has_kw:
            row += f"<td>{html.escape(' '.join(k.token for k in keywords.get(utt, [])))}</td>"
        rows.append(row + "</tr>")
    return f'<table class="sc-utts">{head}{"".join(rows)}</table>'


def note(text: str) -> str:
    return f'<div class="sc-note">{html.escape(text)}</div>'
