"""Generate the built-in "spoken shapes" corpus: images, 16 kHz wavs and the synth_{train,dev,test} data dirs.

    python -m espnet_speechclip.bin.make_synth_corpus --out_dir dump/synth --data_dir data --seed 0

See :mod:`espnet_speechclip.data.synth.corpus`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

from espnet_speechclip.data.synth.corpus import generate
from espnet_speechclip.errors import run_cli


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--out_dir", required=True, help="where images/ and wav/ are written, e.g. dump/synth"
    )
    parser.add_argument("--data_dir", required=True, help="parent of the synth_{train,dev,test} data dirs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=1600, help="training images")
    parser.add_argument("--n_dev", type=int, default=200, help="dev images")
    parser.add_argument("--n_test", type=int, default=200, help="test images")
    parser.add_argument("--captions_per_image", type=int, default=3, help="spoken captions per image")
    parser.add_argument("--nj", type=int, default=2, help="speech synthesis worker processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generate(
        args.out_dir,
        args.data_dir,
        seed=args.seed,
        n_train=args.n_train,
        n_dev=args.n_dev,
        n_test=args.n_test,
        captions_per_image=args.captions_per_image,
        workers=args.nj,
    )


if __name__ == "__main__":
    run_cli(main)
