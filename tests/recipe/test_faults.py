"""Faults injected into the recipe the way a user's week goes wrong: nothing stale is reused, nothing fails
silently. A miniature Flickr8k with the tiny parallel config, in a dump folder whose name has a space."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT, copy_recipe

CONFIG = "conf/tiny/parallel.yaml"
EXP = "exp/flickr8k_parallel"
DUMP = "dump dir"


def attempt(rec: Path, *args: str, corpus: Path) -> subprocess.CompletedProcess:
    """``./run.sh --corpus flickr8k ...`` in ``rec``; the finished process (any exit status)."""
    env = dict(os.environ, FLICKR8K=str(corpus), OMP_NUM_THREADS="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env.pop("SPEECHCLIP_DEBUG", None)
    common = ["--corpus", "flickr8k", "--train_config", CONFIG, "--nj", "1", "--dumpdir", DUMP]
    return subprocess.run(
        ["./run.sh", *common, *args], cwd=rec, env=env, capture_output=True, text=True, timeout=900
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def failed(proc: subprocess.CompletedProcess) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]  # a one-line cause, not a stack
    return out


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from helpers import make_flickr8k_tree, make_tiny_clip

    tmp = tmp_path_factory.mktemp("faults")
    corpus = make_flickr8k_tree(tmp / "flickr8k", n_images={"train": 8, "dev": 4, "test": 4})
    rec = copy_recipe(tmp / "sc1")
    (rec / "exp" / "clip").mkdir(parents=True)
    make_tiny_clip(rec / "exp" / "clip" / "tiny-clip.pt")
    out = ok(attempt(rec, "--stop_stage", "7", "--train_args", "--max_epoch 2", corpus=corpus))
    return rec, corpus, out


def test_a_dump_folder_with_a_space_and_an_honest_last_line(recipe):
    rec, corpus, out = recipe
    assert (rec / DUMP / "raw" / "flickr8k_train" / "wav.scp").is_file()
    assert json.loads((rec / EXP / "results.json").read_text())["flickr8k_test"]["parallel"]
    assert f"Results: {EXP}/RESULTS.md" in out
    out = ok(attempt(rec, "--stage", "4", "--stop_stage", "4", corpus=corpus))
    assert "Successfully finished stages 4-4." in out and "Results:" not in out


def test_a_damaged_cached_embedding_is_rebuilt(recipe):
    rec, corpus, _ = recipe
    cache = next((rec / DUMP / "image_emb").iterdir())
    npy = sorted((cache / "emb").glob("*.npy"))[0]
    good = np.load(npy)
    npy.write_bytes(npy.read_bytes()[:-8])  # truncated
    out = ok(attempt(rec, "--stage", "3", "--stop_stage", "3", corpus=corpus))
    assert "1 to embed (1 damaged cached embedding(s) recomputed)" in out
    np.testing.assert_allclose(np.load(npy), good, atol=1e-6)


def test_changed_training_options_are_refused_and_the_log_kept(recipe):
    rec, corpus, _ = recipe
    exp = rec / EXP
    config, log = (exp / "config.yaml").read_bytes(), (exp / "train.log").read_text()
    out = failed(
        attempt(
            rec, "--stage", "5", "--stop_stage", "5", "--train_args", "--optim_conf lr=0.5", corpus=corpus
        )
    )
    assert "optim_conf.lr: 0.003 -> 0.5" in out and "start a new experiment" in out
    assert (exp / "config.yaml").read_bytes() == config
    now = (exp / "train.log").read_text()
    assert now.startswith(log) and now.count("# Started at") == log.count("# Started at") + 1
    assert now.count("epoch results") == log.count("epoch results") == 2


def test_a_config_error_is_one_line(recipe, tmp_path):
    rec, corpus, _ = recipe
    bad = (ROOT / CONFIG).read_text().replace("upstream: fbank", "upstream: hubert_nope")
    (rec / "bad.yaml").write_text(bad)
    proc = attempt(rec, "--stage", "5", "--stop_stage", "5", "--train_config", "bad.yaml", corpus=corpus)
    out = failed(proc)
    assert "error: unknown s3prl upstream 'hubert_nope'" in out
    assert "Traceback" not in (rec / "exp" / "flickr8k_bad" / "train.log").read_text()


def test_a_failed_inference_cannot_be_scored(recipe):
    rec, corpus, _ = recipe
    exp = rec / EXP
    results = (exp / "results.json").read_bytes()
    wav = Path((rec / DUMP / "raw" / "flickr8k_test" / "wav.scp").read_text().split()[1])
    if not wav.is_absolute():
        wav = rec / wav
    audio = wav.read_bytes()
    wav.write_bytes(b"RIFF" + b"\0" * 40)  # undecodable: inference fails on it
    try:
        failed(attempt(rec, "--stage", "6", "--stop_stage", "6", corpus=corpus))
    finally:
        wav.write_bytes(audio)
    out = failed(attempt(rec, "--stage", "7", "--stop_stage", "7", corpus=corpus))
    assert "decode_flickr8k_test has no record of a finished run" in out and "stage 6" in out
    assert (exp / "results.json").read_bytes() == results
    # and packing refuses nothing stale: the results on disk are still those of the model
    ok(attempt(rec, "--stage", "6", "--stop_stage", "8", corpus=corpus))


def test_a_regenerated_corpus_rebuilds_caches_and_refuses_stale_outputs(recipe):
    from helpers import make_flickr8k_tree
    from PIL import Image

    rec, corpus, _ = recipe
    exp = rec / EXP
    results = (exp / "results.json").read_bytes()
    # the same file names with other contents: new audio (another seed) and one new picture
    make_flickr8k_tree(corpus, n_images={"train": 8, "dev": 4, "test": 4}, seed=1)
    first_test_image = sorted((corpus / "Flicker8k_Dataset").glob("*_test0.jpg"))[0]
    Image.new("RGB", (48, 48), (0, 255, 255)).save(first_test_image, "JPEG")
    out = ok(attempt(rec, "--stage", "1", "--stop_stage", "3", corpus=corpus))
    assert "1 to embed" in out  # the changed picture, and only it

    # the old decode is not the inference of the data as it is now
    out = failed(attempt(rec, "--stage", "7", "--stop_stage", "7", corpus=corpus))
    assert "was made from other inputs" in out and "data." in out
    assert (exp / "results.json").read_bytes() == results
    # and the experiment was trained on the old data: continuing it is refused
    out = failed(attempt(rec, "--stage", "5", "--stop_stage", "5", corpus=corpus))
    assert "data.train.speech.content" in out and "start a new experiment" in out


def test_a_reseeded_synth_corpus_retrains_the_stand_in_clip_and_reembeds(tmp_path):
    """``./run.sh --synth_seed 1``: the same file names with new pictures and speech."""
    pytest.importorskip("espeakng_loader")
    from helpers import run_recipe

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

    reseeded = run_recipe(rec, *sizes, "--clip_steps", "2", "--synth_seed", "1")
    assert "training synth-clip" in reseeded
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

    more = run_recipe(rec, *sizes, "--clip_steps", "3", "--synth_seed", "1", "--stage", "3")
    assert (
        "training synth-clip" in more
        and json.loads((rec / "exp" / "clip" / "synth-clip.eval.json").read_text())["steps"] == 3
    )
