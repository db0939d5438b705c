"""Try a trained SpeechCLIP in a web page: speech -> images with its keywords and where they were heard,
text -> images or utterances, image -> utterances.

    python -m espnet_speechclip.bin.demo --model exp/synth_cascaded/packed/model.zip \
        --images dump/raw/synth_test
    python -m espnet_speechclip.bin.demo --model exp/synth_cascaded --images photos/ --port 8080
    python -m espnet_speechclip.bin.demo --model ... --images ... --screenshot page.png

``--model`` takes what ``Speech2Image.from_pretrained`` takes (a packed archive or an experiment folder).
``--images`` is a folder of images or a data dir (``img.scp``; with ``wav.scp`` its utterances can be
searched too, with ``text`` and ``utt2img`` shown). Relative paths in a data dir are read from the
current directory: start the page where the recipe runs. The set is embedded once at start-up;
``--index IDX`` instead searches an image collection indexed by ``python -m espnet_speechclip.bin.index
build`` (nothing is embedded at start-up; the index must have been built with this model).

The page is served on 127.0.0.1 (``--host 0.0.0.0`` to reach it from elsewhere) and uses no network.
``--screenshot PNG`` serves it, opens it in headless Chromium, searches with ``--screenshot_speech``
(default: the set's first utterance), saves the picture and exits.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="packed model (.zip) or experiment folder")
    p.add_argument(
        "--model_file",
        default=None,
        help="weights in the experiment folder (default: valid.mean_r10.best.pth, else latest.pth)",
    )
    p.add_argument(
        "--images", default=None, help="image folder, or data dir (img.scp [wav.scp text utt2img])"
    )
    p.add_argument(
        "--index", default=None, help="an image index folder (bin.index build) instead of --images"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on")
    p.add_argument("--port", type=int, default=None, help="port (default: the first free one from 7860)")
    p.add_argument("--topk", type=int, default=5, help="results shown at first")
    p.add_argument(
        "--max_utterances", type=int, default=None, help="embed only the first N utterances of the data dir"
    )
    p.add_argument("--max_seconds", type=float, default=60.0, help="longest utterance the page accepts")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--screenshot", default=None, help="save a screenshot of the page to this PNG and exit")
    p.add_argument("--screenshot_speech", default=None, help="audio file searched for the screenshot")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.topk < 1:
        parser.error("--topk must be at least 1")
    if (args.images is None) == (args.index is None):
        parser.error("give --images or --index")
    if args.max_utterances is not None and args.max_utterances < 1:
        parser.error("--max_utterances must be at least 1")
    # this package's progress at INFO; the libraries' (model loading, HTTP checks) only when they warn
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    logging.getLogger("espnet_speechclip").setLevel(logging.INFO)
    from espnet_speechclip.config import ConfigError
    from espnet_speechclip.data.media import MediaError
    from espnet_speechclip.inference.archive import PackError
    from espnet_speechclip.inference.speech2image import Speech2Image
    from espnet_speechclip.web.app import DemoPage, launch
    from espnet_speechclip.web.index import SearchIndex

    try:
        # the source goes through unchanged: whatever from_pretrained resolves, the page takes
        s2i = Speech2Image.from_pretrained(
            args.model, args.model_file, device=args.device, batch_size=args.batch_size
        )
        if args.index is not None:
            from espnet_speechclip.index.search import EmbeddingIndex
            from espnet_speechclip.web.index import IndexedImages

            collection = EmbeddingIndex(args.index)
            collection.check(s2i)
            index = IndexedImages(collection)
        else:
            index = SearchIndex.build(s2i, args.images, max_utterances=args.max_utterances)
        page = DemoPage(s2i, index, topk=args.topk, max_seconds=args.max_seconds)
    except (FileNotFoundError, MediaError, PackError, ConfigError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")

    if args.screenshot is None:
        print(
            "Serving the SpeechCLIP page; open the local URL below in a browser (Ctrl-C stops).", flush=True
        )
        launch(page, args.host, args.port, block=True)
        return
    from espnet_speechclip.web.browser import screenshot

    speech = args.screenshot_speech
    if speech is None and index.has_utterances:
        speech = index.utterance_path(index.utt_ids[0])
    blocks = launch(page, args.host, args.port, block=False)
    try:
        out = screenshot(blocks.local_url, args.screenshot, speech)
    except RuntimeError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    finally:
        blocks.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
