"""Time corpus-scale scoring on the CPU: retrieval, zero-shot text retrieval and keyword hit rates.

The sizes default to the SpokenCOCO test set (Karpathy split): 25k utterances, 5k images with five
captions each, CLIP Base's 512-dimensional embeddings, K = 8 keywords, captions of 12 BPE tokens.
Embeddings, keywords and captions are random; the metric functions do the same work on any values.
Each part is run ``--repeats`` times and its median reported, split as ``scoring.score_decode_dir``
splits it:

- ``similarity``: speech (N, D) @ images (M, D)^T;
- ``retrieval_recall``: R@1/5/10 both ways over that (N, M) matrix;
- ``text_similarity`` + ``grouped_recall``: zero-shot speech->text and text->speech over the (N, N)
  speech-transcript matrix (the transpose for text->speech, as the scorer passes it);
- ``keyword_hit_rate``: (N, K) keyword ids against N caption token lists.

The aim: similarity + retrieval_recall well under 5 s on 2 cores.

    python bench/scoring.py --json scoring.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F

CAPTION_TOKENS = 12  # BPE tokens of a typical SpokenCOCO / Flickr8k caption
CAPTIONS_PER_IMAGE = 5
VOCAB = 49406  # ids below SOT / EOT


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(num_utts: int, num_images: int, dim: int, keywords: int, repeats: int) -> Dict[str, float]:
    """-> seconds per part (median of ``repeats``), keyed as in the module docstring."""
    from espnet_speechclip.evaluation.keywords import keyword_hit_rate
    from espnet_speechclip.evaluation.retrieval import grouped_recall, retrieval_recall

    g = torch.Generator().manual_seed(0)
    speech = F.normalize(torch.randn(num_utts, dim, generator=g), dim=-1)
    image = F.normalize(torch.randn(num_images, dim, generator=g), dim=-1)
    text = F.normalize(torch.randn(num_utts, dim, generator=g), dim=-1)
    utt2img = torch.arange(num_utts) // CAPTIONS_PER_IMAGE % num_images
    keyword_ids = torch.randint(1, VOCAB, (num_utts, keywords), generator=g)
    # A list of per-caption id lists: what the scorer builds from the transcripts.
    captions = torch.randint(1, VOCAB, (num_utts, CAPTION_TOKENS), generator=g).tolist()

    sim = speech @ image.t()
    text_sim = speech @ text.t()
    seconds = {
        "similarity": median_seconds(lambda: speech @ image.t(), repeats),
        "retrieval_recall": median_seconds(lambda: retrieval_recall(sim, utt2img), repeats),
        "text_similarity": median_seconds(lambda: speech @ text.t(), repeats),
        "grouped_recall": median_seconds(
            lambda: (
                grouped_recall(text_sim, utt2img, utt2img),
                grouped_recall(text_sim.t(), utt2img, utt2img),
            ),
            repeats,
        ),
        "keyword_hit_rate": median_seconds(lambda: keyword_hit_rate(keyword_ids, captions), repeats),
    }
    seconds["retrieval_total"] = seconds["similarity"] + seconds["retrieval_recall"]
    return seconds


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num_utts", type=int, default=25000)
    parser.add_argument("--num_images", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=512, help="embedding width (CLIP Base 512, Large 768)")
    parser.add_argument("--keywords", type=int, default=8, help="K, keyword slots of the cascaded branch")
    parser.add_argument("--repeats", type=int, default=3, help="runs per part; the median is reported")
    parser.add_argument("--json", help="write the results here as JSON")
    args = parser.parse_args(argv)
    if args.num_utts < args.num_images or args.repeats < 1:
        parser.error("need num_utts >= num_images (every image has a caption) and repeats >= 1")
    return args


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    seconds = run(args.num_utts, args.num_images, args.dim, args.keywords, args.repeats)
    report = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        num_utts=args.num_utts,
        num_images=args.num_images,
        dim=args.dim,
        keywords=args.keywords,
        repeats=args.repeats,
        seconds=seconds,
    )
    print(
        f"| part ({args.num_utts} utterances x {args.num_images} images, {torch.get_num_threads()} threads) "
        f"| seconds |\n|---|---:|"
    )
    for part, s in seconds.items():
        print(f"| {part} | {s:.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
