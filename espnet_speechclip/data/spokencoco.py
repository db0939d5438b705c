"""SpokenCOCO -> data dirs ``spokencoco_train``, ``spokencoco_dev``, ``spokencoco_test`` (Karpathy split).

Inputs (see docs/speechclip.md section 7):

- ``$SPOKENCOCO``: ``SpokenCOCO_train.json`` and ``SpokenCOCO_val.json``, each
  ``{"data": [{"image": "train2014/COCO_train2014_<id>.jpg", "captions": [{"text", "speaker", "uttid",
  "wav": "wavs/..."}]}]}``, wav paths relative to this folder;
- ``$MSCOCO``: the folder holding ``train2014/`` and ``val2014/`` (image paths are relative to it);
- ``$KARPATHY_COCO``: ``dataset_coco.json``, ``{"images": [{"filepath": "val2014", "filename": ..., "split":
  "train|val|test|restval"}]}``. ``restval`` joins train and ``val`` becomes dev, as in the paper.

Both SpokenCOCO JSONs are read together because the Karpathy split moves most val2014 images into train.
Utterance ids are ``<speaker>-<rest>``: SpokenCOCO's own ``uttid`` already has that form and is kept as is,
so ids can be matched against the corpus; "-" is the separator for the reason given in flickr8k.py.

Usage::

    python -m espnet_speechclip.bin.prepare_spokencoco --spokencoco $SPOKENCOCO --mscoco $MSCOCO \\
        --karpathy $KARPATHY_COCO --out_dir data --nj 4
"""

from __future__ import annotations

import json
import logging
import posixpath
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from espnet_speechclip.data.prepare import (
    Candidate,
    prepare_corpus,
    require_file,
)
from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.naming import SPLITS

logger = logging.getLogger(__name__)

CORPUS = "spokencoco"
JSON_FILES = ("SpokenCOCO_train.json", "SpokenCOCO_val.json")
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "dev", "test": "test"}


# ---------------------------------------------------------------------------------------------------------
# Parsing: pure functions over decoded JSON.


def _norm(rel: str) -> str:
    # "./val2014/x.jpg" and "val2014//x.jpg" must match the Karpathy "val2014" + "x.jpg".
    return posixpath.normpath(rel.replace("\\", "/"))


def parse_karpathy(obj: Any, source: str = "dataset_coco.json") -> Dict[str, str]:
    """Karpathy split JSON -> {"<filepath>/<filename>": train|dev|test}."""
    if not isinstance(obj, dict) or not isinstance(obj.get("images"), list):
        raise InputError(f'{source}: expected a Karpathy split file {{"images": [...]}}')
    out: Dict[str, str] = {}
    for i, im in enumerate(obj["images"]):
        try:
            key = _norm(f"{im['filepath']}/{im['filename']}")
            raw = im["split"]
        except (KeyError, TypeError) as e:
            raise InputError(f"{source}: images[{i}] lacks filepath, filename or split") from e
        if raw not in KARPATHY_SPLITS:
            raise InputError(
                f"{source}: images[{i}] ({key}) has unknown split {raw!r}; "
                f"expected one of {sorted(KARPATHY_SPLITS)}"
            )
        split = KARPATHY_SPLITS[raw]
        if out.setdefault(key, split) != split:
            raise InputError(f"{source}: image {key} is listed in two splits")
    return out


def parse_spokencoco(obj: Any, source: str = "SpokenCOCO.json") -> List[Tuple[str, Dict[str, Any]]]:
    """SpokenCOCO JSON -> [(image path relative to MSCOCO root, caption dict)], one per spoken caption."""
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise InputError(f'{source}: expected {{"data": [...]}}')
    out: List[Tuple[str, Dict[str, Any]]] = []
    for i, entry in enumerate(obj["data"]):
        if not isinstance(entry, dict) or "image" not in entry or not isinstance(entry.get("captions"), list):
            raise InputError(f"{source}: data[{i}] lacks 'image' or a 'captions' list")
        image = _norm(entry["image"])
        for j, cap in enumerate(entry["captions"]):
            if not isinstance(cap, dict) or not cap.get("wav"):
                raise InputError(f"{source}: data[{i}].captions[{j}] has no 'wav'")
            out.append((image, cap))
    return out


def utterance_id(speaker: Optional[str], uttid: Optional[str], wav: str) -> str:
    """``<speaker>-<id>``, reusing SpokenCOCO's uttid when it already starts with the speaker."""
    base = uttid or Path(wav).stem
    if speaker and not base.startswith(f"{speaker}-"):
        base = f"{speaker}-{base}"
    return base


def spokencoco_candidates(
    captions: Sequence[Tuple[str, Mapping[str, Any]]],
    karpathy: Mapping[str, str],
    spokencoco_root: Path,
    mscoco_root: Path,
) -> Tuple[Dict[str, List[Candidate]], int, Set[str]]:
    """Join captions with the Karpathy split. Pure (builds paths, never touches them).

    Returns ``(candidates by split, utterances ignored, their images)``; a caption is ignored (not dropped)
    when its image is not in the Karpathy file.
    """
    splits: Dict[str, List[Candidate]] = {s: [] for s in SPLITS}
    ignored = 0
    ignored_images: Set[str] = set()
    for image, cap in captions:
        split = karpathy.get(image)
        if split is None:
            ignored += 1
            ignored_images.add(image)
            continue
        speaker = cap.get("speaker") or None
        text = cap.get("text")
        splits[split].append(
            Candidate(
                utt_id=utterance_id(speaker, cap.get("uttid"), cap["wav"]),
                wav_path=str(spokencoco_root / cap["wav"]),
                text=text if isinstance(text, str) else None,
                speaker=speaker,
                image_key=Path(image).stem,
                image_path=str(mscoco_root / image),
            )
        )
    return splits, ignored, ignored_images


# ---------------------------------------------------------------------------------------------------------


def _load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from e


def prepare_spokencoco(
    spokencoco_root: str | Path,
    mscoco_root: str | Path,
    karpathy_json: str | Path,
    out_dir: str | Path,
    min_samples: int = 400,
    nj: int = 1,
) -> Dict[str, Path]:
    """Write ``out_dir/spokencoco_{train,dev,test}`` split by the Karpathy file ``karpathy_json``.

    Returns {split: data dir}. Raises FileNotFoundError naming a missing input (and its env variable:
    ``$SPOKENCOCO``, ``$MSCOCO``, ``$KARPATHY_COCO``), and ValueError if a split ends empty.
    """
    sc_root = Path(spokencoco_root).absolute()
    coco_root = Path(mscoco_root).absolute()
    karpathy_file = require_file(Path(karpathy_json).absolute(), "KARPATHY_COCO", "Karpathy split file")
    json_files = [
        require_file(sc_root / name, "SPOKENCOCO", "SpokenCOCO caption file") for name in JSON_FILES
    ]
    if not coco_root.is_dir():
        raise MissingFileError(
            f"MSCOCO image root {coco_root} is not a directory; set $MSCOCO to the folder "
            "holding train2014/ and val2014/"
        )

    karpathy = parse_karpathy(_load_json(karpathy_file), str(karpathy_file))
    captions = [c for f in json_files for c in parse_spokencoco(_load_json(f), str(f))]
    splits, ignored, ignored_images = spokencoco_candidates(captions, karpathy, sc_root, coco_root)

    # A wrong $MSCOCO would otherwise show up only as every image "missing"; name the folder instead.
    for top in sorted(
        {Path(c.image_path).relative_to(coco_root).parts[0] for cs in splits.values() for c in cs}
    ):
        if not (coco_root / top).is_dir():
            raise MissingFileError(
                f"MSCOCO image folder {coco_root / top} not found; $MSCOCO must be the "
                "folder holding train2014/ and val2014/"
            )

    notes = [
        f"ignored {ignored} utterances of {len(ignored_images)} images that are not in {karpathy_file.name}"
    ]
    unspoken = len(set(karpathy) - {image for image, _ in captions})
    if unspoken:
        notes.append(f"{unspoken} images of {karpathy_file.name} have no spoken caption")
    return prepare_corpus(CORPUS, splits, out_dir, min_samples=min_samples, nj=nj, corpus_notes=notes)
