"""The built-in "spoken shapes" corpus: rendered scenes of coloured shapes with spoken captions.

It makes the default pipeline self-contained: no download, a few minutes on two cores. The scenes
(:mod:`.scenes`), their captions (:mod:`.captions`) and the speech (:mod:`.speech`) are planned per
split here and written as images, 16 kHz wavs and Kaldi-style data dirs.

Usage::

    python -m espnet_speechclip.bin.make_synth_corpus --out_dir dump/synth --data_dir data --seed 0
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

from espnet_speechclip.data.datadir import WORD_ALIGNMENT, Utterance, write_ctm, write_datadir
from espnet_speechclip.data.media import SAMPLE_RATE
from espnet_speechclip.data.synth.captions import captions
from espnet_speechclip.data.synth.scenes import Scene, render, sample_scene
from espnet_speechclip.data.synth.speech import (
    _MISSING_ESPEAK,
    PITCH_RANGE,
    RATE_RANGE,
    Speaker,
    _synth_shard,
    make_speakers,
)
from espnet_speechclip.errors import InputError, RunError
from espnet_speechclip.files import write_text_atomic
from espnet_speechclip.naming import SPLITS, set_name

logger = logging.getLogger(__name__)

CORPUS = "synth"
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


def _plan_split(
    split: str,
    n_images: int,
    captions_per_image: int,
    seed: int,
    out_dir: Path,
    speaker_pools: Sequence[Sequence[Speaker]],
) -> List[_Planned]:
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
            utt = Utterance(
                utt_id,
                str(out_dir / "wav" / split / f"{utt_id}.wav"),
                text,
                spk.name,
                key,
                str(out_dir / "images" / f"{key}.png"),
                0,
            )
            plan.append(_Planned(utt, scene, spk, rate, pitch, rng.randrange(2**31)))
    return plan


def _options(
    seed: int, n_train: int, n_dev: int, n_test: int, captions_per_image: int, out_dir: Path, data_dir: Path
) -> dict:
    return {
        "version": GENERATOR_VERSION,
        "seed": seed,
        "n_train": n_train,
        "n_dev": n_dev,
        "n_test": n_test,
        "captions_per_image": captions_per_image,
        "out_dir": str(out_dir),
        "data_dir": str(data_dir.resolve()),
    }


def _is_done(out_dir: Path, data_dir: Path, options: dict) -> bool:
    marker = out_dir / _DONE_MARKER
    if not marker.is_file():
        return False
    try:
        old = json.loads(marker.read_text())
    except json.JSONDecodeError:
        return False
    names = (
        "wav.scp",
        "text",
        "utt2spk",
        "utt2img",
        "img.scp",
        "utt2num_samples",
        "scenes.json",
        WORD_ALIGNMENT,
    )
    return old == options and all(
        (data_dir / set_name(CORPUS, s) / n).is_file() for s in SPLITS for n in names
    )


def generate(
    out_dir: str | Path,
    data_dir: str | Path,
    seed: int = 0,
    n_train: int = 1600,
    n_dev: int = 200,
    n_test: int = 200,
    captions_per_image: int = 3,
    workers: int = 2,
) -> Dict[str, Path]:
    """Generate the corpus: png images and 16 kHz wavs under ``out_dir``, data dirs
    ``data_dir/synth_{split}``.

    Each data dir also gets ``scenes.json`` (image key -> :meth:`Scene.to_dict`) and the word alignment
    ``words.ctm`` (where espeak-ng spoke each word, see :func:`.speech.word_times`). The output is the same,
    byte for byte, for the same options whatever ``workers`` is. If a previous call with the same options
    finished, nothing is done. ``out_dir`` belongs to the generator: its ``images/`` and ``wav/`` are
    replaced when the options change. Paths in the lists are written as ``out_dir`` is given (a relative
    ``out_dir`` gives paths relative to the current directory, as in a recipe).

    Returns ``{split: data dir}``.
    """
    out_dir, data_dir = Path(out_dir), Path(data_dir)
    for name, n in (
        ("n_train", n_train),
        ("n_dev", n_dev),
        ("n_test", n_test),
        ("captions_per_image", captions_per_image),
        ("workers", workers),
    ):
        if n < 1:
            raise InputError(f"{name} must be at least 1, got {n}")
    dirs = {s: data_dir / set_name(CORPUS, s) for s in SPLITS}
    options = _options(seed, n_train, n_dev, n_test, captions_per_image, out_dir, data_dir)
    if _is_done(out_dir, data_dir, options):
        logger.info(
            "spoken-shapes corpus already generated in %s and %s with these options; nothing to do",
            out_dir,
            data_dir,
        )
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
        raise RunError(_MISSING_ESPEAK) from e

    start = time.time()
    train_speakers, held_out = make_speakers(seed)
    # Dev and test alternate unseen and seen speakers: every dev/test set, however small, has both, in
    # equal parts, so the two can be scored separately.
    pools = {"train": [train_speakers], "dev": [held_out, train_speakers], "test": [held_out, train_speakers]}
    plans = {
        s: _plan_split(s, n, captions_per_image, seed, out_dir, pools[s])
        for s, n in (("train", n_train), ("dev", n_dev), ("test", n_test))
    }
    jobs = [
        (p.utt.wav_path, p.utt.text, p.speaker.voice, p.speaker.variant, p.rate, p.pitch, p.noise_seed)
        for s in SPLITS
        for p in plans[s]
    ]
    shards = [jobs[i : i + _SHARD_SIZE] for i in range(0, len(jobs), _SHARD_SIZE)]
    for s in SPLITS:
        (out_dir / "wav" / s).mkdir(parents=True, exist_ok=True)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    logger.info(
        "generating %d images and %d utterances with %d worker(s) into %s",
        n_train + n_dev + n_test,
        len(jobs),
        workers,
        out_dir,
    )

    # A fresh process per shard (maxtasksperchild=1) makes every shard start from the same engine state.
    # forkserver forks workers from a clean single-threaded server, safe even when the caller runs torch;
    # preloading the heavy imports there makes a fresh worker cost milliseconds. (This module itself is
    # not preloaded: under `python -m` each worker re-runs it as __mp_main__, and runpy warns if it is
    # already imported.)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        [
            "numpy",
            "scipy.signal",
            "soundfile",
            "espnet_speechclip.data.datadir",
            "espnet_speechclip.data.media",
            "espnet_speechclip.data.synth.speech",
        ]
    )
    synthesised: List[tuple] = []  # (num_samples, word times) per job
    with ctx.Pool(workers, maxtasksperchild=1) as pool:
        results = pool.imap(_synth_shard, shards, chunksize=1)
        # Render the images here while the workers speak.
        for s in SPLITS:
            for p in plans[s][::captions_per_image]:
                render(p.scene).save(p.utt.image_path, format="PNG")
        next_log = 0.1
        for res in results:
            synthesised.extend(res)
            if len(synthesised) / len(jobs) >= next_log:  # a log line per 10 %
                logger.info(
                    "synthesised %d / %d utterances (%.0f s)",
                    len(synthesised),
                    len(jobs),
                    time.time() - start,
                )
                while len(synthesised) / len(jobs) >= next_log:
                    next_log += 0.1

    k = 0
    for s in SPLITS:
        utts, alignments = [], {}
        for p in plans[s]:
            num_samples, words = synthesised[k]
            utts.append(dataclasses.replace(p.utt, num_samples=num_samples))
            alignments[p.utt.utt_id] = words
            k += 1
        write_datadir(dirs[s], utts)
        write_ctm(dirs[s] / WORD_ALIGNMENT, alignments)
        scenes = {p.utt.image_key: p.scene.to_dict() for p in plans[s]}
        with open(dirs[s] / "scenes.json", "w", encoding="utf-8") as f:
            json.dump(scenes, f, indent=1, sort_keys=True)
        seconds = sum(u.num_samples for u in utts) / SAMPLE_RATE
        spk = sorted({u.speaker for u in utts})
        unseen = sorted(set(spk) - {x.name for x in train_speakers})
        logger.info(
            "%s: %d images, %d utterances, %.2f h of speech (mean %.2f s), %d speakers (%d not in training)",
            dirs[s],
            len(scenes),
            len(utts),
            seconds / 3600,
            seconds / len(utts),
            len(spk),
            len(unseen),
        )
    write_text_atomic(marker, json.dumps(options, indent=1, sort_keys=True))  # never looks finished early
    logger.info("spoken-shapes corpus done in %.1f s", time.time() - start)
    return dirs
