"""The page in a real browser: headless system Chromium driven by Playwright.

Used for the page's screenshot (``python -m espnet_speechclip.bin.demo ... --screenshot page.png``) and
by the browser test. Playwright's own browser download needs the internet; the system's Chromium
(Debian: ``apt-get install chromium``; or the file named by ``SPEECHCLIP_CHROMIUM``) is launched
instead, with a fresh profile and its background network use switched off.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from espnet_speechclip.errors import RunError

CHROMIUM_ENV = "SPEECHCLIP_CHROMIUM"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, as root in containers (no sandbox), and quiet: no QUIC, first-run, sync, component
# updates or other background requests; and no name resolution but the loopback's, since even so
# Chromium looks up its update and account servers (no lookup can then hang without a network).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)
VIEWPORT = {"width": 1280, "height": 900}


def find_chromium() -> Optional[str]:
    """The Chromium executable: ``$SPEECHCLIP_CHROMIUM``, else the first of chromium, chromium-browser,
    google-chrome on PATH; None when there is none."""
    explicit = os.environ.get(CHROMIUM_ENV)
    if explicit:
        return explicit if Path(explicit).is_file() else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@contextmanager
def headless_page(timeout_s: float = 60.0) -> Iterator:
    """A Playwright page in headless system Chromium (a fresh profile), closed afterwards.

    Raises:
        RuntimeError: no Chromium, or Playwright missing (both named in the message).
    """
    executable = find_chromium()
    if executable is None:
        raise RunError(
            f"no Chromium found (looked for ${CHROMIUM_ENV} and {', '.join(CHROMIUM_NAMES)} on PATH): "
            f"install it, e.g. apt-get install chromium"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:
        raise RunError("the page's browser needs Playwright: pip install 'espnet-speechclip[test]'") from e
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=executable, headless=True, args=list(CHROMIUM_FLAGS), timeout=timeout_s * 1000
        )
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(timeout_s * 1000)
            yield page
        finally:
            browser.close()


def open_page(page, url: str) -> None:
    """Load the demo page and wait until its speech upload is there."""
    page.goto(url)
    page.wait_for_selector("#speech-upload")


def status_seq(page, status_id: str) -> int:
    """The sequence number of the last answer shown in a status box (0 before any)."""
    value = page.eval_on_selector(f"#{status_id}", "el => el.querySelector('[data-seq]')?.dataset.seq || '0'")
    return int(value)


def wait_for_answer(page, status_id: str, previous: int, timeout_s: float = 120.0) -> str:
    """Wait until the status box ``status_id`` shows an answer newer than ``previous``; its state
    (ok or error)."""
    page.wait_for_function(
        "([id, prev]) => { const el = document.querySelector('#' + id + ' [data-seq]');"
        " return el !== null && Number(el.dataset.seq) > prev; }",
        arg=[status_id, previous],
        timeout=timeout_s * 1000,
    )
    return page.eval_on_selector(f"#{status_id} [data-seq]", "el => el.dataset.state")


def wait_for_images(page, element_id: str, timeout_s: float = 60.0) -> None:
    """Wait until every image inside ``element_id`` has loaded (the page keeps a connection open, so
    "network idle" never comes)."""
    page.wait_for_function(
        "id => [...document.querySelectorAll('#' + id + ' img')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        arg=element_id,
        timeout=timeout_s * 1000,
    )


def choose_file(page, button_id: str, path: str | Path) -> None:
    """Click an upload button and choose ``path`` in the file dialog, as a user does."""
    with page.expect_file_chooser() as chooser:
        page.click(f"#{button_id}")
    chooser.value.set_files(str(path))


def upload_speech(page, audio: str | Path, timeout_s: float = 120.0) -> str:
    """Upload an audio file as the speech query and wait for the answer; its state (ok or error)."""
    previous = status_seq(page, "speech-status")
    choose_file(page, "speech-upload", audio)
    return wait_for_answer(page, "speech-status", previous, timeout_s)


def screenshot(
    url: str, out_png: str | Path, speech: Optional[str | Path] = None, timeout_s: float = 120.0
) -> Path:
    """Open the page at ``url``, search with ``speech`` (when given), and save a full-page screenshot."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with headless_page(timeout_s) as page:
        open_page(page, url)
        if speech is not None:
            state = upload_speech(page, speech, timeout_s)
            if state != "ok":
                message = page.inner_text("#speech-status")
                raise RunError(f"the page did not take {speech}: {message}")
            wait_for_images(page, "speech-images", timeout_s)
        page.screenshot(path=str(out_png), full_page=True)
    return out_png
