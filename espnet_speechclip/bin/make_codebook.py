"""Recipe stage 4: the cascaded codebook, from the TRAINING transcripts only.

python -m espnet_speechclip.bin.make_codebook --text dump/raw/flickr8k_train/text \
        --out dump/codebook/flickr8k_train.txt
"""

import argparse
import logging
from pathlib import Path

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.errors import run_cli
from espnet_speechclip.models.codebook import codebook_from_texts, write_codebook


def main(cmd=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--text", required=True, help="Kaldi text file of the training set")
    p.add_argument("--out", required=True)
    args = p.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    ids = codebook_from_texts(read_kv(args.text).values())
    out = Path(args.out)
    tmp = out.with_suffix(".tmp")
    write_codebook(tmp, ids)
    if out.is_file() and out.read_bytes() == tmp.read_bytes():
        tmp.unlink()
        logging.info("%s is up to date (%d subwords)", out, len(ids))
        return
    tmp.replace(out)
    logging.info("wrote %s: %d subwords from %s", out, len(ids), args.text)


if __name__ == "__main__":
    run_cli(main)
