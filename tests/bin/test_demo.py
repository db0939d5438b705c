"""The web page in a real browser: ``python -m espnet_speechclip.bin.demo`` serves the tiny trained hybrid
model on 127.0.0.1 and headless system Chromium uses it as a person would.

The page must show what the API computes (its ranking, its keywords and their spans), say what is wrong
with a bad upload and go on serving, and load nothing from anywhere but its own server. A screenshot is
saved (its path printed; copied to $SPEECHCLIP_TEST_ARTIFACTS when set).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest
from helpers import ROOT

from espnet_speechclip.bin import demo
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.result_types import rank
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.web import browser


def _needs_browser():
    pytest.importorskip("playwright", reason="the browser test needs Playwright (pip install -e '.[test]')")
    if browser.find_chromium() is None:  # make test installs it
        pytest.skip("no Chromium on this machine (make test installs it: apt-get install chromium)")


TOPK = 2
START_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(sc, tmp_path_factory):
    """The page served by the CLI in its own process, stopped afterwards."""
    _needs_browser()
    tmp = tmp_path_factory.mktemp("demo")
    port = _free_port()
    log = tmp / "demo.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", GRADIO_TEMP_DIR=str(tmp / "uploads"))
    cmd = [sys.executable, "-m", "espnet_speechclip.bin.demo", "--model", str(sc["archive"])]
    cmd += ["--images", str(sc["data"]), "--port", str(port), "--topk", str(TOPK)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the page exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with opener.open(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the page did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield dict(proc=proc, url=url, port=port, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _keys(page, element_id):
    return page.eval_on_selector_all(f"#{element_id} [data-key]", "els => els.map(e => e.dataset.key)")


def test_the_page_in_a_browser(server, sc, tmp_path):
    wav_scp, utt2img, img_scp = (read_kv(sc["data"] / n) for n in ("wav.scp", "utt2img", "img.scp"))
    image_keys = sorted(img_scp)
    s2i = Speech2Image.from_pretrained(sc["archive"])
    image_emb = s2i.embed_images([img_scp[k] for k in image_keys])

    def expected(utt):  # the API's answer: top-k image keys, keywords with spans
        result = s2i.query(wav_scp[utt], timing=True)
        return [h.item for h in rank(result.embedding, image_emb, image_keys, TOPK)], result.keywords

    # a test utterance whose own image the model ranks within the top k: the page must show it
    utt = next(u for u in sorted(wav_scp) if utt2img[u] in expected(u)[0])
    top, keywords = expected(utt)
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes, not a recording\n" * 20)

    hosts = set()
    with browser.headless_page(timeout_s=60) as page:
        # where every network request goes (data: and blob: URLs are the page's own memory)
        page.on("request", lambda r: hosts.add(f"{urlparse(r.url).scheme}://{urlparse(r.url).netloc}"))
        browser.open_page(page, server["url"])
        assert "hybrid SpeechCLIP" in page.inner_text("#sc-description")

        # upload a test utterance: the expected image among the top k, the keywords and their spans
        assert browser.upload_speech(page, wav_scp[utt]) == "ok"
        browser.wait_for_images(page, "speech-images")
        assert _keys(page, "speech-images") == top and utt2img[utt] in _keys(page, "speech-images")
        chips = page.eval_on_selector_all("#keywords .sc-chip", "els => els.map(e => e.dataset.token)")
        assert chips == [k.token for k in keywords]
        rows = page.eval_on_selector_all(
            "#keywords g.keyword", "els => els.map(e => [e.dataset.token, e.dataset.start, e.dataset.end])"
        )
        # a keyword without a confident span is drawn without one (data-span="none", no start/end)
        assert rows == [
            [k.token, f"{k.start:.2f}", f"{k.end:.2f}"] if k.start is not None else [k.token, None, None]
            for k in keywords
        ]
        assert page.is_visible("#keywords svg.keyword-figure")

        # a text file as speech: a message naming it, and the page goes on
        assert browser.upload_speech(page, notes) == "error"
        message = page.inner_text("#speech-status")
        assert "notes.txt cannot be decoded" in message and "WAV, FLAC, OGG and MP3" in message
        assert _keys(page, "speech-images") == []
        assert browser.upload_speech(page, wav_scp[utt]) == "ok"
        browser.wait_for_images(page, "speech-images")
        assert _keys(page, "speech-images") == top
        shot = tmp_path / "demo_page.png"
        page.screenshot(path=str(shot), full_page=True)

        # type a text: the images CLIP's text tower ranks first
        page.get_by_role("tab", name="Text \u2192 images / utterances").click()
        previous = browser.status_seq(page, "text-status")
        page.fill("#text-query textarea", "a red square")
        page.click("#text-search")
        assert browser.wait_for_answer(page, "text-status", previous) == "ok"
        query = s2i.embed_texts(["a red square"])[0]
        assert _keys(page, "text-images") == [h.item for h in rank(query, image_emb, image_keys, TOPK)]

    # nothing from the internet: fonts, scripts, telemetry
    assert {h for h in hosts if not h.startswith(("data:", "blob:"))} == {
        f"http://127.0.0.1:{server['port']}"
    }
    assert server["proc"].poll() is None  # still serving
    artifacts = os.environ.get("SPEECHCLIP_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shot = Path(shutil.copy(shot, Path(artifacts) / shot.name))
    print(f"screenshot of the page: {shot}")


def test_screenshot_of_the_page(sc, tmp_path, capsys):
    """The README's picture: --screenshot serves the page, searches the set's first utterance, saves it."""
    _needs_browser()
    from PIL import Image

    out = tmp_path / "page.png"
    demo.main(
        [
            "--model",
            str(sc["archive"]),
            "--images",
            str(sc["data"]),
            "--port",
            str(_free_port()),
            "--screenshot",
            str(out),
        ]
    )
    assert capsys.readouterr().out.strip().endswith(f"wrote {out}")
    with Image.open(out) as im:
        assert im.width == browser.VIEWPORT["width"] and im.height > browser.VIEWPORT["height"] // 2


def test_bad_model_or_image_set_ends_with_a_message(sc, tmp_path, capsys):
    for args, message in (
        (["--model", str(tmp_path / "nope.zip"), "--images", str(sc["data"])], "nope.zip does not exist"),
        (
            ["--model", str(sc["archive"]), "--images", str(tmp_path / "photos")],
            "neither an image folder nor",
        ),
        (["--model", str(sc["archive"]), "--images", str(tmp_path)], "holds no image files"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            demo.main(args)
        assert exit_info.value.code == 1
        assert message in capsys.readouterr().err
