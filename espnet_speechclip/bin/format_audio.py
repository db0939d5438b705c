"""Recipe stage 2: audio format 16 kHz mono, converting only what needs it.

    python -m espnet_speechclip.bin.format_audio --data_dir data/flickr8k_train \
        --out_dir dump/raw/flickr8k_train --audio_dir dump/audio/flickr8k_train --nj 2

Files already 16 kHz mono PCM wav/flac are referenced in place; others are mixed to mono, resampled and
written as 16-bit wav under --audio_dir. A rerun on unchanged input does nothing.
See espnet_speechclip.data.format.
"""

import argparse
import json
import logging

from espnet_speechclip.data.format import format_datadir
from espnet_speechclip.errors import run_cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data_dir",
        required=True,
        help="input data dir (wav.scp, text, utt2spk, utt2img, img.scp, utt2num_samples)",
    )
    p.add_argument("--out_dir", required=True, help="output data dir, same lists with 16 kHz audio")
    p.add_argument("--audio_dir", required=True, help="where converted wavs are written")
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    return p


def main(cmd=None) -> dict:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.nj < 1:
        raise SystemExit(f"--nj must be >= 1, got {args.nj}")
    counts = format_datadir(args.data_dir, args.out_dir, args.audio_dir, nj=args.nj)
    logging.info("format_audio: %s", json.dumps(counts))
    return counts


if __name__ == "__main__":
    run_cli(main)
