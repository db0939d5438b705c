"""Import one of the authors' released checkpoints as an experiment: the six SpeechCLIP files (github
atosystem/SpeechCLIP) and the nine SpeechCLIP+ files (github ShampooWang/SpeechCLIP_plus).

    python -m espnet_speechclip.bin.import_authors_ckpt --ckpt model.ckpt \
        --out_dir exp/authors_large_flickr_parallel [--vocab_usage text_clip_vocab_usage_byfreq.npy] \
        [--clip_pretrained FILE_OR_TAG] [--upstream_path hubert_large_ll60k.pt] [--pack]

The release is recognised from the file's content (any file name works; SpeechCLIP+'s download script
saves every file as model.ckpt) and named in ``import.json``; a file that matches no release still
imports when its architecture is understood.

writes ``config.yaml``, ``valid.mean_r10.best.pth``, ``codebook.txt`` (cascaded) and ``import.json`` into
``--out_dir``: the inference entry, scoring, the recipe (``--skip_train``), the query CLI and the Python
API take that folder like a trained experiment. ``--pack`` also writes ``packed/model.zip``.

The file is read with a restricted unpickler (it cannot run code); the frozen HuBERT and CLIP inside it are
compared with the public towers the config names (s3prl ``hubert`` / ``hubert_large_ll60k``, open_clip
``ViT-B-32-quickgelu`` / ``ViT-L-14-quickgelu`` ``openai``), so those must be downloadable or given as local
files (``--clip_pretrained``, ``--upstream_path``); ``--no_verify`` skips that (shapes are still checked).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_speechclip.errors import run_cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="the authors' Lightning checkpoint (.ckpt)")
    p.add_argument(
        "--out_dir", required=True, help="experiment folder to write, e.g. exp/authors_base_parallel"
    )
    p.add_argument(
        "--vocab_usage",
        default=None,
        help="the authors' text_clip_vocab_usage_byfreq.npy (default: "
        "recover the keyword vocabulary from the checkpoint itself)",
    )
    p.add_argument(
        "--clip_pretrained",
        default="openai",
        help="open_clip pretrained tag or local CLIP weights file "
        "(default: openai, the weights the authors froze)",
    )
    p.add_argument(
        "--upstream_path",
        default=None,
        help="local s3prl converted HuBERT checkpoint, used through "
        "hubert_local instead of the public s3prl name",
    )
    p.add_argument(
        "--clip_model_name",
        default=None,
        help="open_clip architecture to build instead of the one the "
        "checkpoint names (its shapes must match)",
    )
    p.add_argument("--clip_config_file", default=None, help="open_clip JSON config of --clip_model_name")
    p.add_argument(
        "--no_verify",
        action="store_true",
        help="do not build the towers: skip comparing the frozen "
        "weights and the strict load (shapes are still checked)",
    )
    p.add_argument("--pack", action="store_true", help="also pack the result into OUT_DIR/packed/model.zip")
    return p


def pack_imported(out_dir: str | Path) -> Path:
    """Pack an imported experiment folder into ``out_dir/packed/model.zip`` (recipe stage 8's archive)."""
    from espnet_speechclip.authors.importer import WEIGHTS_NAME, import_card_text
    from espnet_speechclip.inference.packing import pack_model

    out_dir = Path(out_dir)
    return pack_model(
        out_dir / "config.yaml",
        out_dir / WEIGHTS_NAME,
        out_dir / "packed" / "model.zip",
        card_text=import_card_text(out_dir),
    )


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    # Imported here so that --help answers without loading torch.
    from espnet_speechclip.authors.importer import import_checkpoint

    out = import_checkpoint(
        args.ckpt,
        args.out_dir,
        vocab_usage=args.vocab_usage,
        clip_pretrained=args.clip_pretrained,
        upstream_path=args.upstream_path,
        clip_model_name=args.clip_model_name,
        clip_config_file=args.clip_config_file,
        verify=not args.no_verify,
    )
    if args.pack:
        logging.info("wrote %s", pack_imported(out))
    logging.info("imported %s into %s", args.ckpt, out)


if __name__ == "__main__":
    run_cli(main)
