"""Query a trained SpeechCLIP with one utterance: ranked images, keywords, ranked texts.

    python -m espnet_speechclip.bin.query --model exp/x/packed/model.zip --speech a.wav --images photos/
    python -m espnet_speechclip.bin.query --model exp/x --speech a.wav --texts captions.txt --topk 3

``--model`` is a packed archive, an experiment folder (config.yaml + valid.mean_r10.best.pth, else
latest.pth) or a Hub repo id <namespace>/<name>. ``--images`` takes a folder (every image file in it) or
files. ``--texts`` is a file with one text per line. Cascaded and hybrid models (SpeechCLIP+'s cascaded+
and hybrid+ too) also print their keywords, each with its score and the span of the utterance it was
heard in (seconds: the run of frames around the peak of the keyword's attention, ``not localised``
where the attention has no confident peak; for SpeechCLIP+, the stretch its CIF unit integrated). Results
go to stdout, logs to stderr.

``--index IDX`` searches a collection indexed by ``python -m espnet_speechclip.bin.index build`` (nothing
is embedded but the query: ``--speech``, ``--text`` or ``--image``); the index refuses a model it was not
built with::

    python -m espnet_speechclip.bin.query --model exp/x --index photos.idx --speech a.wav --topk 10
    python -m espnet_speechclip.bin.query --model exp/x --index talks.idx --text "a red circle"
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_speechclip.data.media import MediaError, probe_audio, probe_image
from espnet_speechclip.errors import run_cli
from espnet_speechclip.inference.archive import UNPACK_CACHE_NOTE, PackError
from espnet_speechclip.inference.hub import HubError, parse_repo_id
from espnet_speechclip.inference.inputs import list_images
from espnet_speechclip.inference.result_types import Hit, Keyword
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.weights import WeightsError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=UNPACK_CACHE_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--model",
        required=True,
        help="packed model (.zip), experiment folder or Hub repo id <namespace>/<name>",
    )
    p.add_argument(
        "--model_file",
        default=None,
        help="weights in the experiment folder (default: valid.mean_r10.best.pth, else latest.pth)",
    )
    p.add_argument("--speech", default=None, help="the query utterance (audio file, any sample rate)")
    p.add_argument("--images", nargs="+", default=[], help="image folder(s) or file(s) to rank")
    p.add_argument("--texts", default=None, help="text file, one candidate text per line, to rank")
    p.add_argument("--topk", type=int, default=5, help="how many images / texts to print")
    p.add_argument(
        "--branch",
        default=None,
        choices=["parallel", "cascaded"],
        help="branch whose embedding ranks (default: parallel when the model has it)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--index", default=None, help="search this index folder (bin.index build) instead")
    p.add_argument("--text", default=None, help="with --index: a query text")
    p.add_argument("--image", default=None, help="with --index: a query image file")
    p.add_argument("--mmap", action="store_true", help="with --index: memory-map the index (else by size)")
    return p


def _query_index(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``--index``: one query (speech, text or image) through a prebuilt index of a collection."""
    from espnet_speechclip.index.search import EmbeddingIndex

    given = [(k, v) for k, v in (("speech", args.speech), ("text", args.text), ("image", args.image)) if v]
    if len(given) != 1 or args.images or args.texts:
        parser.error("with --index give exactly one of --speech, --text, --image (and no --images / --texts)")
    what, value = given[0]
    try:
        if what != "text":
            (probe_audio if what == "speech" else probe_image)(value)
    except MediaError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    index = EmbeddingIndex(args.index, mmap=True if args.mmap else None)
    s2i = Speech2Image.from_pretrained(
        args.model, args.model_file, device=args.device, batch_size=args.batch_size
    )
    hits = s2i.search(index, **{what: value}, topk=args.topk, branch=args.branch)
    print(f"query: {value}  (model {args.model}; {index.describe()})")
    _print_hits(f"{index.modality} files", hits, len(index))


def _print_hits(title: str, hits: List[Hit], total: int) -> None:
    print(f"{title} (top {len(hits)} of {total}):")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank:4d}  {hit.score:+.4f}  {hit.item}")


def _print_keywords(keywords: List[Keyword]) -> None:
    print(f"keywords ({len(keywords)}; score, heard from-to seconds):")
    width = max((len(k.token) for k in keywords), default=0)
    for rank, k in enumerate(keywords, 1):
        span = "not localised" if k.start is None or k.end is None else f"{k.start:6.2f}-{k.end:.2f}"
        print(f"{rank:4d}  {k.token:<{width}}  {k.score:.3f}  {span}")


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.topk < 1:
        parser.error("--topk must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.index is not None:
        return _query_index(parser, args)
    if args.speech is None:
        parser.error("--speech is required (or --index with --speech, --text or --image)")
    # Every input is checked before the model loads (which can take many seconds): a wrong path or an
    # undecodable file fails at once, named.
    if not Path(args.model).exists() and parse_repo_id(args.model) is None:
        parser.error(
            f"--model {args.model} does not exist (an experiment folder, a packed .zip or folder, "
            f"or a Hub repo id <namespace>/<name>)"
        )
    images: List[str] = []
    try:
        probe_audio(args.speech)
        for x in args.images:
            images += [str(p) for p in list_images(x)] if Path(x).is_dir() else [x]
        for image in images:
            probe_image(image)
    except MediaError as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    texts: List[str] = []
    if args.texts is not None:
        if not Path(args.texts).is_file():
            parser.error(f"--texts {args.texts} does not exist")
        texts = [t.strip() for t in Path(args.texts).read_text(encoding="utf-8").splitlines() if t.strip()]
        if not texts:
            parser.error(f"--texts {args.texts} holds no text")

    try:
        s2i = Speech2Image.from_pretrained(
            args.model, args.model_file, device=args.device, batch_size=args.batch_size
        )
        if not images and not texts and "cascaded" not in s2i.branches:
            parser.error("give --images and/or --texts (a parallel model has no keywords to show)")
        result = s2i.query(args.speech, images, texts, args.topk, args.branch, timing=True)
    except (FileNotFoundError, MediaError, PackError, HubError, WeightsError) as e:  # bad input, named
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"query: {args.speech}  (model {args.model}, {result.branch} branch)")
    if images:
        _print_hits("images", result.images, len(images))
    if result.keywords is not None:
        _print_keywords(result.keywords)
    if texts:
        _print_hits("texts", result.texts, len(texts))


if __name__ == "__main__":
    run_cli(main)
