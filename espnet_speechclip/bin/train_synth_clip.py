"""Train the stand-in CLIP of the spoken-shapes corpus on its training images and captions.

    python -m espnet_speechclip.bin.train_synth_clip --train_dir data/synth_train \\
        --eval_dir data/synth_test --out dump/clip/synth-clip.pt --steps 800 --nj 2

See :mod:`espnet_speechclip.training.synth_clip`.
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional, Sequence

from espnet_speechclip.errors import run_cli
from espnet_speechclip.training.synth_clip import train_synth_clip


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--train_dir", required=True, help="training data dir, e.g. data/synth_train")
    parser.add_argument("--eval_dir", default=None, help="data dir to report retrieval recall on")
    parser.add_argument("--out", required=True, help="weights file, e.g. dump/clip/synth-clip.pt")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch_size", type=int, default=128, help="half training images, half fresh scenes")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nj", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_synth_clip(
        args.train_dir,
        args.out,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        eval_data_dir=args.eval_dir,
        threads=args.nj,
    )


if __name__ == "__main__":
    run_cli(main)
