"""Embed a data dir with a trained SpeechCLIP and score it.

    python -m espnet_speechclip.bin.speechclip_inference --config exp/x/config.yaml \
        --model_file exp/x/valid.mean_r10.best.pth --data_dir data/flickr8k_test \
        --image_emb_scp dump/image_emb/<clip>/img_emb.scp --output_dir exp/x/decode_test

or, with an archive from espnet_speechclip.bin.pack, ``--model exp/x/packed/model.zip`` (or a Hub repo id
``--model <namespace>/<name>``) instead of ``--config`` and ``--model_file``.

Writes the embeddings and keywords described in espnet_speechclip.inference.decode_dir, ``scores.json``
and, last, the folder's record of the model and data it was made from (scoring and the results page
refuse a folder without one, e.g. after an interrupted inference).
In N parallel jobs (what the recipe's ``--inference_nj N`` runs), job J adds ``--num_splits N --split J``,
then one ``--num_splits N --merge`` call joins the parts, embeds the images and scores.
"""

import argparse
import json
import logging
from pathlib import Path

from espnet_speechclip.errors import run_cli
from espnet_speechclip.evaluation.scoring import score_decode_dir
from espnet_speechclip.files import write_text_atomic
from espnet_speechclip.inference.archive import UNPACK_CACHE_NOTE
from espnet_speechclip.inference.decode_dir import (
    check_utterance_audio,
    decode_made_from,
    embed_datadir,
    embed_images_of_datadir,
    embed_utterances,
    merge_utterance_parts,
    reset_decode_dir,
    write_decode_record,
)
from espnet_speechclip.locks import folder_lock
from espnet_speechclip.provenance import RECORD_NAME, FileHashes, clear_record, read_record


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=UNPACK_CACHE_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=None, help="config.yaml written by training (with --model_file)")
    p.add_argument("--model_file", default=None, help="trained weights (.pth) (with --config)")
    p.add_argument(
        "--model",
        default=None,
        help="packed model (.zip from espnet_speechclip.bin.pack, or unpacked), experiment folder, or "
        "Hugging Face Hub repo id <namespace>/<name>[@revision], instead of --config and --model_file",
    )
    p.add_argument("--data_dir", required=True, help="Kaldi-style data dir (wav.scp, utt2img, img.scp, text)")
    p.add_argument("--output_dir", required=True)
    p.add_argument(
        "--image_emb_scp",
        default=None,
        help="cached image embeddings (key path.npy); without it images run through the CLIP image tower",
    )
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--num_splits",
        type=int,
        default=1,
        help="parallel jobs: with --split J, embed only the J-th of N parts of the utterances into "
        "<output_dir>/split<N>/<J>/; with --merge, join those parts, embed the images and score",
    )
    p.add_argument("--split", type=int, default=None, help="this job's part (1..num_splits)")
    p.add_argument("--merge", action="store_true", help="join the parts of --num_splits jobs")
    return p


def main(cmd=None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    if args.model is not None and (args.config is not None or args.model_file is not None):
        parser.error(
            "give the model either as --model (a packed archive) or as --config with --model_file, not both"
        )
    if args.model is None and (args.config is None or args.model_file is None):
        parser.error(
            "give the model as --model (packed .zip or Hub repo id), or as both --config and --model_file"
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    if args.split is not None and args.merge:
        parser.error("--split (a job) and --merge (after the jobs) exclude each other")

    from espnet_speechclip.inference.loader import resolve_model

    # the model's files, without building it: the merge with an image cache needs no model at all
    config, weights = (args.config, args.model_file) if args.model is None else resolve_model(args.model)
    for name, path in (("--config", config), ("--model_file", weights), ("--data_dir", args.data_dir)):
        if not Path(path).exists():
            parser.error(f"{name} {path} does not exist")
    out_dir = Path(args.output_dir)
    parts = out_dir / f"split{args.num_splits}"
    here = out_dir if args.split is None else parts / str(args.split)
    # one inference per folder at a time (the jobs of a split run each write their own part)
    with folder_lock(here, "inference"):
        _decode(args, config, weights, out_dir, parts, here)


def _decode(args: argparse.Namespace, config, weights, out_dir: Path, parts: Path, here: Path) -> None:
    """Write the decode folder ``out_dir`` (or, with ``--split``, its part ``here``)."""
    from espnet_speechclip.identity import model_identity
    from espnet_speechclip.inference.speech2image import Speech2Image

    # the hashes recorded by the last decode here (and by the jobs a merge joins): unchanged files are
    # not read again
    seeds = [here] + ([parts / str(j) for j in range(1, args.num_splits + 1)] if args.merge else [])
    hashes = FileHashes(*[(read_record(d / RECORD_NAME) or {}).get("hashes") for d in seeds])

    def load() -> Speech2Image:
        return Speech2Image(config, weights, device=args.device, batch_size=args.batch_size)

    # Whatever this call does, the folder is not a finished decode until it ends: drop its record first.
    clear_record(out_dir / RECORD_NAME)
    if not args.merge:  # a file that does not open is named before the weights and data are hashed
        check_utterance_audio(args.data_dir, None if args.split is None else (args.split, args.num_splits))
    made_from = decode_made_from(
        model_identity(config, weights, hashes), args.data_dir, args.image_emb_scp, hashes
    )
    if args.split is not None:
        part = parts / str(args.split)
        reset_decode_dir(part)
        embed_utterances(load(), args.data_dir, part, split=(args.split, args.num_splits))
        write_decode_record(part, made_from, hashes, part=(args.split, args.num_splits))
        logging.info("wrote part %d of %d to %s", args.split, args.num_splits, part)
        return
    reset_decode_dir(out_dir)
    if args.merge:
        merge_utterance_parts([parts / str(j) for j in range(1, args.num_splits + 1)], out_dir, made_from)
        # with the image cache the merge needs no model at all
        s2i = load() if args.image_emb_scp is None else None
        embed_images_of_datadir(args.data_dir, out_dir, args.image_emb_scp, s2i)
    else:
        embed_datadir(load(), args.data_dir, out_dir, args.image_emb_scp)
    scores = score_decode_dir(out_dir)
    out = out_dir / "scores.json"
    write_text_atomic(out, json.dumps(scores, indent=2))
    write_decode_record(out_dir, made_from, hashes)
    logging.info("scores: %s", json.dumps(scores))
    logging.info("wrote %s", out)


if __name__ == "__main__":
    run_cli(main)
