"""Corpora and media files built by the tests: tone-caption corpora whose images are solid colours
(learnable in a few epochs), a miniature Flickr8k in its official layout, the built-in synth corpus at
tiny sizes, single (broken) files, and checks of what data dirs and captions hold."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterable, List

import numpy as np

from espnet_speechclip.data.synth.scenes import COLOURS


def make_tiny_corpus(
    root: Path, n_images: int = 8, captions: int = 2, seed: int = 0, split: str = "train"
) -> Path:
    """Write images, wavs and a data dir ``root/data/tiny_<split>``; returns the data dir."""
    from PIL import Image

    from espnet_speechclip.data.datadir import Utterance, write_datadir
    from espnet_speechclip.data.media import write_wav

    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    utts: List[Utterance] = []
    for i in range(n_images):
        colour = names[i % len(names)]
        key = f"{split}img{i:03d}"
        img_path = root / "images" / f"{key}.png"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((40, 40, 3), COLOURS[colour], dtype=np.uint8)
        pixels[: 10 + i % 7] = 128  # a grey band so images of one colour still differ
        Image.fromarray(pixels).save(img_path)
        for c in range(captions):
            n = int(rng.randint(6000, 12000))
            t = np.arange(n) / 16000
            freq = 200 + 150 * names.index(colour)
            wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.randn(n)
            utt = f"spk{c}-{key}_{c}"
            wav_path = root / "wavs" / f"{utt}.wav"
            write_wav(wav_path, wav)
            utts.append(Utterance(utt, str(wav_path), f"a {colour} square", f"spk{c}", key, str(img_path), n))
    return write_datadir(root / "data" / f"tiny_{split}", utts)


def make_flickr8k_tree(root: Path, n_images: Dict[str, int] = None, captions: int = 2, seed: int = 0) -> Path:
    """A learnable miniature of Flickr8k in its official layout (colour images, tone captions)."""
    from PIL import Image

    from espnet_speechclip.data.media import write_wav

    n_images = n_images or {"train": 12, "dev": 4, "test": 4}
    split_files = {
        "train": "Flickr_8k.trainImages.txt",
        "dev": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    }
    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    tokens, wav2capt, wav2spk = [], [], []
    (root / "Flicker8k_Dataset").mkdir(parents=True, exist_ok=True)
    (root / "Flickr8k_text").mkdir(parents=True, exist_ok=True)
    count = 0
    for split, n in n_images.items():
        listed = []
        for i in range(n):
            colour = names[count % len(names)]
            image = f"{1000 + count}_{split}{i}.jpg"
            count += 1
            pixels = np.full((48, 48, 3), COLOURS[colour], dtype=np.uint8)
            pixels[: 8 + i % 9] = 128
            Image.fromarray(pixels).save(root / "Flicker8k_Dataset" / image, "JPEG")
            listed.append(image)
            for k in range(5):
                tokens.append(f"{image}#{k}\ta {colour} square .")
            for k in range(captions):
                n_samples = int(rng.randint(6000, 12000))
                t = np.arange(n_samples) / 16000
                wav = 0.3 * np.sin(2 * np.pi * (200 + 150 * names.index(colour)) * t) + 0.01 * rng.randn(
                    n_samples
                )
                name = f"{image[:-4]}_{k}.wav"
                write_wav(root / "flickr_audio" / "wavs" / name, wav)
                wav2capt.append(f"{name} {image} #{k}")
                wav2spk.append(f"{name} {k + 1}")
        (root / "Flickr8k_text" / split_files[split]).write_text("".join(f"{x}\n" for x in listed))
    (root / "Flickr8k_text" / "Flickr8k.token.txt").write_text("".join(f"{x}\n" for x in tokens))
    (root / "flickr_audio" / "wav2capt.txt").write_text("".join(f"{x}\n" for x in wav2capt))
    (root / "flickr_audio" / "wav2spk.txt").write_text("".join(f"{x}\n" for x in wav2spk))
    return root


# ----------------------------------------------------------------------------- corpus fixture files
OK_LEN = 1600  # 0.1 s at 16 kHz, above the default min_samples=400


def make_jpg(path: Path, shade: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 50, 200)).save(path, "JPEG")


def make_photos(folder: Path, n: int, seed: int = 0) -> List[Path]:
    """``n`` distinct random 16x16 JPEGs in ``folder`` (sorted names); returns their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(p, "JPEG")
        paths.append(p)
    return paths


def make_wav(path: Path, n: int = OK_LEN, rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")


def make_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a RIFF file at all" * 10)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def prep_log(path: Path) -> str:
    return (path / "prep.log").read_text(encoding="utf-8")


def assert_kaldi_sorted(path: Path) -> None:
    """utt2spk must sort the same by utterance and by (speaker, utterance): ESPnet/Kaldi checks this."""
    from espnet_speechclip.data.datadir import read_kv

    rows = list(read_kv(path / "utt2spk").items())
    assert rows == sorted(rows, key=lambda r: (r[1], r[0]))


# ------------------------------------------------------------------------------- built-in corpus
SYNTH_SIZES = dict(seed=3, n_train=6, n_dev=2, n_test=2, captions_per_image=3)


def generate_synth_corpus(root: Path, workers: int) -> Path:
    """The spoken-shapes corpus at :data:`SYNTH_SIZES` under ``root`` (``dump/``, ``data/``)."""
    import pytest

    from espnet_speechclip.data.synth import corpus as synth_corpus

    # Small shards so that two workers really split the work (the bytes must not depend on it).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth_corpus, "_SHARD_SIZE", 7)
        synth_corpus.generate(root / "dump", root / "data", workers=workers, **SYNTH_SIZES)
    return root


# Captions: what the words mean, written out independently of the generator.
_POSITION = r"on the left|on the right|at the top|at the bottom|in the middle"
_NP = rf"(an?) (?:(small|big) )?(\w+) (\w+)(?: ({_POSITION}))?"
_ONE = re.compile(rf"^(?:there is |a picture of )?{_NP}$")
_TWO = re.compile(rf"^(?:there is |a picture of )?{_NP} (left of|right of|above|below|and) {_NP}$")
_PLACE = {
    "on the left": "left",
    "on the right": "right",
    "at the top": "top",
    "at the bottom": "bottom",
    "in the middle": "middle",
}
_RELATION = {
    "left of": ("left", "right"),
    "right of": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}


def _mention_matches(groups, obj: dict) -> bool:
    article, size, colour, shape, place = groups
    if article != ("an" if (size or colour)[0] in "aeiou" else "a"):
        return False
    return (
        colour == obj["colour"]
        and shape == obj["shape"]
        and size in (None, obj["size"])
        and (place is None or _PLACE[place] == obj["position"])
    )


def assert_describes(text: str, scene: dict) -> None:
    """Fail unless ``text`` mentions exactly the scene's objects, with their true attributes and relation."""
    objs = scene["objects"]
    if len(objs) == 1:
        m = _ONE.match(text)
        assert m and _mention_matches(m.groups(), objs[0]), f"{text!r} does not describe {scene}"
        return
    m = _TWO.match(text)
    assert m, f"{text!r} does not mention both objects of {scene}"
    first, rel, second = m.groups()[:5], m.group(6), m.groups()[6:]
    for a, b in ((objs[0], objs[1]), (objs[1], objs[0])):
        if _mention_matches(first, a) and _mention_matches(second, b):
            assert rel == "and" or _RELATION[rel] == (a["position"], b["position"]), (
                f"{text!r}: wrong relation for {scene}"
            )
            return
    raise AssertionError(f"{text!r} does not describe {scene}")
