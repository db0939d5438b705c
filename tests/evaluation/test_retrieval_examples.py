"""The retrieval picture: text wrapped by measured width with its spaces, no empty gap before the images."""

import random

import numpy as np
import pytest

from espnet_speechclip.evaluation.retrieval_examples import (
    MAX_TEXT_W,
    PAD,
    THUMB,
    draw_retrieval_examples,
    load_font,
    wrap_text,
)


def test_wrap_text_keeps_every_space_and_respects_the_width():
    text = "there is a small green square above a big orange triangle on the left"
    lines = wrap_text(text, 100, lambda s: 6 * len(s))  # 6 px per character
    assert " ".join(lines) == text
    assert all(6 * len(line) <= 100 for line in lines)
    assert len(lines) > 1
    assert wrap_text("a supercalifragilistic word", 30, lambda s: 6 * len(s)) == [
        "a",
        "supercalifragilistic",
        "word",
    ]
    assert wrap_text("   ", 100, len) == []


def test_the_font_is_scalable_with_visible_spaces():
    font = load_font(13)
    assert font.getlength("a small") - font.getlength("asmall") >= 3  # a space a reader can see
    assert load_font(26).getlength("a small") > 1.5 * font.getlength("a small")


def _decode_dir(root, captions, keywords):
    """A finished decode folder over synth scenes: each utterance is closest to its own image."""
    from espnet_speechclip.data.synth.scenes import render, sample_scene

    rng = random.Random(0)
    utts, img_lines = [], []
    for i, _ in enumerate(captions):
        image = root / "images" / f"img{i}.png"
        image.parent.mkdir(parents=True, exist_ok=True)
        render(sample_scene(rng)).save(image)
        img_lines.append(f"img{i} {image}")
        utts.append(f"utt{i}")
    d = root / "decode"
    d.mkdir()
    (d / "utt_list").write_text("".join(f"{u}\n" for u in utts))
    (d / "image_list").write_text("".join(f"img{i}\n" for i in range(len(utts))))
    (d / "utt2img").write_text("".join(f"{u} img{i}\n" for i, u in enumerate(utts)))
    (d / "text").write_text("".join(f"{u} {c}\n" for u, c in zip(utts, captions)))
    (d / "keywords").write_text("".join(f"{u} {k}\n" for u, k in zip(utts, keywords)))
    emb = np.eye(len(utts), dtype=np.float32) + 0.1
    np.save(d / "speech_cascaded.npy", emb)
    np.save(d / "image.npy", emb)
    (root / "img.scp").write_text("".join(f"{line}\n" for line in img_lines))
    return d


@pytest.mark.parametrize(
    "captions, keywords, wide",
    [
        (["a red star", "a blue cross"], ["red star a a", "blue cross a a"], False),
        (
            ["there is a small green square above a big orange triangle on the left"] * 3,
            ["green square orange triangle above small big left"] * 3,
            True,
        ),
    ],
)
def test_picture_text_column_fits_its_text(tmp_path, captions, keywords, wide):
    from PIL import Image

    d = _decode_dir(tmp_path, captions, keywords)
    png = draw_retrieval_examples(d, tmp_path / "img.scp", tmp_path / "out.png", topk=2)
    with Image.open(png) as im:
        width = im.size[0]
        pixels = np.asarray(im.convert("L"))
    font = load_font()
    texts = [f'"{c}"' for c in captions] + [f"keywords: {k}" for k in keywords]
    longest = max(font.getlength(line) for t in texts for line in wrap_text(t, MAX_TEXT_W, font.getlength))
    text_w = width - 2 * (THUMB + PAD) - PAD
    if wide:  # long captions wrap to the column's widest
        assert MAX_TEXT_W - 60 < longest <= MAX_TEXT_W
        assert text_w <= MAX_TEXT_W + 2 * PAD + 1
    else:  # short ones: the column is as wide as they are
        assert text_w <= longest + 2 * PAD + 1
    # the thumbnails start right after the text: no empty band of columns between them
    blank = (pixels[60:] > 250).all(axis=0)
    run = longest_run = 0
    for b in blank[PAD : width - PAD]:
        run = run + 1 if b else 0
        longest_run = max(longest_run, run)
    assert longest_run <= 2 * PAD + 4
