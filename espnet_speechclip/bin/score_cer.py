"""Character and word error rates of ASR output (e.g. ``espnet_speechclip.bin.asr_inference``'s
``1best_recog/text``) against the reference transcripts of a data dir:

    python -m espnet_speechclip.bin.score_cer --ref dump/raw/synth_test/text \
        --hyp exp/asr_speechclip/decode_synth_test/1best_recog/text [--json cer.json]

prints one line per unit, e.g. ``CER 4.12 % (962 errors / 23341 reference chars: ...)``. Both files are
Kaldi-style ``<utt> <text>`` lists. Characters include the spaces between words; a reference utterance
without a hypothesis counts as an empty one. See espnet_speechclip.evaluation.error_rate.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.evaluation.error_rate import UNITS, error_rate


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="reference transcripts (<utt> <text>), e.g. data/<set>/text")
    p.add_argument("--hyp", required=True, help="recognised text (<utt> <text>), e.g. 1best_recog/text")
    p.add_argument("--unit", nargs="+", default=list(UNITS), choices=UNITS, help="what to score")
    p.add_argument("--json", default=None, help="also write the counts to this JSON file")
    return p


def main(cmd: Optional[List[str]] = None) -> dict:
    parser = get_parser()
    args = parser.parse_args(cmd)
    for name in ("ref", "hyp"):
        if not Path(getattr(args, name)).is_file():
            parser.error(f"--{name} {getattr(args, name)} does not exist")
    try:
        refs, hyps = read_kv(args.ref), read_kv(args.hyp)
        scores = {unit: error_rate(refs, hyps, unit) for unit in args.unit}
    except ValueError as e:  # duplicate keys, or hypotheses of another set: the message says which
        parser.exit(1, f"{parser.prog}: error: {args.hyp} vs {args.ref}: {e}\n")
    for score in scores.values():
        print(score.summary())
    out = {unit: score.to_dict() for unit, score in scores.items()}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return out


if __name__ == "__main__":
    main()
