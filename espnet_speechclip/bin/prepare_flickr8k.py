"""Prepare Flickr8k Audio Captions data dirs (flickr8k_train, flickr8k_dev, flickr8k_test).

    python -m espnet_speechclip.bin.prepare_flickr8k --root $FLICKR8K --out_dir data --nj 4

See :mod:`espnet_speechclip.data.flickr8k`.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from espnet_speechclip.data.flickr8k import ENV, prepare_flickr8k
from espnet_speechclip.data.prepare import add_common_cli_args, setup_cli_logging
from espnet_speechclip.errors import run_cli


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Prepare Flickr8k Audio Captions data dirs (flickr8k_train, flickr8k_dev, flickr8k_test)."
    )
    parser.add_argument(
        "--root",
        default=os.environ.get(ENV),
        required=ENV not in os.environ,
        help=f"Flickr8k root (default ${ENV}): holds Flicker8k_Dataset/ or Images/, "
        "the Flickr8k text files and flickr_audio/",
    )
    add_common_cli_args(parser)
    args = parser.parse_args(argv)
    setup_cli_logging(args.verbose)
    written = prepare_flickr8k(args.root, args.out_dir, min_samples=args.min_samples, nj=args.nj)
    for split, path in written.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    run_cli(main)
