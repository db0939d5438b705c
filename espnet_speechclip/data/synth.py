"""The built-in "spoken shapes" corpus: rendered scenes of coloured shapes with spoken captions.

It makes the default pipeline self-contained: no download, a few minutes on two cores.

- A scene holds 1 object (p 0.4) or 2 (p 0.6): 8 colours x 5 shapes x 2 sizes. One object sits at a
  position (left / right / top / bottom / middle); two objects sit side by side or one above the other,
  far enough apart that the relation (left of / right of / above / below) is never ambiguous.
- :func:`render` draws a scene on a grey background; :func:`captions` describes it with paraphrase
  templates. Every caption word is a single CLIP BPE token, so a caption's words and CLIP's subwords
  coincide (the cascaded model's keywords can be checked against them).
- Captions are spoken by espeak-ng (the PyPI package ``espeakng-loader``, driven through ctypes):
  6 English voices x 10 variants are the speakers; 12 voice+variant pairs are held out of training and
  speak every other dev and test utterance.

espeak-ng is GPL-3.0, so it is an optional dependency (the ``demo`` extra) imported only when speech is
synthesised; scene sampling and rendering (used to train the stand-in CLIP) never need it.

Usage::

    python -m espnet_speechclip.data.synth --out_dir dump/synth --data_dir data --seed 0
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import logging
import math
import multiprocessing
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from espnet_speechclip.data.datadir import Utterance, write_datadir
from espnet_speechclip.data.media import SAMPLE_RATE, resample, write_wav

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# Scenes
# ---------------------------------------------------------------------------------------------------

COLOURS: Dict[str, Tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 170),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "black": (10, 10, 10),
}
SHAPES: Tuple[str, ...] = ("circle", "square", "triangle", "star", "cross")
SIZES: Tuple[str, ...] = ("small", "big")
POSITIONS: Tuple[str, ...] = ("left", "right", "top", "bottom", "middle")
RELATIONS: Tuple[str, ...] = ("left of", "right of", "above", "below")
BACKGROUND = (128, 128, 128)

# Object centres as fractions of the image side, (x, y) with y pointing down.
_CENTRES = {"left": (0.25, 0.5), "right": (0.75, 0.5), "top": (0.5, 0.25), "bottom": (0.5, 0.75),
            "middle": (0.5, 0.5)}
# Radii (fractions of the side). With the jitter below, a big object at "left" stays inside the image
# and two objects never overlap or cross the centre line, so "left of" / "above" are unambiguous.
_RADIUS = {"small": 0.10, "big": 0.18}
_JITTER = 0.03
# Relation of the first object to the second, given their positions.
_RELATION_OF = {("left", "right"): "left of", ("right", "left"): "right of",
                ("top", "bottom"): "above", ("bottom", "top"): "below"}
_INVERSE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
# How a caption names a position.
POSITION_PHRASES = {"left": "on the left", "right": "on the right", "top": "at the top",
                    "bottom": "at the bottom", "middle": "in the middle"}


@dataclass(frozen=True)
class SceneObject:
    """One shape. ``position`` is one of POSITIONS; ``dx``/``dy`` shift the centre (fractions of the side)."""

    colour: str
    shape: str
    size: str
    position: str
    dx: float = 0.0
    dy: float = 0.0


@dataclass(frozen=True)
class Scene:
    """One or two objects. With two, their positions are left/right or top/bottom (see :attr:`relation`)."""

    objects: Tuple[SceneObject, ...]

    def __post_init__(self) -> None:
        if len(self.objects) not in (1, 2):
            raise ValueError(f"a scene holds 1 or 2 objects, got {len(self.objects)}")
        for o in self.objects:
            if o.colour not in COLOURS or o.shape not in SHAPES or o.size not in SIZES or o.position not in POSITIONS:
                raise ValueError(f"unknown attribute in {o}")
        if len(self.objects) == 2 and self.relation is None:
            raise ValueError(f"two objects must be left/right or top/bottom of each other: {self.objects}")

    @property
    def relation(self) -> Optional[str]:
        """Where the first object is relative to the second ("left of", ...), or None for one object."""
        if len(self.objects) == 1:
            return None
        return _RELATION_OF.get((self.objects[0].position, self.objects[1].position))

    def to_dict(self) -> dict:
        return {"objects": [asdict(o) for o in self.objects], "relation": self.relation}

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        return cls(tuple(SceneObject(**o) for o in d["objects"]))


def _random_object(rng: random.Random, position: str) -> SceneObject:
    # Jitter on a 1/200 grid so the scene round-trips through JSON exactly.
    dx, dy = (round(rng.uniform(-_JITTER, _JITTER), 3) for _ in range(2))
    return SceneObject(rng.choice(list(COLOURS)), rng.choice(SHAPES), rng.choice(SIZES), position, dx, dy)


def sample_scene(rng: random.Random) -> Scene:
    """Draw a random scene: one object (p 0.4) at a random position, or two (p 0.6) in a random relation."""
    if rng.random() < 0.4:
        return Scene((_random_object(rng, rng.choice(POSITIONS)),))
    first, second = rng.choice(list(_RELATION_OF))
    a = _random_object(rng, first)
    while True:
        b = _random_object(rng, second)
        # Two objects of the same colour and shape make captions like "a red circle left of a red circle",
        # which carry no information about which is which.
        if (a.colour, a.shape) != (b.colour, b.shape):
            return Scene((a, b))


def _polygon(shape: str, cx: float, cy: float, r: float) -> List[Tuple[float, float]]:
    if shape == "square":
        h = r * 0.85  # a square of side 2r looks bigger than the circle of radius r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":
        return [(cx + r * math.cos(a), cy - r * math.sin(a)) for a in (math.pi / 2, math.pi * 7 / 6, -math.pi / 6)]
    if shape == "star":
        return [(cx + (r if k % 2 == 0 else 0.45 * r) * math.cos(math.pi / 2 + k * math.pi / 5),
                 cy - (r if k % 2 == 0 else 0.45 * r) * math.sin(math.pi / 2 + k * math.pi / 5)) for k in range(10)]
    if shape == "cross":
        w = r * 0.35
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w), (cx + r, cy - w), (cx + r, cy + w),
                (cx + w, cy + w), (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w), (cx - r, cy + w),
                (cx - r, cy - w), (cx - w, cy - w)]
    raise ValueError(f"no polygon for shape {shape!r}")


_SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges without a drawing library


def render(scene: Scene, size: int = 64):
    """Draw ``scene`` as an RGB ``PIL.Image`` of ``size`` x ``size`` pixels on a grey background. Pure."""
    from PIL import Image, ImageDraw

    s = size * _SUPERSAMPLE
    img = Image.new("RGB", (s, s), BACKGROUND)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        x, y = _CENTRES[o.position]
        cx, cy, r = (x + o.dx) * s, (y + o.dy) * s, _RADIUS[o.size] * s
        fill = COLOURS[o.colour]
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r), fill=fill)
    return img.resize((size, size), Image.Resampling.BOX)


# ---------------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------------

# Templates: {z} size, {c} colour, {s} shape, {p} position phrase, {r} relation; A / B the two objects.
_ONE_TEMPLATES = (
    "a {z} {c} {s}",
    "there is a {z} {c} {s}",
    "a {c} {s} {p}",
    "a {z} {c} {s} {p}",
    "there is a {c} {s} {p}",
    "a picture of a {c} {s}",
)
_TWO_TEMPLATES = (
    "a {cA} {sA} {r} a {cB} {sB}",
    "a {zA} {cA} {sA} {r} a {zB} {cB} {sB}",
    "there is a {cA} {sA} {r} a {cB} {sB}",
    "a {cA} {sA} and a {cB} {sB}",
    "a {cA} {sA} {pA} and a {cB} {sB} {pB}",
    "a picture of a {zA} {cA} {sA} {r} a {zB} {cB} {sB}",
)
CAPTION_TEMPLATES = _ONE_TEMPLATES + _TWO_TEMPLATES
# Every word any caption can contain; each is a single CLIP BPE token (checked in the tests).
VOCABULARY: Tuple[str, ...] = tuple(sorted(
    {w for t in CAPTION_TEMPLATES for w in t.split() if not w.startswith("{")} | {"an"}
    | set(COLOURS) | set(SHAPES) | set(SIZES)
    | {w for phrase in (*POSITION_PHRASES.values(), *RELATIONS) for w in phrase.split()}))


def captions(scene: Scene, rng: random.Random, n: int) -> List[str]:
    """``n`` captions of ``scene``, each from a different template while there are enough of them.

    For two objects the order they are mentioned in is drawn per caption (the relation is inverted to
    match), so "a red circle left of a blue star" and "a blue star right of a red circle" both occur.
    """
    templates = _ONE_TEMPLATES if len(scene.objects) == 1 else _TWO_TEMPLATES
    chosen = rng.sample(templates, n) if n <= len(templates) else [rng.choice(templates) for _ in range(n)]
    out = []
    for t in chosen:
        if len(scene.objects) == 1:
            o = scene.objects[0]
            text = t.format(z=o.size, c=o.colour, s=o.shape, p=POSITION_PHRASES[o.position])
        else:
            a, b = scene.objects
            rel = scene.relation
            if rng.random() < 0.5:
                a, b, rel = b, a, _INVERSE[rel]
            text = t.format(zA=a.size, cA=a.colour, sA=a.shape, pA=POSITION_PHRASES[a.position],
                            zB=b.size, cB=b.colour, sB=b.shape, pB=POSITION_PHRASES[b.position], r=rel)
        out.append(_fix_articles(text))
    return out


def _fix_articles(text: str) -> str:
    """"a orange star" -> "an orange star": espeak says what it reads, so the caption should be English."""
    words = text.split()
    for i in range(len(words) - 1):
        if words[i] == "a" and words[i + 1][0] in "aeiou":
            words[i] = "an"
    return " ".join(words)


# ---------------------------------------------------------------------------------------------------
# Speech (espeak-ng through ctypes)
# ---------------------------------------------------------------------------------------------------

VOICES: Tuple[str, ...] = ("en-us", "en-gb", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
VARIANTS: Tuple[str, ...] = ("m1", "m3", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3")
# espeak-ng's SetVoiceByName knows British English by its file name "en", not by the tag "en-gb".
_ESPEAK_NAME = {"en-gb": "en"}
N_HELD_OUT_SPEAKERS = 12  # of the 60 voice+variant pairs; they speak half of dev and test, none of train
RATE_RANGE = (140, 200)  # words per minute
PITCH_RANGE = (30, 70)  # espeak's 0-100 scale
_MISSING_ESPEAK = ("speech synthesis for the spoken-shapes corpus needs espeak-ng from the package "
                   "'espeakng-loader' (GPL-3.0): pip install espnet-speechclip[demo]")


@dataclass(frozen=True)
class Speaker:
    """A voice+variant pair with its own speaking rate and pitch."""

    voice: str
    variant: str
    rate: int
    pitch: int

    @property
    def name(self) -> str:
        """Single-token speaker id, e.g. ``en-gb-scotland+f2``."""
        return f"{self.voice}+{self.variant}"


def make_speakers(seed: int) -> Tuple[List[Speaker], List[Speaker]]:
    """All 60 speakers split into (training speakers, held-out speakers), both deterministic for ``seed``."""
    rng = random.Random(f"{seed}-speakers")
    speakers = [Speaker(v, var, rng.randint(RATE_RANGE[0] + 10, RATE_RANGE[1] - 10),
                        rng.randint(PITCH_RANGE[0] + 5, PITCH_RANGE[1] - 5)) for v in VOICES for var in VARIANTS]
    held = set(rng.sample(range(len(speakers)), N_HELD_OUT_SPEAKERS))
    return ([s for i, s in enumerate(speakers) if i not in held], [s for i, s in enumerate(speakers) if i in held])


class Espeak:
    """One espeak-ng engine in synchronous mode. Not thread-safe and global per process: make one per process.

    Two things make the samples vary from run to run, and both are pinned down here and in :func:`generate`:
    breath noise (voices like f2/f3) draws from libc ``rand()`` and espeak's own generator, whose states
    other code in the process also moves, so :meth:`synth` seeds both before each utterance; and the
    engine keeps state from one utterance to the next (e.g. its pitch-flutter phase), which neither
    re-initialising nor the seeds reset, so :func:`generate` synthesises fixed shards, each in a fresh process.
    """

    _RATE, _PITCH = 1, 3  # espeak_PARAMETER values
    _AUDIO_OUTPUT_SYNCHRONOUS = 2
    _INITIALIZE_DONT_EXIT = 0x8000
    _POS_CHARACTER = 1
    _CHARS_UTF8 = 1

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:
            raise RuntimeError(_MISSING_ESPEAK) from e
        lib_path = espeakng_loader.get_library_path()
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise RuntimeError(f"cannot load espeak-ng library {lib_path}: {e}") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        data_path = espeakng_loader.get_data_path()
        self.sample_rate = lib.espeak_Initialize(self._AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(),
                                                 self._INITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed with data path {data_path}")
        self._chunks: List[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

        def collect(wav, n: int, events) -> int:  # called by espeak with each block of int16 samples
            if n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0  # 0 = continue synthesis

        self._callback = callback_type(collect)  # keep a reference: espeak holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._libc = ctypes.CDLL(None)  # the process's own symbols: the libc whose rand() espeak calls
        self._libc.srand.argtypes = [ctypes.c_uint]

    def synth(self, text: str, voice: str, variant: str, rate: int, pitch: int, seed: int) -> np.ndarray:
        """Speak ``text``; returns int16 samples (T,) at :attr:`sample_rate` (22050 Hz).

        ``seed`` (0 <= seed < 2**31) fixes the breath noise.
        """
        name = f"{_ESPEAK_NAME.get(voice, voice)}+{variant}"
        if self._lib.espeak_SetVoiceByName(name.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {name!r}")
        self._lib.espeak_SetParameter(self._RATE, rate, 0)
        self._lib.espeak_SetParameter(self._PITCH, pitch, 0)
        self._libc.srand(seed)
        self._lib.espeak_ng_SetRandSeed(seed)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        err = self._lib.espeak_Synth(data, len(data), 0, self._POS_CHARACTER, 0, self._CHARS_UTF8, None, None)
        if err != 0:
            raise RuntimeError(f"espeak_Synth failed ({err}) on {text!r} with voice {name}")
        self._lib.espeak_Synchronize()
        if not self._chunks:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {name}")
        return np.concatenate(self._chunks)


def trim_silence(wav: np.ndarray, sample_rate: int = SAMPLE_RATE, threshold_db: float = -40.0,
                 margin_s: float = 0.03) -> np.ndarray:
    """Cut leading and trailing 10 ms frames quieter than ``threshold_db`` below the loudest one, keeping a margin.

    wav: (T,) float. Returns a view (T',).
    """
    hop = sample_rate // 100
    n = len(wav) // hop
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * hop].reshape(n, hop) ** 2, axis=1))
    loud = np.nonzero(rms > rms.max() * 10 ** (threshold_db / 20))[0]
    if len(loud) == 0:
        return wav
    margin = int(margin_s * sample_rate)
    return wav[max(0, loud[0] * hop - margin): min(len(wav), (loud[-1] + 1) * hop + margin)]


_ENGINE: Optional[Espeak] = None


def _synth_shard(jobs: Sequence[Tuple[str, str, str, str, int, int, int]]) -> List[int]:
    """Worker: synthesise ``(wav_path, text, voice, variant, rate, pitch, seed)`` jobs in order and write 16 kHz wavs.

    Returns the number of samples of each wav. Runs in a fresh process per shard (see :class:`Espeak`).
    """
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Espeak()
    out = []
    for path, text, voice, variant, rate, pitch, seed in jobs:
        raw = _ENGINE.synth(text, voice, variant, rate, pitch, seed)
        wav = trim_silence(resample(raw.astype(np.float32) / 32768.0, _ENGINE.sample_rate, SAMPLE_RATE))
        write_wav(path, wav, SAMPLE_RATE)
        out.append(len(wav))
    return out


# ---------------------------------------------------------------------------------------------------
# Corpus generation
# ---------------------------------------------------------------------------------------------------

SPLITS = ("train", "dev", "test")
GENERATOR_VERSION = 1  # bump when the output for given options changes, so old outputs are regenerated
_SHARD_SIZE = 50  # utterances per fresh worker process; fixed so the bytes do not depend on the worker count
_DONE_MARKER = ".synth_done.json"


@dataclass(frozen=True)
class _Planned:
    utt: Utterance  # num_samples filled in after synthesis
    scene: Scene
    speaker: Speaker
    rate: int
    pitch: int
    noise_seed: int


def _plan_split(split: str, n_images: int, captions_per_image: int, seed: int, out_dir: Path,
                speaker_pools: Sequence[Sequence[Speaker]]) -> List[_Planned]:
    """Scenes, captions and speakers of one split. Utterance k is spoken by a random speaker of pool
    ``k % len(speaker_pools)``. Each split has its own random stream, so the test set does not change
    when ``n_train`` does."""
    rng = random.Random(f"{seed}-{split}")
    width = max(6, len(str(n_images - 1)))
    cwidth = len(str(captions_per_image - 1))
    plan: List[_Planned] = []
    for i in range(n_images):
        key = f"synth_{split}_{i:0{width}d}"
        scene = sample_scene(rng)
        for j, text in enumerate(captions(scene, rng, captions_per_image)):
            spk = rng.choice(speaker_pools[len(plan) % len(speaker_pools)])
            # Per-utterance jitter around the speaker's own rate and pitch, inside the stated ranges.
            rate = min(max(spk.rate + rng.randint(-10, 10), RATE_RANGE[0]), RATE_RANGE[1])
            pitch = min(max(spk.pitch + rng.randint(-5, 5), PITCH_RANGE[0]), PITCH_RANGE[1])
            utt_id = f"{key}_{j:0{cwidth}d}"
            utt = Utterance(utt_id, str(out_dir / "wav" / split / f"{utt_id}.wav"), text, spk.name, key,
                            str(out_dir / "images" / f"{key}.png"), 0)
            plan.append(_Planned(utt, scene, spk, rate, pitch, rng.randrange(2**31)))
    return plan


def _options(seed: int, n_train: int, n_dev: int, n_test: int, captions_per_image: int, out_dir: Path,
             data_dir: Path) -> dict:
    return {"version": GENERATOR_VERSION, "seed": seed, "n_train": n_train, "n_dev": n_dev, "n_test": n_test,
            "captions_per_image": captions_per_image, "out_dir": str(out_dir), "data_dir": str(data_dir.resolve())}


def _is_done(out_dir: Path, data_dir: Path, options: dict) -> bool:
    marker = out_dir / _DONE_MARKER
    if not marker.is_file():
        return False
    try:
        old = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    names = ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples", "scenes.json")
    return old == options and all((data_dir / f"synth_{s}" / n).is_file() for s in SPLITS for n in names)


def generate(out_dir: str | Path, data_dir: str | Path, seed: int = 0, n_train: int = 2000, n_dev: int = 200,
             n_test: int = 200, captions_per_image: int = 3, workers: int = 2) -> Dict[str, Path]:
    """Generate the corpus: png images and 16 kHz wavs under ``out_dir``, data dirs ``data_dir/synth_{split}``.

    Each data dir also gets ``scenes.json`` (image key -> :meth:`Scene.to_dict`). The output is the same,
    byte for byte, for the same options whatever ``workers`` is. If a previous call with the same options
    finished, nothing is done. ``out_dir`` belongs to the generator: its ``images/`` and ``wav/`` are
    replaced when the options change. Paths in the lists are written as ``out_dir`` is given (a relative
    ``out_dir`` gives paths relative to the current directory, as in a recipe).

    Returns ``{split: data dir}``.
    """
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    for name, n in (("n_train", n_train), ("n_dev", n_dev), ("n_test", n_test),
                    ("captions_per_image", captions_per_image), ("workers", workers)):
        if n < 1:
            raise ValueError(f"{name} must be at least 1, got {n}")
    dirs = {s: data_dir / f"synth_{s}" for s in SPLITS}
    options = _options(seed, n_train, n_dev, n_test, captions_per_image, out_dir, data_dir)
    if _is_done(out_dir, data_dir, options):
        logger.info("spoken-shapes corpus already generated in %s and %s with these options; nothing to do",
                    out_dir, data_dir)
        return dirs

    marker = out_dir / _DONE_MARKER
    if marker.exists():
        logger.info("%s holds a corpus generated with other options; replacing it", out_dir)
        marker.unlink()
        for sub in ("images", "wav"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
    try:  # fail here with the install hint, not inside a worker
        import espeakng_loader  # noqa: F401
    except ImportError as e:
        raise RuntimeError(_MISSING_ESPEAK) from e

    start = time.time()
    train_speakers, held_out = make_speakers(seed)
    # Dev and test alternate unseen and seen speakers: every dev/test set, however small, has both, in
    # equal parts, so the two can be scored separately.
    pools = {"train": [train_speakers], "dev": [held_out, train_speakers], "test": [held_out, train_speakers]}
    plans = {s: _plan_split(s, n, captions_per_image, seed, out_dir, pools[s])
             for s, n in (("train", n_train), ("dev", n_dev), ("test", n_test))}
    jobs = [(p.utt.wav_path, p.utt.text, p.speaker.voice, p.speaker.variant, p.rate, p.pitch, p.noise_seed)
            for s in SPLITS for p in plans[s]]
    shards = [jobs[i: i + _SHARD_SIZE] for i in range(0, len(jobs), _SHARD_SIZE)]
    for s in SPLITS:
        (out_dir / "wav" / s).mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    logger.info("generating %d images and %d utterances with %d worker(s) into %s",
                n_train + n_dev + n_test, len(jobs), workers, out_dir)

    # A fresh process per shard (maxtasksperchild=1) makes every shard start from the same engine state.
    # forkserver forks workers from a clean single-threaded server, safe even when the caller runs torch;
    # preloading the heavy imports there makes a fresh worker cost milliseconds. (This module itself is
    # not preloaded: under `python -m` each worker re-runs it as __mp_main__, and runpy warns if it is
    # already imported.)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["numpy", "scipy.signal", "soundfile", "espnet_speechclip.data.datadir",
                                "espnet_speechclip.data.media"])
    num_samples: List[int] = []
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        results = pool.imap(_synth_shard, shards, chunksize=1)
        # Render the images here while the workers speak.
        for s in SPLITS:
            for p in plans[s][::captions_per_image]:
                render(p.scene).save(p.utt.image_path, format="PNG")
        next_log = 0.1
        for res in results:
            num_samples.extend(res)
            if len(num_samples) / len(jobs) >= next_log:  # a log line per 10 %
                logger.info("synthesised %d / %d utterances (%.0f s)", len(num_samples), len(jobs),
                            time.time() - start)
                while len(num_samples) / len(jobs) >= next_log:
                    next_log += 0.1

    k = 0
    for s in SPLITS:
        utts = []
        for p in plans[s]:
            utts.append(dataclasses.replace(p.utt, num_samples=num_samples[k]))
            k += 1
        write_datadir(dirs[s], utts)
        scenes = {p.utt.image_key: p.scene.to_dict() for p in plans[s]}
        with open(dirs[s] / "scenes.json", "w", encoding="utf-8") as f:
            json.dump(scenes, f, indent=1, sort_keys=True)
        seconds = sum(u.num_samples for u in utts) / SAMPLE_RATE
        spk = sorted({u.speaker for u in utts})
        unseen = sorted(set(spk) - {x.name for x in train_speakers})
        logger.info("%s: %d images, %d utterances, %.2f h of speech (mean %.2f s), %d speakers (%d not in training)",
                    dirs[s], len(scenes), len(utts), seconds / 3600, seconds / len(utts), len(spk), len(unseen))
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(options, indent=1, sort_keys=True))
    tmp.replace(marker)  # atomic: an interrupted run never looks finished
    logger.info("spoken-shapes corpus done in %.1f s", time.time() - start)
    return dirs


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out_dir", required=True, help="where images/ and wav/ are written, e.g. dump/synth")
    parser.add_argument("--data_dir", required=True, help="parent of the synth_{train,dev,test} data dirs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n_train", type=int, default=2000, help="training images")
    parser.add_argument("--n_dev", type=int, default=200, help="dev images")
    parser.add_argument("--n_test", type=int, default=200, help="test images")
    parser.add_argument("--captions_per_image", type=int, default=3, help="spoken captions per image")
    parser.add_argument("--nj", type=int, default=2, help="speech synthesis worker processes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    generate(args.out_dir, args.data_dir, seed=args.seed, n_train=args.n_train, n_dev=args.n_dev,
             n_test=args.n_test, captions_per_image=args.captions_per_image, workers=args.nj)


if __name__ == "__main__":
    # Run the package module's main, not this __main__ copy, so the worker function pickles by its
    # importable name for the forkserver workers.
    from espnet_speechclip.data.synth import main as _main

    _main()
