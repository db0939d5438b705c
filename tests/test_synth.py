"""The spoken-shapes corpus generator and the stand-in CLIP trainer, on tiny sizes."""

from __future__ import annotations

import json
import logging
import random
import re
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import torch

from espnet_speechclip.data.datadir import read_datadir, read_kv
from espnet_speechclip.data.synth import captions, scenes, speech
from espnet_speechclip.data.synth import corpus as synth_corpus

torch.set_num_threads(1)

SIZES = dict(seed=3, n_train=6, n_dev=2, n_test=2, captions_per_image=3)
SPLITS = ("train", "dev", "test")

# What the words mean, written out independently of the generator.
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


# --------------------------------------------------------------------------------------------------
# Scenes, captions, rendering (no speech)
# --------------------------------------------------------------------------------------------------


def test_random_captions_describe_their_scenes():
    rng = random.Random(0)
    for _ in range(500):
        scene = scenes.sample_scene(rng)
        assert scene == scenes.Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        for text in captions.captions(scene, rng, 3):
            assert_describes(text, scene.to_dict())
    # Three captions of one image come from three different templates.
    assert len(set(captions.captions(scenes.sample_scene(rng), rng, 3))) == 3


def test_caption_words_are_single_clip_tokens_and_fit_the_context():
    import open_clip

    from espnet_speechclip.training.synth_clip import CONFIG_PATH

    tok = open_clip.SimpleTokenizer()
    for w in captions.VOCABULARY:
        assert len(tok.encode(w)) == 1, f"caption word {w!r} is {tok.encode(w)} in CLIP BPE"
    context = json.loads(CONFIG_PATH.read_text())["text_cfg"]["context_length"]
    rng = random.Random(1)
    longest = 0
    for _ in range(500):
        for text in captions.captions(scenes.sample_scene(rng), rng, 6):
            assert set(text.split()) <= set(captions.VOCABULARY), text
            longest = max(longest, len(tok.encode(text)))
    assert longest + 2 <= context  # start and end tokens


def test_render_places_the_objects():
    rng = random.Random(2)
    for _ in range(50):
        scene = scenes.sample_scene(rng)
        img = scenes.render(scene)
        assert img.size == (64, 64) and img.mode == "RGB"
        assert img.tobytes() == scenes.render(scene).tobytes()  # pure
        assert img.getpixel((0, 0)) == img.getpixel((63, 63)) == scenes.BACKGROUND
        for o in scene.objects:
            cx, cy = {
                "left": (0.25, 0.5),
                "right": (0.75, 0.5),
                "top": (0.5, 0.25),
                "bottom": (0.5, 0.75),
                "middle": (0.5, 0.5),
            }[o.position]
            pixel = img.getpixel((int((cx + o.dx) * 64), int((cy + o.dy) * 64)))
            assert np.abs(np.subtract(pixel, scenes.COLOURS[o.colour])).max() <= 12, (o, pixel)


# --------------------------------------------------------------------------------------------------
# The generated corpus
# --------------------------------------------------------------------------------------------------


def _generate(root: Path, workers: int) -> Path:
    # Small shards so that two workers really split the work (the bytes must not depend on it).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth_corpus, "_SHARD_SIZE", 7)
        synth_corpus.generate(root / "dump", root / "data", workers=workers, **SIZES)
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("synth_a"), workers=2)


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("synth_b"), workers=1)


def _lists(root: Path, split: str) -> Dict[str, Dict[str, str]]:
    d = root / "data" / f"synth_{split}"
    return {n: read_kv(d / n) for n in ("text", "utt2spk", "utt2img", "utt2num_samples")}


def test_deterministic_for_a_seed(corpus, corpus_again):
    for split in SPLITS:
        assert _lists(corpus, split) == _lists(corpus_again, split)
        scenes = [
            json.loads((r / "data" / f"synth_{split}" / "scenes.json").read_text())
            for r in (corpus, corpus_again)
        ]
        assert scenes[0] == scenes[1]
        for u in read_datadir(corpus / "data" / f"synth_{split}"):
            for path in (Path(u.wav_path), Path(u.image_path)):
                assert path.read_bytes() == (corpus_again / path.relative_to(corpus)).read_bytes(), path


def test_data_dirs_and_wavs(corpus):
    keys = []
    for split, n in (("train", SIZES["n_train"]), ("dev", SIZES["n_dev"]), ("test", SIZES["n_test"])):
        utts = read_datadir(corpus / "data" / f"synth_{split}")
        assert len(utts) == n * SIZES["captions_per_image"]
        assert all(re.fullmatch(rf"synth_{split}_\d{{6}}_\d", u.utt_id) for u in utts)
        assert all(u.image_key == u.utt_id.rsplit("_", 1)[0] for u in utts)
        keys += sorted({u.image_key for u in utts})
        words, seconds = [], []
        for u in utts:
            info = sf.info(u.wav_path)
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, u.num_samples), u.wav_path
            wav, _ = sf.read(u.wav_path)
            assert np.abs(wav).max() > 0.05, f"{u.wav_path} is (nearly) silent"
            # Trimmed: no long silence at either end.
            loud = np.nonzero(np.abs(wav) > 0.01)[0]
            assert loud[0] < 0.1 * 16000 and len(wav) - loud[-1] < 0.15 * 16000, u.wav_path
            words.append(len(u.text.split()))
            seconds.append(info.frames / 16000)
            assert 0.12 < seconds[-1] / words[-1] < 0.6, (u.utt_id, u.text, seconds[-1])
        # The audio is the transcript spoken: its length follows the number of words.
        assert np.corrcoef(words, seconds)[0, 1] > 0.7
    assert len(keys) == len(set(keys)), "image keys repeat across splits"


def test_captions_match_scenes_json(corpus):
    for split in SPLITS:
        d = corpus / "data" / f"synth_{split}"
        scenes = json.loads((d / "scenes.json").read_text())
        lists = _lists(corpus, split)
        assert set(scenes) == set(lists["utt2img"].values())
        for utt, text in lists["text"].items():
            assert_describes(text, scenes[lists["utt2img"][utt]])


def test_dev_and_test_have_unseen_speakers(corpus):
    train_spk = set(_lists(corpus, "train")["utt2spk"].values())
    _, held_out = speech.make_speakers(SIZES["seed"])
    assert not train_spk & {s.name for s in held_out}
    for split in ("dev", "test"):
        spk = list(_lists(corpus, split)["utt2spk"].values())
        assert set(spk) - train_spk, f"{split} has no speaker unseen in training"
        assert all(" " not in s for s in spk)


def test_rerun_is_a_no_op(corpus, caplog):
    files = sorted(p for p in corpus.rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    with caplog.at_level(logging.INFO, logger=synth_corpus.__name__):
        synth_corpus.generate(corpus / "dump", corpus / "data", workers=2, **SIZES)
    assert "nothing to do" in caplog.text
    assert [p.stat().st_mtime_ns for p in files] == before


def test_missing_espeak_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"espnet-speechclip\[demo\]"):
        synth_corpus.generate(tmp_path / "dump", tmp_path / "data", **SIZES)


# --------------------------------------------------------------------------------------------------
# The stand-in CLIP
# --------------------------------------------------------------------------------------------------


def test_synth_clip_smoke(corpus, tmp_path, caplog):
    import open_clip

    from espnet_speechclip.training.synth_clip import eval_json_path, register_synth_clip, train_synth_clip

    out = tmp_path / "clip" / "synth-clip.pt"
    train_synth_clip(
        corpus / "data" / "synth_train",
        out,
        steps=2,
        batch_size=8,
        eval_data_dir=corpus / "data" / "synth_test",
        threads=1,
    )
    saved = torch.load(out, weights_only=True)
    register_synth_clip()
    model = open_clip.create_model("synth-clip", pretrained=str(out))
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    report = json.loads(eval_json_path(out).read_text())
    assert report["n_images"] == SIZES["n_test"] and report["n_captions"] == SIZES["n_test"] * 3
    for direction in ("text_to_image", "image_to_text"):
        r = report[direction]
        assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] == 100.0  # 2 images: R@10 is certain

    with caplog.at_level(logging.INFO):
        train_synth_clip(corpus / "data" / "synth_train", out, steps=2, batch_size=8, threads=1)
    assert "skipping" in caplog.text
