"""Faults injected into the recipe the way a user's week goes wrong: nothing stale is reused, nothing fails
silently. The shared miniature Flickr8k run (tests/recipe/conftest.py), its tiny hybrid+ config, in a dump
folder whose name has a space."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT
from helpers.recipe import MINI_DUMP as DUMP
from helpers.recipe import MINI_EPOCHS, MINI_IMAGES, copy_of_run, copy_recipe, failed

CONFIG = "conf/tiny/hybrid_plus.yaml"
EXP = "exp/flickr8k_hybrid_plus"
# The shared run's config, one inference job per set as in the shared run (its decode logs unchanged)
ARGS = ("--train_config", CONFIG, "--nj", "1", "--inference_nj", "1")


def test_a_dump_folder_with_a_space_and_an_honest_last_line(flickr8k_run):
    rec, out = flickr8k_run.rec, flickr8k_run.out
    assert (rec / DUMP / "raw" / "flickr8k_train" / "wav.scp").is_file()
    assert json.loads((rec / EXP / "results.json").read_text())["flickr8k_test"]["parallel"]
    assert f"Results: {EXP}/RESULTS.md" in out
    out = flickr8k_run.run(*ARGS, "--stage", "2", "--stop_stage", "2")
    assert "Successfully finished stages 2-2." in out and "Results:" not in out


def test_a_damaged_cached_embedding_is_rebuilt(flickr8k_run):
    npy = sorted((flickr8k_run.image_cache() / "emb").glob("*.npy"))[0]
    good = np.load(npy)
    npy.write_bytes(npy.read_bytes()[:-8])  # truncated
    out = flickr8k_run.run(*ARGS, "--stage", "3", "--stop_stage", "3")
    assert "1 to embed (1 damaged cached embedding(s) recomputed)" in out
    np.testing.assert_allclose(np.load(npy), good, atol=1e-6)


def test_changed_training_options_are_refused_and_the_log_kept(flickr8k_run):
    exp = flickr8k_run.rec / EXP
    config, log = (exp / "config.yaml").read_bytes(), (exp / "train.log").read_text()
    args = ("--stage", "5", "--stop_stage", "5", "--train_args", "--optim_conf lr=0.5")
    out = failed(flickr8k_run.attempt(*ARGS, *args))
    assert "optim_conf.lr: 0.003 -> 0.5" in out and "start a new experiment" in out
    assert (exp / "config.yaml").read_bytes() == config
    now = (exp / "train.log").read_text()
    assert now.startswith(log) and now.count("# Started at") == log.count("# Started at") + 1
    assert now.count("epoch results") == log.count("epoch results") == MINI_EPOCHS


def test_a_config_error_is_one_line(flickr8k_run):
    rec = flickr8k_run.rec
    bad = (ROOT / CONFIG).read_text().replace("upstream: fbank", "upstream: hubert_nope")
    (rec / "bad.yaml").write_text(bad)
    proc = flickr8k_run.attempt(*ARGS, "--stage", "5", "--stop_stage", "5", "--train_config", "bad.yaml")
    out = failed(proc)
    assert "error: unknown s3prl upstream 'hubert_nope'" in out
    assert "Traceback" not in (rec / "exp" / "flickr8k_bad" / "train.log").read_text()


def test_a_failed_inference_cannot_be_scored(flickr8k_run):
    rec = flickr8k_run.rec
    exp = rec / EXP
    results = (exp / "results.json").read_bytes()
    wav = Path((rec / DUMP / "raw" / "flickr8k_test" / "wav.scp").read_text().split()[1])
    if not wav.is_absolute():
        wav = rec / wav
    audio = wav.read_bytes()
    wav.write_bytes(b"RIFF" + b"\0" * 40)  # undecodable: inference fails on it
    try:
        failed(flickr8k_run.attempt(*ARGS, "--stage", "6", "--stop_stage", "6"))
    finally:
        wav.write_bytes(audio)
    out = failed(flickr8k_run.attempt(*ARGS, "--stage", "7", "--stop_stage", "7"))
    assert "decode_flickr8k_test has no record of a finished run" in out and "stage 6" in out
    assert (exp / "results.json").read_bytes() == results
    # and packing refuses nothing stale: the results on disk are still those of the model
    flickr8k_run.run(*ARGS, "--stage", "6", "--stop_stage", "8")


def test_a_regenerated_corpus_rebuilds_caches_and_refuses_stale_outputs(flickr8k_run, tmp_path):
    from helpers.corpora import make_flickr8k_tree
    from PIL import Image

    mine = copy_of_run(flickr8k_run, tmp_path)  # changed for good: a copy of the shared run
    rec, corpus = mine.rec, mine.corpus
    exp = rec / EXP
    results = (exp / "results.json").read_bytes()
    # the same file names with other contents: new audio (another seed) and one new picture
    make_flickr8k_tree(corpus, n_images=MINI_IMAGES, seed=1)
    first_test_image = sorted((corpus / "Flicker8k_Dataset").glob("*_test0.jpg"))[0]
    Image.new("RGB", (48, 48), (0, 255, 255)).save(first_test_image, "JPEG")
    out = mine.run(*ARGS, "--stage", "1", "--stop_stage", "3")
    assert "1 to embed" in out  # the changed picture, and only it

    # the old decode is not the inference of the data as it is now
    out = failed(mine.attempt(*ARGS, "--stage", "7", "--stop_stage", "7"))
    assert "was made from other inputs" in out and "data." in out
    assert (exp / "results.json").read_bytes() == results
    # and the experiment was trained on the old data: continuing it is refused
    out = failed(mine.attempt(*ARGS, "--stage", "5", "--stop_stage", "5"))
    assert "data.train.speech.content" in out and "start a new experiment" in out


def test_a_reseeded_synth_corpus_retrains_the_stand_in_clip_and_reembeds(tmp_path):
    """``./run.sh --synth_seed 1``: the same file names with new pictures and speech."""
    pytest.importorskip("espeakng_loader")
    from helpers.recipe import run_recipe

    rec = copy_recipe(tmp_path / "sc1")
    sizes = (
        "--synth_n_train 4 --synth_n_dev 2 --synth_n_test 2 --synth_captions 2 --nj 1 --stop_stage 3".split()
    )
    first = run_recipe(rec, *sizes, "--clip_steps", "2")
    assert "training synth-clip" in first
    weights = (rec / "exp" / "clip" / "synth-clip.pt").read_bytes()
    report = (rec / "exp" / "clip" / "synth-clip.eval.json").read_text()

    again = run_recipe(rec, *sizes, "--clip_steps", "2")
    assert "training synth-clip" not in again and "up to date" in again
    assert "to embed" in again and not [n for n in re.findall(r"(\d+) to embed", again) if n != "0"]

    # reseeded, and --clip_steps changed with it (the recipe passes it to the CLIP's training)
    reseeded = run_recipe(rec, *sizes, "--clip_steps", "3", "--synth_seed", "1")
    assert "training synth-clip" in reseeded
    assert json.loads((rec / "exp" / "clip" / "synth-clip.eval.json").read_text())["steps"] == 3
    assert (rec / "exp" / "clip" / "synth-clip.pt").read_bytes() != weights
    assert (rec / "exp" / "clip" / "synth-clip.eval.json").read_text() != report
    # a new CLIP: every distinct image of every set is embedded by it, once
    from espnet_speechclip.data.datadir import read_kv
    from espnet_speechclip.files import sha256_file

    images = {
        p for s in ("train", "dev", "test") for p in read_kv(rec / "data" / f"synth_{s}" / "img.scp").values()
    }
    distinct = len({sha256_file(rec / p) for p in images})
    assert sum(int(n) for n in re.findall(r"(\d+) to embed", reseeded)) == distinct
