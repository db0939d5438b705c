"""The spoken-shapes corpus writer on tiny sizes: deterministic, complete, rerun-safe."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers.corpora import SYNTH_SIZES as SIZES
from helpers.corpora import assert_describes, generate_synth_corpus

from espnet_speechclip.data.datadir import read_ctm, read_datadir, read_kv
from espnet_speechclip.data.synth import corpus as corpus_writer
from espnet_speechclip.data.synth import speech
from espnet_speechclip.naming import SPLITS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def corpus_again(tmp_path_factory) -> Path:
    return generate_synth_corpus(tmp_path_factory.mktemp("synth_b"), workers=1)


def _lists(root: Path, split: str) -> Dict[str, Dict[str, str]]:
    d = root / "data" / f"synth_{split}"
    return {n: read_kv(d / n) for n in ("text", "utt2spk", "utt2img", "utt2num_samples")}


def test_deterministic_for_a_seed(synth_corpus, corpus_again):
    for split in SPLITS:
        assert _lists(synth_corpus, split) == _lists(corpus_again, split)
        scenes = [
            json.loads((r / "data" / f"synth_{split}" / "scenes.json").read_text())
            for r in (synth_corpus, corpus_again)
        ]
        assert scenes[0] == scenes[1]
        alignments = [
            (r / "data" / f"synth_{split}" / "words.ctm").read_text() for r in (synth_corpus, corpus_again)
        ]
        assert alignments[0] == alignments[1]
        for u in read_datadir(synth_corpus / "data" / f"synth_{split}"):
            for path in (Path(u.wav_path), Path(u.image_path)):
                assert path.read_bytes() == (corpus_again / path.relative_to(synth_corpus)).read_bytes(), path


def test_data_dirs_and_wavs(synth_corpus):
    keys = []
    for split, n in (("train", SIZES["n_train"]), ("dev", SIZES["n_dev"]), ("test", SIZES["n_test"])):
        utts = read_datadir(synth_corpus / "data" / f"synth_{split}")
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


def test_captions_match_scenes_json(synth_corpus):
    for split in SPLITS:
        d = synth_corpus / "data" / f"synth_{split}"
        scenes = json.loads((d / "scenes.json").read_text())
        lists = _lists(synth_corpus, split)
        assert set(scenes) == set(lists["utt2img"].values())
        for utt, text in lists["text"].items():
            assert_describes(text, scenes[lists["utt2img"][utt]])


def test_word_alignments_are_the_spoken_captions(synth_corpus):
    """words.ctm: every caption word in order, inside its audio, where the audio has speech."""
    letters, seconds = [], []
    for split in SPLITS:
        d = synth_corpus / "data" / f"synth_{split}"
        ctm = read_ctm(d / "words.ctm")
        utts = read_datadir(d)
        assert set(ctm) == {u.utt_id for u in utts}
        for u in utts:
            words = ctm[u.utt_id]
            assert [w for w, _, _ in words] == u.text.split(), u.utt_id
            duration = u.num_samples / 16000
            assert all(0 <= s < e <= duration for _, s, e in words), (u.utt_id, words)
            # in time order, without overlaps (the CTM keeps milliseconds)
            assert all(b[1] >= a[2] - 1e-6 for a, b in zip(words, words[1:])), (u.utt_id, words)
            # speech from (nearly) the start of the trimmed audio to (nearly) its end
            assert words[0][1] < 0.1 and words[-1][2] > duration - 0.15, (u.utt_id, words, duration)
            wav, _ = sf.read(u.wav_path)
            spoken = np.concatenate([wav[int(s * 16000) : int(e * 16000)] for _, s, e in words])
            for a, b in zip(words, words[1:]):
                if b[1] - a[2] > 0.05:  # a pause between two words is silent
                    gap = wav[int(a[2] * 16000) : int(b[1] * 16000)]
                    assert np.sqrt(np.mean(gap**2)) < 0.1 * np.sqrt(np.mean(spoken**2)), (u.utt_id, a, b)
            letters += [len(w) for w, _, _ in words]
            seconds += [e - s for _, s, e in words]
    # longer words take longer to say
    assert np.corrcoef(letters, seconds)[0, 1] > 0.6


def test_dev_and_test_have_unseen_speakers(synth_corpus):
    train_spk = set(_lists(synth_corpus, "train")["utt2spk"].values())
    _, held_out = speech.make_speakers(SIZES["seed"])
    assert not train_spk & {s.name for s in held_out}
    for split in ("dev", "test"):
        spk = list(_lists(synth_corpus, split)["utt2spk"].values())
        assert set(spk) - train_spk, f"{split} has no speaker unseen in training"
        assert all(" " not in s for s in spk)


def test_rerun_is_a_no_op(synth_corpus, caplog):
    files = sorted(p for p in synth_corpus.rglob("*") if p.is_file())
    before = [p.stat().st_mtime_ns for p in files]
    with caplog.at_level(logging.INFO, logger=corpus_writer.__name__):
        corpus_writer.generate(synth_corpus / "dump", synth_corpus / "data", workers=2, **SIZES)
    assert "nothing to do" in caplog.text
    assert [p.stat().st_mtime_ns for p in files] == before


def test_missing_espeak_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # makes the import fail
    with pytest.raises(RuntimeError, match=r"espnet-speechclip\[demo\]"):
        corpus_writer.generate(tmp_path / "dump", tmp_path / "data", **SIZES)


# --------------------------------------------------------------------------------------------------
# The stand-in CLIP
# --------------------------------------------------------------------------------------------------
