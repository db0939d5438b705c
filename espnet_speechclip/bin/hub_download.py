"""The recipe's ``--download_model``: fetch a trained model into an experiment folder.

    python -m espnet_speechclip.bin.hub_download --model <namespace>/<name>[@revision] \
        --exp_dir exp/<namespace>/<name> [--model_name valid.mean_r10.best.pth]

The model is resolved like ``Speech2Image.from_pretrained`` does it (a Hub repo id through the Hub's
cache, honouring ``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE`` / ``HF_HOME``; a packed archive or folder works
too) and checked against its meta.json. The experiment folder then holds ``config.yaml`` (with absolute
paths to the model's files), ``<model_name>`` (a link to the weights), ``README.md`` (the model card) and
``download.json`` (where it came from), so the recipe's inference, scoring and the APIs take it like
a trained experiment.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
from pathlib import Path
from typing import List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model", required=True, help="Hub repo id <namespace>/<name>[@revision], or a packed model"
    )
    p.add_argument("--exp_dir", required=True, help="experiment folder to write")
    p.add_argument(
        "--model_name",
        default="valid.mean_r10.best.pth",
        help="file name of the weights in --exp_dir (the recipe's --inference_model)",
    )
    return p


def fetch(source: str, exp_dir: Path, model_name: str) -> Path:
    """Resolve ``source`` and lay it out as the experiment folder ``exp_dir``; returns ``exp_dir``."""
    from espnet_speechclip.inference.loader import resolve_model

    config, weights = resolve_model(source)
    exp_dir.mkdir(parents=True, exist_ok=True)
    target = exp_dir / model_name
    if target.exists() and not target.is_symlink():
        raise FileExistsError(
            f"{target} is a trained checkpoint, not a downloaded one: use another exp folder"
        )
    if target.is_symlink():
        target.unlink()
    os.symlink(os.path.abspath(weights), target)
    shutil.copyfile(config, exp_dir / "config.yaml")
    card = Path(weights).parent / "README.md"
    if card.is_file():
        shutil.copyfile(card, exp_dir / "README.md")
    record = dict(source=source, config=str(config), model_file=str(Path(os.path.abspath(weights))))
    (exp_dir / "download.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return exp_dir


def main(cmd: Optional[List[str]] = None) -> None:
    parser = get_parser()
    args = parser.parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (%(module)s) %(levelname)s: %(message)s")
    from espnet_speechclip.inference.archive import PackError
    from espnet_speechclip.inference.hub import HubError, quiet_http_logs

    quiet_http_logs()

    try:
        exp_dir = fetch(args.model, Path(args.exp_dir), args.model_name)
    except (FileNotFoundError, FileExistsError, PackError, HubError, ValueError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    logging.info("%s is ready in %s (config.yaml, %s)", args.model, exp_dir, args.model_name)


if __name__ == "__main__":
    main()
