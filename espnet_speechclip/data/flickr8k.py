"""Flickr8k Audio Captions -> data dirs ``flickr8k_train``, ``flickr8k_dev``, ``flickr8k_test``.

Corpus layout under ``$FLICKR8K`` (see docs/speechclip.md section 7)::

    Flicker8k_Dataset/<image>.jpg        (the zip's spelling; the Kaggle copy calls it Images/)
    Flickr8k_text/Flickr8k.token.txt     (<image>.jpg#<k> TAB caption; the text files may also sit
                                          at the root; the captions' final " ." is dropped)
    Flickr8k_text/Flickr_8k.{train,dev,test}Images.txt
    flickr_audio/wavs/<image_stem>_<k>.wav
    flickr_audio/wav2capt.txt            (<wav name> <image>.jpg #<k>)
    flickr_audio/wav2spk.txt             (<wav name> <speaker>)

Utterance ids are ``<speaker>-<wav stem>``. The speaker prefix makes utt2spk sort the same way by
utterance and by speaker; the separator is "-" rather than "_" because Flickr speakers are numbers
("1", "10", ...) and "_" sorts after digits, which would order "10_x" before "1_x" and break that
consistency, while "-" sorts before every character a speaker id contains.

Usage::

    python -m espnet_speechclip.bin.prepare_flickr8k --root $FLICKR8K --out_dir data --nj 4
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from espnet_speechclip.data.prepare import (
    Candidate,
    prepare_corpus,
    read_lines,
    require_file,
)
from espnet_speechclip.errors import InputError, MissingFileError

logger = logging.getLogger(__name__)

ENV = "FLICKR8K"
CORPUS = "flickr8k"
IMAGE_DIRS = ("Flicker8k_Dataset", "Images")
TEXT_DIRS = ("Flickr8k_text", ".")
TOKEN_FILE = "Flickr8k.token.txt"
SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


# ---------------------------------------------------------------------------------------------------------
# Parsing: pure functions over lines, so they are testable without a corpus on disk.


def parse_wav2capt(lines: Iterable[str], source: str = "wav2capt.txt") -> Dict[str, Tuple[str, int]]:
    """``<wav name> <image>.jpg #<k>`` lines -> {wav name: (image name, k)}."""
    out: Dict[str, Tuple[str, int]] = {}
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not fields[2].startswith("#") or not fields[2][1:].isdigit():
            raise InputError(f"{source}:{lineno}: expected '<wav name> <image>.jpg #<k>', got {line!r}")
        wav, image, k = fields[0], fields[1], int(fields[2][1:])
        if wav in out:
            raise InputError(f"{source}:{lineno}: wav {wav} is listed twice")
        out[wav] = (image, k)
    return out


def parse_wav2spk(lines: Iterable[str], source: str = "wav2spk.txt") -> Dict[str, str]:
    """``<wav name> <speaker>`` lines -> {wav name: speaker}."""
    out: Dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise InputError(f"{source}:{lineno}: expected '<wav name> <speaker>', got {line!r}")
        if fields[0] in out and out[fields[0]] != fields[1]:
            raise InputError(
                f"{source}:{lineno}: wav {fields[0]} has two speakers, {out[fields[0]]} and {fields[1]}"
            )
        out[fields[0]] = fields[1]
    return out


def clean_caption(caption: str) -> str:
    """A token-file caption without its final full stop: ``"A dog runs ."`` -> ``"A dog runs"``.

    The official captions end with " ."; kept, "." would be a subword of nearly every transcript, so it
    would enter the training codebook and count as a keyword hit almost everywhere. The authors drop it the
    same way (only a final "."; other punctuation stays).
    """
    caption = caption.strip()
    if caption.endswith("."):
        caption = caption[:-1].rstrip()
    return caption


def parse_token_file(lines: Iterable[str], source: str = TOKEN_FILE) -> Dict[str, str]:
    """``<image>.jpg#<k> TAB <caption>`` lines -> {"<image>.jpg#<k>": caption}, each caption through
    :func:`clean_caption`.

    A caption-less key maps to "" (dropped later as an empty transcript, so it is counted, not lost silently).
    """
    out: Dict[str, str] = {}
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        # The official file is tab-separated; fall back to the first white space for hand-edited copies.
        key, sep, caption = line.partition("\t")
        if not sep:
            key, _, caption = line.strip().partition(" ")
        key = key.strip()
        if "#" not in key:
            raise InputError(f"{source}:{lineno}: expected '<image>.jpg#<k><TAB><caption>', got {line!r}")
        if key in out:
            logger.warning("%s:%d: caption %s listed twice; keeping the first", source, lineno, key)
            continue
        out[key] = clean_caption(caption)
    return out


def parse_split_list(lines: Iterable[str]) -> List[str]:
    """One image file name per line."""
    return [line.strip() for line in lines if line.strip()]


def assign_splits(split_lists: Mapping[str, Sequence[str]]) -> Dict[str, str]:
    """{split: [image, ...]} -> {image: split}; an image in two split lists is an error."""
    out: Dict[str, str] = {}
    for split, images in split_lists.items():
        for image in images:
            other = out.setdefault(image, split)
            if other != split:
                raise InputError(
                    f"image {image} is in both the {other} and the {split} split lists "
                    f"({SPLIT_FILES.get(other, other)}, {SPLIT_FILES.get(split, split)})"
                )
    return out


def flickr8k_candidates(
    wav2capt: Mapping[str, Tuple[str, int]],
    wav2spk: Mapping[str, str],
    captions: Mapping[str, str],
    image_split: Mapping[str, str],
    wav_dir: Path,
    image_dir: Path,
) -> Tuple[Dict[str, List[Candidate]], int, Set[str]]:
    """Join the listings into candidates per split. Pure (builds paths, never touches them).

    Returns ``(candidates by split, number of utterances ignored, images they belong to)``; an utterance is
    ignored (not dropped) when its image is in none of the split lists.
    """
    splits: Dict[str, List[Candidate]] = {s: [] for s in SPLIT_FILES}
    ignored = 0
    ignored_images: Set[str] = set()
    for wav in sorted(wav2capt):
        image, k = wav2capt[wav]
        split = image_split.get(image)
        if split is None:
            ignored += 1
            ignored_images.add(image)
            continue
        speaker: Optional[str] = wav2spk.get(wav)
        stem = Path(wav).stem
        splits[split].append(
            Candidate(
                utt_id=f"{speaker}-{stem}" if speaker else stem,
                wav_path=str(wav_dir / wav),
                text=captions.get(f"{image}#{k}"),
                speaker=speaker,
                image_key=Path(image).stem,
                image_path=str(image_dir / image),
            )
        )
    return splits, ignored, ignored_images


# ---------------------------------------------------------------------------------------------------------
# Locating the files of one corpus copy.


def _find_image_dir(root: Path) -> Path:
    for name in IMAGE_DIRS:
        if (root / name).is_dir():
            return root / name
    raise MissingFileError(
        f"no Flickr8k image folder under {root} (looked for {' or '.join(IMAGE_DIRS)}); "
        f"is ${ENV} set to the right directory?"
    )


def _find_text_file(root: Path, name: str) -> Path:
    for d in TEXT_DIRS:
        if (root / d / name).is_file():
            return root / d / name
    raise MissingFileError(
        f"Flickr8k text file {name} not found in {root / TEXT_DIRS[0]} or {root}; "
        f"is ${ENV} set to the right directory?"
    )


def prepare_flickr8k(
    root: str | Path, out_dir: str | Path, min_samples: int = 400, nj: int = 1
) -> Dict[str, Path]:
    """Write ``out_dir/flickr8k_{train,dev,test}`` from the Flickr8k (Audio Captions) copy at ``root``.

    Returns {split: data dir}. Raises FileNotFoundError naming a missing listing (and ``$FLICKR8K``), and
    ValueError if a split ends empty after dropping unusable utterances.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise MissingFileError(f"Flickr8k root {root} is not a directory; set ${ENV} to the corpus folder")
    audio_dir = root / "flickr_audio"
    wav2capt_file = require_file(audio_dir / "wav2capt.txt", ENV, "Flickr8k audio caption list")
    wav2spk_file = require_file(audio_dir / "wav2spk.txt", ENV, "Flickr8k audio speaker list")
    wav_dir = audio_dir / "wavs"
    if not wav_dir.is_dir():
        raise MissingFileError(
            f"Flickr8k audio folder {wav_dir} not found; is ${ENV} set to the right directory?"
        )
    token_file = _find_text_file(root, TOKEN_FILE)
    split_files = {s: _find_text_file(root, name) for s, name in SPLIT_FILES.items()}
    image_dir = _find_image_dir(root)

    wav2capt = parse_wav2capt(read_lines(wav2capt_file), str(wav2capt_file))
    wav2spk = parse_wav2spk(read_lines(wav2spk_file), str(wav2spk_file))
    captions = parse_token_file(read_lines(token_file), str(token_file))
    image_split = assign_splits({s: parse_split_list(read_lines(f)) for s, f in split_files.items()})
    splits, ignored, ignored_images = flickr8k_candidates(
        wav2capt, wav2spk, captions, image_split, wav_dir, image_dir
    )

    # Corpus-level facts that are not per-split drops.
    notes = [f"ignored {ignored} utterances of {len(ignored_images)} images that are in no split list"]
    spoken = {image for image, _ in wav2capt.values()}
    unspoken = sorted(set(image_split) - spoken)
    if unspoken:
        notes.append(
            f"{len(unspoken)} split-list images have no spoken caption in wav2capt.txt, e.g. {unspoken[0]}"
        )
    on_disk = {e.name for e in os.scandir(image_dir) if e.is_file() and e.name.lower().endswith(".jpg")}
    notes.append(
        f"ignored {len(on_disk - set(image_split))} image files in {image_dir.name}/ "
        "that are in no split list"
    )
    return prepare_corpus(CORPUS, splits, out_dir, min_samples=min_samples, nj=nj, corpus_notes=notes)
