"""Acceptance check of the built-in default run: prints the figures and checks the quality floors.

    python -m espnet_speechclip.bin.synth_acceptance --exp_dir egs2/speechclip/sc1/exp

Reads ``<exp_dir>/synth_parallel`` and ``<exp_dir>/synth_cascaded`` (stages 6-7 of ``./run.sh``) and
checks, on the synth test set:
- parallel: speech->image R@1 >= 55, image->speech R@1 >= 60, zero-shot speech->text R@1 >= 45;
- cascaded: speech->image R@1 >= 45, keyword hit rate avg >= 70, and >= 8 distinct colour or shape
  words of the corpus among its test-set keywords (function words hit trivially; discovery means
  content words).
It also prints the content-word hit rate next to its chance baselines. Exits 1 if a floor is missed.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from espnet_speechclip.data.synth.scenes import COLOURS, SHAPES
from espnet_speechclip.errors import run_cli
from espnet_speechclip.evaluation.keywords import content_word_hit_rate
from espnet_speechclip.inference.decode_dir import DecodeDir
from espnet_speechclip.models.clip import decode_token, text_token_ids
from espnet_speechclip.naming import exp_name, set_name

CORPUS = "synth"
STOP_WORDS = (
    "a",
    "an",
    "the",
    "is",
    "there",
    "of",
    "on",
    "and",
    "at",
    "in",
    "to",
    "with",
    "above",
    "below",
    "left",
    "right",
)


def check(exp_dir: Path, test_set: str = set_name(CORPUS, "test")) -> bool:
    parallel_exp = exp_dir / exp_name(CORPUS, "conf/synth/parallel.yaml")
    cascaded_exp = exp_dir / exp_name(CORPUS, "conf/synth/cascaded.yaml")
    par = json.loads((parallel_exp / "results.json").read_text())[test_set]["parallel"]
    cas = json.loads((cascaded_exp / "results.json").read_text())[test_set]["cascaded"]
    dec = DecodeDir.read(cascaded_exp / f"decode_{test_set}")
    keyword_ids = dec.array("keyword_ids")
    words = {decode_token(int(i)) for i in keyword_ids.flatten()}
    content = sorted(words & (set(COLOURS) | set(SHAPES)))
    stop_ids = [i for w in STOP_WORDS for i in text_token_ids(w)]
    content_rate = content_word_hit_rate(
        torch.from_numpy(keyword_ids), [text_token_ids(dec.transcripts[u]) for u in dec.utts], stop_ids
    )
    floors = [
        ("parallel speech->image R@1", par["speech_to_image"]["R@1"], 55),
        ("parallel image->speech R@1", par["image_to_speech"]["R@1"], 60),
        ("parallel zero-shot speech->text R@1", par["speech_to_text"]["R@1"], 45),
        ("cascaded speech->image R@1", cas["speech_to_image"]["R@1"], 45),
        ("cascaded keyword hit rate avg", cas["keyword_hit_rate"]["avg"], 70),
        ("distinct colour/shape keywords", len(content), 8),
    ]
    ok = True
    print(f"{'figure':40s} {'value':>8s} {'floor':>6s}")
    for name, value, floor in floors:
        passed = value >= floor
        ok &= passed
        print(f"{name:40s} {value:8.1f} {floor:6d}  {'ok' if passed else 'BELOW FLOOR'}")
    print(f"colour/shape keywords found: {', '.join(content) or '-'}")
    print(
        f"content-word keyword hit rate avg {content_rate['avg']:.1f} "
        f"(best constant token {content_rate['best_constant']:.1f}: "
        f"{decode_token(content_rate['best_constant_id']) if content_rate['best_constant_id'] >= 0 else '-'})"
    )
    return ok


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", default="egs2/speechclip/sc1/exp")
    p.add_argument("--test_set", default=set_name(CORPUS, "test"))
    args = p.parse_args(cmd)
    sys.exit(0 if check(Path(args.exp_dir), args.test_set) else 1)


if __name__ == "__main__":
    run_cli(main)
