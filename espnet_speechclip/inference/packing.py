"""Packing: one self-contained archive per trained model (recipe stage 8).

:func:`pack_model` writes the archive the format of :mod:`espnet_speechclip.inference.archive` describes
(config, weights, the local files the model is rebuilt from, the card of
:mod:`espnet_speechclip.inference.model_card`, meta.json with each member's sha256 and size).
Pretrained tags (CLIP ``openai``, s3prl ``hubert``) and URLs stay as they are: open_clip / s3prl fetch
them on first use, as they did for training. :func:`unpack_model` (the archive module's) is
re-exported here, the counterpart users look for beside :func:`pack_model`.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from espnet_speechclip.config import config_value, dotted_get, dotted_set, read_config
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.evaluation.results import require_results_of
from espnet_speechclip.files import atomic_path, sha256_file
from espnet_speechclip.identity import model_identity
from espnet_speechclip.inference.archive import FORMAT, FORMAT_VERSION, PackError, unpack_model
from espnet_speechclip.inference.model_card import CARD_DEFAULTS, model_card
from espnet_speechclip.inference.speech2image import Speech2Image
from espnet_speechclip.models.random_weights import count_parameters
from espnet_speechclip.version import __version__

__all__ = ["pack_model", "unpack_model", "PackError", "TRAINING_ONLY"]

logger = logging.getLogger(__name__)

# Keys of the training config that only describe the training run (data, output). Reset to their
# defaults so the packed config rebuilds the model without pointing at files the archive lacks.
TRAINING_ONLY: Dict[str, Any] = {
    "config": None,
    "output_dir": None,
    "train_data_path_and_name_and_type": [],
    "valid_data_path_and_name_and_type": [],
    "train_shape_file": [],
    "valid_shape_file": [],
    "init_param": [],
    "pretrain_path": None,
    "resume": False,
}

# Binary members gain nothing from deflate and can be GBs: store them.
_STORED_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".safetensors", ".npy")


# ----------------------------------------------------------------------------------------------- pack


def _local_files(config: dict, base_dir: Path) -> List[Tuple[str, Path, str]]:
    """-> ``[(config key, local source file, archive member)]`` for every local file the model needs.

    Raises PackError naming the key when a value that must be a local file does not exist.
    """

    def resolve(value: str) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else base_dir / p

    out: List[Tuple[str, Path, str]] = []

    def add(key: str, src: Path, folder: str) -> None:
        # One folder per role keeps equal basenames apart; the basename itself is kept because
        # open_clip registers a JSON config under its file stem (which must equal model_name).
        out.append((key, src, f"files/{folder}/{src.name}"))

    pretrained = dotted_get(config, "clip_conf.pretrained")
    if pretrained:
        src = resolve(str(pretrained))
        if src.is_file():
            add("clip_conf.pretrained", src, "clip")
        elif "/" in str(pretrained) or os.sep in str(pretrained) or src.suffix in _STORED_SUFFIXES:
            # Looks like a path, not an open_clip tag: packing it as a tag would fail only at load time.
            raise PackError(f"clip_conf.pretrained {pretrained} is not an existing file (looked at {src})")
    config_file = dotted_get(config, "clip_conf.config_file")
    if config_file:
        src = resolve(str(config_file))
        if not src.is_file():
            raise PackError(f"clip_conf.config_file {config_file} does not exist (looked at {src})")
        add("clip_conf.config_file", src, "clip_config")
    ckpt = dotted_get(config, "speech_encoder_conf.path_or_url")
    if ckpt and "://" not in str(ckpt):
        src = resolve(str(ckpt))
        if not src.is_file():
            raise PackError(f"speech_encoder_conf.path_or_url {ckpt} does not exist (looked at {src})")
        add("speech_encoder_conf.path_or_url", src, "upstream")
    codebook = dotted_get(config, "model_conf.cascaded_conf.codebook")
    if codebook and codebook != "full":
        src = resolve(str(codebook))
        if not src.is_file():
            raise PackError(f"model_conf.cascaded_conf.codebook {codebook} does not exist (looked at {src})")
        add("model_conf.cascaded_conf.codebook", src, "codebook")
    return out


def pack_model(
    config_file: str | Path,
    model_file: str | Path,
    out_zip: str | Path,
    card_text: Optional[str] = None,
    results_json: Optional[str | Path] = None,
    base_dir: Optional[str | Path] = None,
    dataset: Optional[str] = None,
    license: Optional[str] = None,
    language: Optional[str] = None,
    hand_written_results: bool = False,
) -> Path:
    """Pack a trained model into one archive usable without the recipe.

    Args:
        config_file: ``config.yaml`` written by training.
        model_file: trained weights (``*.pth``) for that config.
        out_zip: archive to write (replaced atomically if it exists).
        card_text: free text (markdown) put at the top of the model card.
        results_json: test results tabulated in the card: ``results.json`` of the scoring stage (or a
            decode folder's ``scores.json``), refused unless its record names these weights.
        hand_written_results: ``results_json`` was written by hand (any JSON): taken as given.
        base_dir: directory the config's relative paths are relative to (default: the current
            directory, where the recipe ran training).
        dataset: the corpus the model was trained on (the card's ``datasets``, e.g. ``flickr8k``).
        license, language: the card's (default :data:`CARD_DEFAULTS`).

    The model is rebuilt from the config and weights first (strict loading), so a config/weights
    mismatch fails here rather than for whoever downloads the archive. The card's inputs are kept in
    ``meta.json`` (``card``), so the Hub upload writes the same card from the archive alone.
    Returns ``out_zip``.
    """
    config_file, model_file, out_zip = Path(config_file), Path(model_file), Path(out_zip)
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if not model_file.is_file():
        raise MissingFileError(f"model file {model_file} does not exist")
    config = read_config(config_file)
    results = None
    if results_json is not None:
        if not hand_written_results:  # the scoring stage's results, for exactly these weights
            require_results_of(results_json, model_identity(config_file, model_file))
        with open(results_json, encoding="utf-8") as f:
            results = json.load(f)

    packed = _local_files(config, base)
    # Rebuild the model from exactly the files being packed (absolute paths, so relative ones resolve
    # against base_dir): checks that the weights load strictly and gives the card's parameter counts.
    check = copy.deepcopy(config)
    for key, src in TRAINING_ONLY.items():
        if key in check:
            check[key] = src
    for key, src, _ in packed:
        dotted_set(check, key, str(src.resolve()))
    params = count_parameters(Speech2Image(check, model_file).model)

    for key, default in TRAINING_ONLY.items():
        if key in config:
            config[key] = default
    for key, _, member in packed:
        dotted_set(config, key, member)

    card = dict(
        params=params,
        results=results,
        card_text=card_text,
        dataset=dataset,
        license=license or CARD_DEFAULTS["license"],
        language=language or CARD_DEFAULTS["language"],
    )
    meta: Dict[str, Any] = dict(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        package_version=__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        model=config_value(config, "model"),
        paths={key: member for key, _, member in packed},
        card=card,
    )
    texts = {
        "config.yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        "README.md": model_card(config, meta, archive_name=out_zip.name),
    }
    sha = {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()}
    size = {name: len(text.encode("utf-8")) for name, text in texts.items()}
    for src, member in [(model_file, "model.pth")] + [(s, m) for _, s, m in packed]:
        sha[member], size[member] = sha256_file(src), src.stat().st_size
    # sizes let unpacking check each member before writing it (see archive.LIMITS_NOTE)
    meta.update(sha256=sha, size=size, source=dict(config=str(config_file), model_file=str(model_file)))

    out_zip.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_zip) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, text in texts.items():
            zf.writestr(name, text)
        for src, member in [(model_file, "model.pth")] + [(s, m) for _, s, m in packed]:
            stored = src.suffix in _STORED_SUFFIXES
            zf.write(src, member, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
        zf.writestr("meta.json", json.dumps(meta, indent=2))
    logger.info("packed %s (+ %d local files) into %s", model_file, len(packed), out_zip)
    return out_zip
