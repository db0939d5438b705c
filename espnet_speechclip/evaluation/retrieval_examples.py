"""A picture of retrieval results: test utterances (transcript, keywords) next to their top-5 images.

Drawn with PIL alone so a results page needs no plotting stack. The true image of each utterance has a
green frame where it was retrieved. Text is set in a TrueType font (DejaVu Sans where the system has
it, else the font bundled with Pillow) and wrapped by its measured width to a text column no wider than
the longest line needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.decode_dir import DecodeDir

THUMB = 96
PAD = 8
FONT_SIZE = 13
MAX_TEXT_W = 300  # the text column's widest; narrower when every line is shorter
# Tried in order: fonts with clear word spacing that most Linux systems ship, then Pillow's own.
FONT_FILES = ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf")


def load_font(size: int = FONT_SIZE):
    """A scalable TrueType font of ``size`` pixels: one of :data:`FONT_FILES`, else the font bundled
    with Pillow (>= 10.1), else Pillow's fixed bitmap font."""
    from PIL import ImageFont

    for name in FONT_FILES:
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: no size, no scalable font
        return ImageFont.load_default()


def wrap_text(text: str, max_width: float, width_of: Callable[[str], float]) -> List[str]:
    """Split ``text`` at spaces into lines whose measured width (``width_of``, e.g. a font's
    ``getlength``) is at most ``max_width``; a single word wider than that gets a line of its own.
    Words keep their single spaces: ``" ".join`` of the lines is the whitespace-normalised text."""
    lines: List[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and width_of(candidate) > max_width:
            lines.append(line)
            line = word
        else:
            line = candidate
    return lines + ([line] if line else [])


def draw_retrieval_examples(
    decode_dir: str | Path,
    img_scp: str | Path,
    out_png: str | Path,
    branch: Optional[str] = None,
    n: int = 6,
    topk: int = 5,
) -> Path:
    """Write ``out_png``: ``n`` evenly spaced test utterances of ``decode_dir`` with their top-k images
    (by the ``branch`` embeddings; default parallel if present). Returns the path."""
    from PIL import Image, ImageDraw

    d = DecodeDir.read(decode_dir)
    utts, images, utt2img = d.utts, d.images, d.utt2img
    text = d.transcripts or {}
    keywords: Dict[str, str] = d.keywords or {}
    branch = branch or d.branches[0]
    sim = d.speech(branch) @ d.image().T  # (N, M)
    files = read_kv(img_scp)
    picks = np.linspace(0, len(utts) - 1, min(n, len(utts))).astype(int)

    font = load_font()
    line_h = font.getbbox("Ag")[3] + 3
    blocks = []  # the text lines of each picked utterance
    for i in picks:
        u = utts[i]
        lines = [u] + wrap_text(f'"{text.get(u, "")}"', MAX_TEXT_W, font.getlength)
        if u in keywords:
            lines += wrap_text("keywords: " + keywords[u], MAX_TEXT_W, font.getlength)
        blocks.append(lines)
    text_w = int(max(font.getlength(line) for lines in blocks for line in lines)) + 2 * PAD
    row_hs = [max(THUMB + line_h + PAD, len(lines) * line_h + PAD) for lines in blocks]
    width = text_w + topk * (THUMB + PAD) + PAD
    title = wrap_text(
        f"{branch} branch: top-{topk} images per utterance (green frame = its own image)",
        width - 2 * PAD,
        font.getlength,
    )
    top = len(title) * line_h + 2 * PAD
    canvas = Image.new("RGB", (width, top + sum(row_hs)), "white")
    draw = ImageDraw.Draw(canvas)
    for j, line in enumerate(title):
        draw.text((PAD, PAD + j * line_h), line, fill="black", font=font)
    y = top
    for i, lines, row_h in zip(picks, blocks, row_hs):
        u = utts[i]
        for j, line in enumerate(lines):
            draw.text((PAD, y + j * line_h), line, fill="black", font=font)
        for rank, k in enumerate(np.argsort(-sim[i], kind="stable")[:topk]):
            x = text_w + rank * (THUMB + PAD)
            with Image.open(files[images[k]]) as im:
                thumb = im.convert("RGB").resize((THUMB, THUMB))
            canvas.paste(thumb, (x, y))
            if images[k] == utt2img[u]:
                draw.rectangle([x - 3, y - 3, x + THUMB + 2, y + THUMB + 2], outline=(0, 170, 0), width=4)
            draw.text((x, y + THUMB + 2), f"{rank + 1}: {sim[i, k]:.2f}", fill="black", font=font)
        y += row_h
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png)
    return out_png
