"""The recipe egs2/speechclip/sc1 end to end (stages 1-8) on a miniature Flickr8k with the tiny configs
(parallel, cascaded, and hybrid+, whose keyword counts train towards the captions' token counts)."""

import json
import re

import pytest
from helpers import ROOT, copy_recipe
from helpers import run_recipe as run

TINY = "conf/tiny/parallel.yaml conf/tiny/cascaded.yaml conf/tiny/hybrid_plus.yaml"


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from helpers import make_flickr8k_tree, make_tiny_clip

    tmp = tmp_path_factory.mktemp("recipe")
    corpus = make_flickr8k_tree(tmp / "flickr8k")
    rec = copy_recipe(tmp / "sc1")
    (rec / "exp" / "clip").mkdir(parents=True)
    make_tiny_clip(rec / "exp" / "clip" / "tiny-clip.pt")
    out = run(rec, "--corpus", "flickr8k", "--train_config", TINY, "--nj", "1", env={"FLICKR8K": str(corpus)})
    return rec, out, corpus


def test_stages_1_to_8_produce_results(recipe):
    rec, out, _ = recipe
    for name in ("flickr8k_parallel", "flickr8k_cascaded"):
        exp = rec / "exp" / name
        results = json.loads((exp / "results.json").read_text())
        assert list(results) == ["flickr8k_test"]
        branch = name.split("_")[1]
        res = results["flickr8k_test"][branch]
        for direction in ("speech_to_image", "image_to_speech", "speech_to_text", "text_to_speech"):
            assert set(res[direction]) == {"R@1", "R@5", "R@10"}
        if branch == "cascaded":
            assert set(res["keyword_hit_rate"]) == {"kw1", "kw2", "kw3", "kw4", "avg"}
        assert list(results["flickr8k_test"]) == [branch]
        md = (exp / "RESULTS.md").read_text()
        assert "## Environment" in md and "## flickr8k_test" in md and "trainable" in md
        assert (exp / "packed" / "model.zip").is_file()
    # hybrid+: the recipe gave the training the transcripts its unit targets need
    exp = rec / "exp" / "flickr8k_hybrid_plus"
    assert "text,text,text" in (exp / "train.log").read_text()
    res = json.loads((exp / "results.json").read_text())["flickr8k_test"]
    assert list(res) == ["parallel", "cascaded"]
    assert set(res["cascaded"]["keyword_hit_rate"]) == {"pooled", "utterance_avg", "keywords_per_utterance"}
    assert "pooled" in (exp / "RESULTS.md").read_text() and (exp / "packed" / "model.zip").is_file()
    # data dirs in the documented layout, 12/4/4 images x 2 captions
    for split, n in (("train", 24), ("dev", 8), ("test", 8)):
        d = rec / "data" / f"flickr8k_{split}"
        for f in ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples"):
            assert (d / f).is_file()
        assert len((d / "wav.scp").read_text().splitlines()) == n


def test_rerun_of_finished_stage_does_no_work(recipe):
    rec, _, corpus = recipe
    cache = next((rec / "dump" / "image_emb").iterdir())
    before = {p: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    out = run(
        rec,
        "--corpus",
        "flickr8k",
        "--train_config",
        TINY,
        "--stage",
        "3",
        "--stop_stage",
        "3",
        env={"FLICKR8K": str(corpus)},
    )
    assert "0 to embed" in out
    assert {p: p.stat().st_mtime_ns for p in cache.glob("*.npy")} == before


def test_different_clip_recomputes_the_image_cache(recipe):
    from helpers import make_tiny_clip

    rec, _, corpus = recipe
    make_tiny_clip(rec / "exp" / "clip" / "other-clip.pt", seed=1)
    conf = (
        (ROOT / "conf" / "tiny" / "parallel.yaml")
        .read_text()
        .replace("exp/clip/tiny-clip.pt", "exp/clip/other-clip.pt")
    )
    (rec / "other.yaml").write_text(conf)
    out = run(
        rec,
        "--corpus",
        "flickr8k",
        "--train_config",
        "other.yaml",
        "--stage",
        "3",
        "--stop_stage",
        "3",
        env={"FLICKR8K": str(corpus)},
    )
    caches = sorted((rec / "dump" / "image_emb").iterdir())
    assert len(caches) == 2
    embedded = [int(n) for n in re.findall(r"(\d+) to embed", out)]
    assert sum(embedded) == 20  # 12 + 4 + 4 unique images, not one per caption
