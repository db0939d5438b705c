"""Recipe stage 8: pack a trained model into one archive (config, weights, local CLIP / upstream /
codebook files, model card) that the inference entry uses without the recipe.

    python -m espnet_speechclip.bin.pack --config exp/x/config.yaml \
        --model_file exp/x/valid.mean_r10.best.pth --out exp/x/packed/model.zip \
        [--results_json exp/x/results.json] [--dataset flickr8k]

    python -m espnet_speechclip.bin.speechclip_inference --model exp/x/packed/model.zip ...

See espnet_speechclip.inference.packing for the archive layout, espnet_speechclip.bin.hub_upload for
putting it on the Hugging Face Hub. A config imported from the authors' checkpoint (``import.json``
beside it) gets the import's provenance in the model card.
"""

import argparse
import logging
from pathlib import Path

from espnet_speechclip.errors import run_cli
from espnet_speechclip.inference.model_card import CARD_DEFAULTS
from espnet_speechclip.inference.packing import pack_model
from espnet_speechclip.locks import folder_lock


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="config.yaml written by training")
    p.add_argument("--model_file", required=True, help="trained weights (.pth)")
    p.add_argument("--out", required=True, help="archive to write (.zip)")
    p.add_argument(
        "--results_json",
        default=None,
        help="test results for the model card: results.json of the scoring stage (or a decode folder's "
        "scores.json), refused unless it was computed for --model_file",
    )
    p.add_argument(
        "--hand_written_results",
        action="store_true",
        help="--results_json was written by hand (any JSON): put it in the card as given, unchecked",
    )
    p.add_argument("--card_text", default=None, help="free text (markdown) for the top of the model card")
    p.add_argument("--dataset", default=None, help="corpus the model was trained on, for the model card")
    p.add_argument(
        "--license", default=CARD_DEFAULTS["license"], help="the model card's license (a Hub license id)"
    )
    p.add_argument(
        "--language", default=CARD_DEFAULTS["language"], help="the model card's language (CLIP's is English)"
    )
    p.add_argument(
        "--base_dir",
        default=None,
        help="directory the config's relative paths are relative to (default: the current directory)",
    )
    return p


def main(cmd=None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    card_text = args.card_text
    if card_text is None and (Path(args.config).parent / "import.json").is_file():
        from espnet_speechclip.authors.importer import import_card_text

        card_text = import_card_text(Path(args.config).parent)
    # one packing into a folder at a time (an archive is written beside its final name, then renamed)
    with folder_lock(Path(args.out).parent, "packing"):
        out = pack_model(
            args.config,
            args.model_file,
            args.out,
            card_text=card_text,
            results_json=args.results_json,
            base_dir=args.base_dir,
            dataset=args.dataset,
            license=args.license,
            language=args.language,
            hand_written_results=args.hand_written_results,
        )
    logging.info("wrote %s", out)


if __name__ == "__main__":
    run_cli(main)
