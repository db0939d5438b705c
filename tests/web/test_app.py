"""The page's searches (what each handler puts on the page), without a browser."""

import html
import os
import re

import numpy as np
import pytest
import soundfile as sf

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.web.app import DemoPage, offline_environment
from espnet_speechclip.web.index import SearchIndex


@pytest.fixture(scope="module")
def page(sc):
    s2i = Speech2Image.from_pretrained(sc["archive"])
    return DemoPage(s2i, SearchIndex.build(s2i, sc["data"], progress=False), topk=2)


def _state(answer):
    return re.search(r'data-state="(\w+)"', answer.status)[1]


def _text(markup):
    return html.unescape(re.sub(r"<[^>]+>", " ", markup))


def test_speech_finds_images_keywords_and_where_they_were_heard(page, sc):
    wav_scp, utt2img = read_kv(sc["data"] / "wav.scp"), read_kv(sc["data"] / "utt2img")
    utt = sorted(wav_scp)[0]
    answer = page.search_speech(wav_scp[utt], topk=4, utt=utt)  # picked from the set: truth known
    assert answer.ok and _state(answer) == "ok"
    cards, keywords = answer.panels
    s2i = page.s2i
    result = s2i.query(wav_scp[utt], timing=True)
    ranked = page.index.images_for(result.embedding, 4)
    assert re.findall(r'data-key="([^"]+)"', cards) == [h.item for h in ranked]
    assert re.findall(r'class="sc-card sc-true"[^>]*data-key="([^"]+)"', cards) == [utt2img[utt]]
    where = [h.item for h in ranked].index(utt2img[utt]) + 1
    assert f"its image {utt2img[utt]} is ranked {where}" in answer.status
    # keywords: chips and one figure row each, with the API's spans
    assert re.findall(r'class="sc-chip"[^>]*data-token="([^"]*)"', keywords) == [
        k.token for k in result.keywords
    ]
    rows = re.findall(
        r'<g class="keyword" data-token="[^"]*" data-score="[^"]*" '
        r'(?:data-start="([^"]+)" data-end="([^"]+)"|data-span="none")',
        keywords,
    )
    assert rows == [
        ("", "") if k.start is None else (f"{k.start:.2f}", f"{k.end:.2f}") for k in result.keywords
    ]
    assert "with the stretch alone and with the stretch removed" in keywords

    assert page.search_speech(wav_scp[utt], topk=2).panels[0].count("data-rank=") == 2
    assert _state(page.search_speech(None)) == "info"


def test_bad_uploads_get_a_message_naming_the_file_and_the_page_goes_on(page, sc, tmp_path):
    upload = tmp_path / "gradio" / "0123abcd"  # where an upload lands on the server
    upload.mkdir(parents=True)
    (upload / "notes.txt").write_text("not audio\n" * 20)
    sf.write(upload / "empty.wav", np.zeros(0, np.float32), 16000)
    sf.write(upload / "click.wav", np.zeros(100, np.float32), 16000)
    sf.write(upload / "long.wav", np.zeros(16000 * 3, np.float32), 16000)
    cases = {
        "notes.txt": r"audio file notes.txt cannot be decoded: .* \(the page reads WAV, FLAC, OGG and MP3",
        "empty.wav": "audio file empty.wav is empty",
        "click.wav": "click.wav: 100 samples at 16 kHz, shorter than the speech encoder's minimum of 400",
    }
    for name, message in cases.items():
        answer = page.search_speech(str(upload / name))
        assert not answer.ok and _state(answer) == "error" and answer.panels == ("", "")
        assert re.search(message, _text(answer.status)), answer.status
        assert str(upload) not in answer.status  # the user's file name, not the server's copy
    short = DemoPage(page.s2i, page.index, max_seconds=2)
    answer = short.search_speech(str(upload / "long.wav"))
    assert "long.wav is 3.0 s long; this page takes up to 2 s (--max_seconds)" in _text(answer.status)

    sf.write(upload / "stereo.wav", 0.1 * np.random.RandomState(0).randn(8000, 2), 8000)
    answer = page.search_speech(str(upload / "stereo.wav"))
    assert answer.ok and "8 kHz stereo, converted to 16 kHz mono" in answer.status

    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    page.index.images_for, saved = boom, page.index.images_for
    try:
        answer = page.search_speech(str(upload / "stereo.wav"))
    finally:
        page.index.images_for = saved
    assert not answer.ok and "speech search failed: RuntimeError: boom" in answer.status
    wav = next(iter(read_kv(sc["data"] / "wav.scp").values()))
    assert page.search_speech(wav).ok
    seqs = [int(s) for s in re.findall(r'data-seq="(\d+)"', page.search_speech(wav).status)]
    assert seqs and seqs[0] > 1  # every answer numbered: the browser waits on it


def test_a_long_upload_is_refused_before_it_is_decoded(page, tmp_path, monkeypatch):
    """Minutes of silence compress to a few kB of FLAC but decode to tens of MB: the length comes from the
    header, or decoding stops at the limit when the header does not tell it."""
    import tracemalloc

    upload = tmp_path / "gradio" / "5678efgh"
    upload.mkdir(parents=True)
    sf.write(upload / "silence.flac", np.zeros(16000 * 300, np.int16), 16000)  # 5 min: 19 MB as float32
    short = DemoPage(page.s2i, page.index, max_seconds=2)
    cases = [("300.0 s long", None), ("over 2 s long", property(lambda self: (1 << 63) - 1))]
    for said, frames in cases:  # frames: what the header says (the largest count: unknown)
        if frames is not None:
            monkeypatch.setattr(sf.SoundFile, "frames", frames)
        tracemalloc.start()
        try:
            answer = short.search_speech(str(upload / "silence.flac"))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert not answer.ok
        assert f"silence.flac is {said}; this page takes up to 2 s (--max_seconds)" in _text(answer.status)
        assert peak < 4_000_000, peak  # at most the limit's samples were decoded, not the 19 MB


def test_text_finds_images_or_utterances_and_an_image_finds_its_captions(page, sc, tmp_path):
    answer = page.search_text("a red square", "images", topk=3)
    assert answer.ok and answer.panels[0].count("data-rank=") == 3 and answer.panels[1] == ""
    answer = page.search_text("a red square", "utterances", topk=3)
    assert answer.ok and answer.panels[1].count('<tr class="sc-utt') == 3
    assert "a red square" in answer.panels[1] or "square" in answer.panels[1]  # transcripts shown
    assert _state(page.search_text("  ")) == "info"

    utt2img = read_kv(sc["data"] / "utt2img")
    key = sorted(set(utt2img.values()))[0]
    answer = page.search_image(None, key, topk=len(utt2img))
    truth = sorted(u for u, k in utt2img.items() if k == key)
    assert (
        answer.ok
        and sorted(re.findall(r'class="sc-utt sc-true"[^>]*data-utt="([^"]+)"', answer.panels[0])) == truth
    )
    assert f"{len(truth)} utterance(s) of the set describe this image" in answer.status

    (tmp_path / "photo.png").write_text("not an image")
    answer = page.search_image(str(tmp_path / "photo.png"))
    assert not answer.ok and "image file photo.png cannot be decoded" in answer.status


def test_an_image_folder_has_no_utterance_searches(page, sc):
    folder = DemoPage(
        page.s2i, SearchIndex.build(page.s2i, sc["data"].parent.parent / "images", progress=False)
    )
    assert _state(folder.search_image(None, "x")) == "info"
    answer = folder.search_text("a red square", "utterances")
    assert not answer.ok and "has no utterances" in answer.status
    assert folder.search_text("a red square", "images").ok
    assert "4 images of" in folder.description() and "utterances" not in folder.description()


def test_a_parallel_model_says_it_has_no_keywords(parallel_exp, sc):
    s2i = Speech2Image.from_pretrained(parallel_exp)
    page = DemoPage(s2i, SearchIndex.build(s2i, sc["data"].parent.parent / "images", progress=False))
    answer = page.search_speech(next(iter(read_kv(sc["data"] / "wav.scp").values())))
    assert answer.ok and "This parallel model has no keywords" in answer.panels[1]


def test_offline_environment(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "example.org")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("GRADIO_ANALYTICS_ENABLED", raising=False)
    offline_environment()
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False"
    assert os.environ["NO_PROXY"] == "example.org,127.0.0.1,localhost"
    assert os.environ["no_proxy"] == "127.0.0.1,localhost"
