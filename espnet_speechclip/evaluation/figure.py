"""A picture of retrieval results: test utterances (transcript, keywords) next to their top-5 images.

Drawn with PIL alone so a results page needs no plotting stack. The true image of each utterance has a
green frame where it was retrieved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.decode_dir import DecodeDir

THUMB = 96
TEXT_W = 360
ROW_H = THUMB + 16
PAD = 8


def _wrap(text: str, width: int = 44) -> List[str]:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
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
    sim = d.speech(branch) @ d.image().T
    files = read_kv(img_scp)
    picks = np.linspace(0, len(utts) - 1, min(n, len(utts))).astype(int)
    canvas = Image.new("RGB", (TEXT_W + topk * (THUMB + PAD) + PAD, PAD + len(picks) * ROW_H + 24), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text(
        (PAD, 4), f"{branch} branch: top-{topk} images per utterance (green = its own image)", fill="black"
    )
    for row, i in enumerate(picks):
        y = 24 + row * ROW_H
        u = utts[i]
        lines = [u] + _wrap(f'"{text.get(u, "")}"')
        if u in keywords:
            lines += _wrap("keywords: " + keywords[u])
        for j, line in enumerate(lines[:7]):
            draw.text((PAD, y + 12 * j), line, fill="black")
        for rank, k in enumerate(np.argsort(-sim[i], kind="stable")[:topk]):
            x = TEXT_W + rank * (THUMB + PAD)
            with Image.open(files[images[k]]) as im:
                thumb = im.convert("RGB").resize((THUMB, THUMB))
            canvas.paste(thumb, (x, y))
            if images[k] == utt2img[u]:
                draw.rectangle([x - 3, y - 3, x + THUMB + 2, y + THUMB + 2], outline=(0, 170, 0), width=4)
            draw.text((x, y + THUMB + 1), f"{rank + 1}: {sim[i, k]:.2f}", fill="black")
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_png)
    return out_png
