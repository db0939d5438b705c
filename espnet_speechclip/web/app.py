"""The SpeechCLIP web page: Gradio blocks over one :class:`Speech2Image` and one :class:`SearchIndex`.

Three searches, each a method of :class:`DemoPage` that returns HTML (so they are tested without a
browser):

- speech (uploaded or recorded) -> the top-k images; for cascaded and hybrid models the keywords,
  where in the utterance each was heard, and the keyword figure;
- text -> images or utterances, zero-shot through CLIP's frozen text tower;
- an image (of the set, or uploaded) -> the utterances that describe it.

A bad input (not audio, empty, too short or too long, an undecodable image) becomes a message on the
page; handlers never raise, so the server keeps serving. Other sample rates and channel counts are
converted (16 kHz mono) and the page says so.

Why Gradio: it is what speech and CLIP models on model hubs are shown with, so this page also runs as a
hub Space; its audio component uploads and records (encoded as WAV in the browser). It runs fully
offline here: :func:`offline_environment` switches its telemetry and version check off before it is
imported, :func:`launch` opens no share tunnel, starts no Node server (ssr_mode) and no MCP server, and
the default theme's fonts ship inside the package (no font CDN).
"""

from __future__ import annotations

import html
import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, List, NamedTuple, Optional, Tuple

import numpy as np

from espnet_speechclip.data.media import SAMPLE_RATE, MediaError, TooLongError, load_audio
from espnet_speechclip.errors import InputError
from espnet_speechclip.inference.result_types import QueryResult
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.web import render
from espnet_speechclip.web.index import SearchIndex
from espnet_speechclip.web.keyword_figure import keyword_figure

logger = logging.getLogger(__name__)

# How the keyword figure is read, and how each keyword's span is chosen (see
# espnet_speechclip.evaluation.keyword_spans).
KEYWORD_FIGURE_NOTE = (
    "Each row is one keyword's weight over the utterance: for cascaded and hybrid models its query's "
    "attention in the cascaded branch's last layer (mean over heads), for SpeechCLIP+ models the share of "
    "each frame its CIF unit integrated. The dashed line is what attention spread evenly would be. The "
    "shaded span is where the keyword was heard: of every three consecutive syllable-sized stretches of "
    "the signal (cut where its spectrum changes most or its loudness dips), the one the model reads the "
    "keyword from, found by asking the model again with the stretch alone and with the stretch removed; "
    "a keyword that no stretch explains better than the others was heard nowhere in particular and is "
    "marked not localised. For SpeechCLIP+ models the span is the stretch its unit integrated, snapped "
    "onto the syllable-sized stretches of the signal it covers."
)

# Set before Gradio is imported: no telemetry, no version check, nothing sent to the Hub.
OFFLINE_ENV = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1"}
# The pick lists show at most this many entries (a corpus' test set can hold 25k utterances).
MAX_CHOICES = 1000
TOPK_MAX = 20


def offline_environment() -> None:
    """Switch Gradio's network use off (call before importing gradio), and keep the loopback address
    away from any HTTP proxy: Gradio checks its own server over HTTP at start-up."""
    os.environ.update(OFFLINE_ENV)
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


def _input_error(e: Exception, path: str, name: str) -> str:
    """An error message about an upload, naming the file as the user knows it (not its server copy)."""
    return str(e).replace(str(path), name)


class Answer(NamedTuple):
    """A search's result: whether the input was usable, the status line, and the result panels (HTML)."""

    ok: bool
    status: str
    panels: Tuple[str, ...]


class DemoPage:
    """The page's state and searches; each search returns an :class:`Answer` and never raises.

    Args:
        s2i: the model.
        index: the embedded image set (and utterances).
        topk: default number of results.
        max_seconds: longest utterance accepted from the page.
    """

    def __init__(self, s2i: Speech2Image, index: SearchIndex, topk: int = 5, max_seconds: float = 60.0):
        if topk < 1:
            raise InputError(f"topk must be at least 1, got {topk}")
        if max_seconds <= 0:
            raise InputError(f"max_seconds must be positive, got {max_seconds}")
        self.s2i = s2i
        self.index = index
        self.topk = topk
        self.max_seconds = max_seconds
        self._seq = itertools.count(1)
        # Gradio runs different events concurrently; the model is used by one at a time.
        self._lock = threading.Lock()

    # --------------------------------------------------------------------------------- about
    @property
    def has_keywords(self) -> bool:
        return "cascaded" in self.s2i.branches

    def description(self) -> str:
        """One line about the model and the set, for the page header."""
        kind = self.s2i.config.get("model", "/".join(self.s2i.branches))
        parts = [
            f"{kind} SpeechCLIP ({', '.join(self.s2i.branches)} branch{'es' * (len(self.s2i.branches) > 1)})"
        ]
        if self.has_keywords:
            parts.append(f"{self.s2i.model.cascaded.num_keywords} keywords per utterance")
        parts.append(f"model {self.s2i.source}")
        sizes = f"{len(self.index.image_keys)} images"
        if self.index.has_utterances:
            sizes += f" and {len(self.index.utt_ids)} utterances"
        parts.append(f"{sizes} of {self.index.lists.source}")
        return " \u00b7 ".join(parts)

    def utterance_choices(self) -> List[Tuple[str, str]]:
        """(label, utterance id) for the pick list: id and transcript."""
        out = []
        for utt in self.index.utt_ids[:MAX_CHOICES]:
            text = self.index.lists.transcripts.get(utt, "")
            out.append((f"{utt} \u2014 {text}" if text else utt, utt))
        return out

    def image_choices(self) -> List[str]:
        return self.index.image_keys[:MAX_CHOICES]

    def _safely(self, what: str, call: Callable[[], Answer], n_panels: int, name: str = "") -> Answer:
        """Run a search; any unexpected failure becomes an error status (and a log with traceback)."""
        try:
            with self._lock:
                return call()
        except Exception as e:  # the page must keep serving whatever a request does
            logger.exception("%s failed", what)
            message = f"{what} failed: {type(e).__name__}: {e}"
            status = render.status("error", message, seq=next(self._seq), file=name)
            return Answer(False, status, ("",) * n_panels)

    # ----------------------------------------------------------------------- speech -> images
    def search_speech(
        self, audio: Optional[str], topk: int = 5, branch: Optional[str] = None, utt: Optional[str] = None
    ) -> Answer:
        """An audio file -> panels (image cards, keywords: chips and figure). ``utt``: the set's
        utterance the file is (picked from the list), whose true image is then marked."""
        if not audio:
            status = render.status("info", "Upload or record an utterance, or pick one of the set.")
            return Answer(False, status, ("", ""))
        name = Path(audio).name
        return self._safely(
            "speech search", lambda: self._search_speech(audio, name, topk, branch, utt), 2, name
        )

    def _search_speech(
        self, audio: str, name: str, topk: int, branch: Optional[str], utt: Optional[str]
    ) -> Answer:
        seq = next(self._seq)
        try:
            try:  # any rate and channel count -> 16 kHz mono; the length checked before decoding
                wav = load_audio(audio, max_seconds=self.max_seconds)
            except TooLongError as e:
                length = f"over {self.max_seconds:g} s" if e.seconds is None else f"{e.seconds:.1f} s"
                raise MediaError(
                    f"{name} is {length} long; this page takes up to {self.max_seconds:g} s (--max_seconds)"
                ) from None
            result = self.s2i.query(wav, branch=branch, timing=self.has_keywords, name=name)
        except (MediaError, ValueError, TypeError) as e:
            message = _input_error(e, audio, name)
            if "cannot be decoded" in message:
                message += " (the page reads WAV, FLAC, OGG and MP3 files)"
            return Answer(False, render.status("error", message, seq=seq, file=name), ("", ""))
        ranking = self.index.images_for(result.embedding, None)
        detail = f"The {result.branch} branch ranks the {len(ranking)} images."
        true_key = self.index.lists.utt2img.get(utt) if utt else None
        if true_key is not None:
            where = next(r for r, h in enumerate(ranking, 1) if h.item == true_key)
            text = self.index.lists.transcripts.get(utt)
            detail += f" Utterance {utt}" + (f" (\u201c{text}\u201d)" if text else "")
            detail += f": its image {true_key} is ranked {where}."
        message = f"{name}: {len(wav) / SAMPLE_RATE:.2f} s{_conversion(audio)}"
        status = render.status("ok", message, detail, seq=seq, file=name)
        cards = render.image_cards(ranking[: int(topk)], self.index.lists.images, true_key)
        return Answer(True, status, (cards, self._keywords_html(result, wav)))

    def _keywords_html(self, result: QueryResult, wav: np.ndarray) -> str:
        if result.timing is None:
            return render.note(
                "This parallel model has no keywords; cascaded and hybrid SpeechCLIP models show theirs here."
            )
        return (
            "<h3>Keywords and where they were heard</h3>"
            + render.keyword_chips(result.keywords)
            + keyword_figure(wav, result.timing)
            + render.note(KEYWORD_FIGURE_NOTE)
        )

    def pick_utterance(self, utt: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
        """An utterance of the set -> (its audio file, its id)."""
        if not utt:
            return None, None
        return self.index.utterance_path(utt), utt

    # ---------------------------------------------------------------- text -> images / utterances
    def search_text(
        self, text: Optional[str], target: str = "images", topk: int = 5, branch: Optional[str] = None
    ) -> Answer:
        """A text -> panels (image cards, utterance table); ``target`` images or utterances."""
        text = (text or "").strip()
        if not text:
            return Answer(False, render.status("info", "Type a text, e.g. a caption."), ("", ""))
        return self._safely("text search", lambda: self._search_text(text, target, topk, branch), 2)

    def _search_text(self, text: str, target: str, topk: int, branch: Optional[str]) -> Answer:
        seq = next(self._seq)
        query = self.s2i.embed_texts([text])[0]
        quoted = f"\u201c{text}\u201d"
        if target == "utterances":
            if not self.index.has_utterances:
                message = "This image set has no utterances: start the page with a data dir to search them."
                return Answer(False, render.status("error", message, seq=seq), ("", ""))
            branch = branch or self.s2i.branches[0]
            hits = self.index.utterances_for(query, branch, int(topk))
            message = f"{quoted} \u2192 {len(self.index.utt_ids)} utterances ({branch} branch, zero-shot)"
            table = render.utterance_table(
                hits, self.index.lists.utterances, self.index.lists.transcripts, self.index.keywords
            )
            return Answer(True, render.status("ok", message, seq=seq), ("", table))
        hits = self.index.images_for(query, int(topk))
        message = f"{quoted} \u2192 {len(self.index.image_keys)} images (CLIP text tower)"
        cards = render.image_cards(hits, self.index.lists.images)
        return Answer(True, render.status("ok", message, seq=seq), (cards, ""))

    # ---------------------------------------------------------------------- image -> utterances
    def pick_image(self, key: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
        """An image of the set -> (its file, its key)."""
        if not key:
            return None, None
        return self.index.image_path(key), key

    def search_image(
        self, image: Optional[str], key: Optional[str] = None, topk: int = 5, branch: Optional[str] = None
    ) -> Answer:
        """An image file (``key``: the set's image it is) -> panel (utterance table)."""
        if not self.index.has_utterances:
            return Answer(False, render.status("info", "This image set has no utterances to search."), ("",))
        if not image and not key:
            return Answer(False, render.status("info", "Pick an image of the set or upload one."), ("",))
        name = key or Path(image).name
        return self._safely(
            "image search", lambda: self._search_image(image, key, name, topk, branch), 1, name
        )

    def _search_image(
        self, image: Optional[str], key: Optional[str], name: str, topk: int, branch: Optional[str]
    ) -> Answer:
        seq = next(self._seq)
        if key is not None and key in self.index.lists.images:
            query = self.index.image_emb[self.index.image_keys.index(key)]
        else:
            try:
                query = self.s2i.embed_images([image])[0]
            except (MediaError, TypeError) as e:
                status = render.status("error", _input_error(e, image, name), seq=seq, file=name)
                return Answer(False, status, ("",))
            key = None
        branch = branch or self.s2i.branches[0]
        hits = self.index.utterances_for(query, branch, int(topk))
        truth = [u for u, k in self.index.lists.utt2img.items() if k == key] if key else []
        message = f"{name} \u2192 {len(self.index.utt_ids)} utterances ({branch} branch)"
        detail = f"{len(truth)} utterance(s) of the set describe this image." if key else ""
        table = render.utterance_table(
            hits, self.index.lists.utterances, self.index.lists.transcripts, self.index.keywords, truth
        )
        return Answer(True, render.status("ok", message, detail, seq=seq, file=name), (table,))


def _conversion(path: str) -> str:
    """`` (44.1 kHz stereo, converted to 16 kHz mono)`` when the file was not 16 kHz mono."""
    import soundfile as sf

    try:
        info = sf.info(path)
    except Exception:  # decodable by load_audio already; the note is optional
        return ""
    if info.samplerate == SAMPLE_RATE and info.channels == 1:
        return ""
    channels = {1: "mono", 2: "stereo"}.get(info.channels, f"{info.channels} channels")
    return f" ({info.samplerate / 1000:g} kHz {channels}, converted to 16 kHz mono)"


def build_blocks(page: DemoPage) -> Any:
    """The page's Gradio Blocks (not launched)."""
    offline_environment()
    import gradio as gr

    index, branches = page.index, page.s2i.branches
    with gr.Blocks(title="SpeechCLIP", analytics_enabled=False) as blocks:
        gr.HTML(
            '<div class="sc-header"><h1 style="margin:0 0 4px">SpeechCLIP</h1>'
            f'<div class="sc-note" id="sc-description">{html.escape(page.description())}</div></div>'
        )
        with gr.Row():
            topk = gr.Slider(1, TOPK_MAX, value=min(page.topk, TOPK_MAX), step=1, label="results", scale=2)
            branch = gr.Radio(
                branches,
                value=branches[0],
                label="branch that ranks",
                visible=len(branches) > 1,
                elem_id="branch",
                scale=1,
            )
        with gr.Tabs():
            with gr.Tab("Speech \u2192 images", id="speech"):
                with gr.Row():
                    with gr.Column(scale=2):
                        # Uploads go through a plain upload button, not the audio component's own: that
                        # one refuses other file types in the browser, and the page should say itself
                        # what is wrong with a file (and the button stays there for the next upload).
                        upload = gr.UploadButton(
                            "Upload an audio file",
                            type="filepath",
                            elem_id="speech-upload",
                            variant="primary",
                        )
                        audio = gr.Audio(
                            sources=["microphone"],
                            type="filepath",
                            label="record, or listen to the query",
                            elem_id="speech-input",
                        )
                        picked = gr.State(None)
                        pick = gr.Dropdown(
                            page.utterance_choices(),
                            value=None,
                            label=f"or pick an utterance of the set (first {MAX_CHOICES} listed)"
                            if len(index.utt_ids) > MAX_CHOICES
                            else "or pick an utterance of the set",
                            visible=index.has_utterances,
                            elem_id="speech-pick",
                        )
                        search = gr.Button("Search again", variant="secondary")
                    with gr.Column(scale=3):
                        status = gr.HTML(page.search_speech(None).status, elem_id="speech-status")
                        images = gr.HTML(elem_id="speech-images")
                keywords = gr.HTML(elem_id="keywords")
                outputs = [status, images, keywords]

                def on_upload(path, k, b):  # -> results, the file for the player (if usable), no pick
                    answer = page.search_speech(path, k, b)
                    return (answer.status, *answer.panels, path if answer.ok else None, None)

                def on_record(path, k, b):
                    answer = page.search_speech(path, k, b)
                    return (answer.status, *answer.panels, None)

                def on_search(path, k, b, utt):
                    answer = page.search_speech(path, k, b, utt)
                    return (answer.status, *answer.panels)

                upload.upload(on_upload, [upload, topk, branch], [*outputs, audio, picked])
                audio.stop_recording(on_record, [audio, topk, branch], [*outputs, picked])
                pick.input(page.pick_utterance, pick, [audio, picked]).then(
                    on_search, [audio, topk, branch, picked], outputs
                )
                search.click(on_search, [audio, topk, branch, picked], outputs)

            with gr.Tab("Text \u2192 images / utterances", id="text"):
                with gr.Row():
                    text = gr.Textbox(
                        label="text",
                        placeholder="a red circle above a blue square",
                        scale=4,
                        elem_id="text-query",
                    )
                    target = gr.Radio(
                        ["images", "utterances"] if index.has_utterances else ["images"],
                        value="images",
                        label="find",
                        scale=1,
                        elem_id="text-target",
                    )
                text_button = gr.Button("Search", variant="primary", elem_id="text-search")
                text_status = gr.HTML(page.search_text(None).status, elem_id="text-status")
                text_images = gr.HTML(elem_id="text-images")
                text_utts = gr.HTML(elem_id="text-utterances")

                def on_text(query, where, k, b):
                    answer = page.search_text(query, where, k, b)
                    return (answer.status, *answer.panels)

                for event in (text.submit, text_button.click):
                    event(on_text, [text, target, topk, branch], [text_status, text_images, text_utts])

            with gr.Tab("Image \u2192 utterances", id="image"):
                if not index.has_utterances:
                    gr.HTML(
                        render.note(
                            f"{index.lists.source} is an image folder, so there are no utterances to find. "
                            "Start the page with a data dir (img.scp and wav.scp; text and utt2img "
                            "are shown when present) to find the spoken captions of an image."
                        )
                    )
                else:
                    with gr.Row():
                        with gr.Column(scale=2):
                            image_pick = gr.Dropdown(
                                page.image_choices(),
                                value=None,
                                label="pick an image of the set",
                                elem_id="image-pick",
                            )
                            image_upload = gr.UploadButton(
                                "or upload an image", type="filepath", elem_id="image-upload"
                            )
                            image_key = gr.State(None)
                            image = gr.Image(
                                type="filepath",
                                interactive=False,
                                label="the query",
                                height=260,
                                elem_id="image-input",
                            )
                        with gr.Column(scale=3):
                            image_status = gr.HTML(page.search_image(None).status, elem_id="image-status")
                            image_utts = gr.HTML(elem_id="image-utterances")

                    def on_image(path, key, k, b):
                        answer = page.search_image(path, key, k, b)
                        return (answer.status, *answer.panels)

                    def on_image_upload(path, k, b):  # -> results, the image to show (if usable), no key
                        answer = page.search_image(path, None, k, b)
                        return (answer.status, *answer.panels, path if answer.ok else None, None)

                    image_pick.input(page.pick_image, image_pick, [image, image_key]).then(
                        on_image, [image, image_key, topk, branch], [image_status, image_utts]
                    )
                    image_upload.upload(
                        on_image_upload,
                        [image_upload, topk, branch],
                        [image_status, image_utts, image, image_key],
                    )
    return blocks


def launch(
    page: DemoPage,
    host: str = "127.0.0.1",
    port: Optional[int] = None,
    block: bool = True,
) -> Any:
    """Serve the page on ``host:port`` (port None: the first free one from 7860), offline. With
    ``block`` False, return the running Blocks at once (its ``local_url``; stop it with ``close()``)."""
    offline_environment()
    import gradio as gr

    blocks = build_blocks(page)
    blocks.queue(default_concurrency_limit=1)
    blocks.launch(
        server_name=host,
        server_port=port,
        share=False,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        enable_monitoring=False,
        inbrowser=False,
        prevent_thread_lock=not block,
        allowed_paths=page.index.folders(),
        max_file_size="100mb",
        theme=gr.themes.Default(primary_hue="blue"),
        css=render.CSS,
    )
    return blocks
