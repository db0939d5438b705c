"""Embed a data dir with a trained SpeechCLIP and score it.

    python -m espnet_speechclip.bin.speechclip_inference --config exp/x/config.yaml \
        --model_file exp/x/valid.mean_r10.best.pth --data_dir data/flickr8k_test \
        --image_emb_scp dump/image_emb/<clip>/img_emb.scp --output_dir exp/x/decode_test

or, with an archive from espnet_speechclip.bin.pack, ``--model exp/x/packed/model.zip`` instead of
``--config`` and ``--model_file``.

Writes the embeddings and keywords described in espnet_speechclip.inference.decode_dir and ``scores.json``.
In N parallel jobs (what the recipe's ``--inference_nj N`` runs), job J adds ``--num_splits N --split J``,
then one ``--num_splits N --merge`` call joins the parts, embeds the images and scores.
"""

import argparse
import json
import logging
from pathlib import Path

from espnet_speechclip.evaluation.scoring import score_decode_dir
from espnet_speechclip.inference.decode_dir import (
    embed_datadir,
    embed_images_of_datadir,
    embed_utterances,
    merge_utterance_parts,
)
from espnet_speechclip.inference.packing import UNPACK_CACHE_NOTE


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, epilog=UNPACK_CACHE_NOTE, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", default=None, help="config.yaml written by training (with --model_file)")
    p.add_argument("--model_file", default=None, help="trained weights (.pth) (with --config)")
    p.add_argument(
        "--model",
        default=None,
        help="packed model archive (.zip from espnet_speechclip.bin.pack), "
        "instead of --config and --model_file",
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
        parser.error("give the model as --model packed.zip, or as both --config and --model_file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    if args.num_threads:
        import torch

        torch.set_num_threads(args.num_threads)
    if args.split is not None and args.merge:
        parser.error("--split (a job) and --merge (after the jobs) exclude each other")
    from espnet_speechclip.inference.speech2image import Speech2Image

    def load() -> Speech2Image:
        kwargs = dict(device=args.device, batch_size=args.batch_size)
        if args.model is not None:
            return Speech2Image.from_pretrained(args.model, **kwargs)
        return Speech2Image(args.config, args.model_file, **kwargs)

    out_dir = Path(args.output_dir)
    parts = out_dir / f"split{args.num_splits}"
    if args.merge:
        merge_utterance_parts([parts / str(j) for j in range(1, args.num_splits + 1)], out_dir)
        # with the image cache the merge needs no model at all
        s2i = load() if args.image_emb_scp is None else None
        embed_images_of_datadir(args.data_dir, out_dir, args.image_emb_scp, s2i)
    else:
        s2i = load()
        if args.split is not None:
            embed_utterances(s2i, args.data_dir, parts / str(args.split), split=(args.split, args.num_splits))
            logging.info("wrote part %d of %d to %s", args.split, args.num_splits, parts / str(args.split))
            return
        embed_datadir(s2i, args.data_dir, out_dir, args.image_emb_scp)
    scores = score_decode_dir(args.output_dir)
    out = Path(args.output_dir) / "scores.json"
    out.write_text(json.dumps(scores, indent=2), encoding="utf-8")
    logging.info("scores: %s", json.dumps(scores))
    logging.info("wrote %s", out)


if __name__ == "__main__":
    main()
