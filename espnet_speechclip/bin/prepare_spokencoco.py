"""Prepare SpokenCOCO data dirs (spokencoco_train, spokencoco_dev, spokencoco_test) with the Karpathy split.

    python -m espnet_speechclip.bin.prepare_spokencoco --spokencoco $SPOKENCOCO --mscoco $MSCOCO \\
        --karpathy $KARPATHY_COCO --out_dir data

See :mod:`espnet_speechclip.data.spokencoco`.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

from espnet_speechclip.data.prepare import add_common_cli_args, setup_cli_logging
from espnet_speechclip.data.spokencoco import prepare_spokencoco
from espnet_speechclip.errors import run_cli


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description="Prepare SpokenCOCO data dirs (spokencoco_train, "
        "spokencoco_dev, spokencoco_test) with the Karpathy split."
    )

    def env_arg(flag: str, env: str, help_: str) -> None:
        parser.add_argument(
            flag,
            default=os.environ.get(env),
            required=env not in os.environ,
            help=f"{help_} (default ${env})",
        )

    env_arg("--spokencoco", "SPOKENCOCO", "SpokenCOCO folder holding SpokenCOCO_{train,val}.json and wavs/")
    env_arg("--mscoco", "MSCOCO", "MSCOCO 2014 folder holding train2014/ and val2014/")
    env_arg("--karpathy", "KARPATHY_COCO", "Karpathy split file dataset_coco.json")
    add_common_cli_args(parser)
    args = parser.parse_args(argv)
    setup_cli_logging(args.verbose)
    written = prepare_spokencoco(
        args.spokencoco, args.mscoco, args.karpathy, args.out_dir, min_samples=args.min_samples, nj=args.nj
    )
    for split, path in written.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    run_cli(main)
