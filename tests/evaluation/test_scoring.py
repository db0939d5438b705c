"""Scoring a decode folder, and its results page: both keyword hit rates, named apart."""

import json

import numpy as np
import pytest

from espnet_speechclip.evaluation.results import write_results
from espnet_speechclip.evaluation.scoring import score_decode_dir
from espnet_speechclip.models.clip import text_token_ids


def tok(word: str) -> int:
    (i,) = text_token_ids(word)
    return i


@pytest.fixture
def decode_dir(tmp_path):
    """A cascaded decode folder written by hand: 2 utterances, 2 keyword slots, 5 neighbours each."""
    d = tmp_path / "exp" / "decode_test"
    d.mkdir(parents=True)
    utts, texts = ["u1", "u2"], {"u1": "a red square", "u2": "a blue circle"}
    (d / "utt_list").write_text("u1\nu2\n")
    (d / "image_list").write_text("i1\ni2\n")
    (d / "utt2img").write_text("u1 i1\nu2 i2\n")
    (d / "text").write_text("".join(f"{u} {texts[u]}\n" for u in utts))
    rng = np.random.RandomState(0)
    emb = rng.randn(2, 4).astype(np.float32)
    np.save(d / "speech_cascaded.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    np.save(d / "image.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    # u1: slot 1 "red" (hit), slot 2 "dog" (miss, but its neighbour "square" is in the caption)
    # u2: slot 1 "green" (miss, no neighbour in the caption), slot 2 "circle" (hit)
    ids = np.array([[tok("red"), tok("dog")], [tok("green"), tok("circle")]])
    others = [tok(w) for w in ("cat", "tree", "sky")]
    near = np.array(
        [
            [[tok("red"), *others, tok("man")], [tok("dog"), *others, tok("square")]],
            [[tok("green"), *others, tok("man")], [tok("circle"), *others, tok("man")]],
        ]
    )
    np.save(d / "keyword_ids.npy", ids)
    np.save(d / "keyword_scores.npy", np.ones(ids.shape, np.float32))
    np.save(d / "keyword_neighbour_ids.npy", near)
    (d / "keywords").write_text("u1 red dog\nu2 green circle\n")
    (d.parent / "config.yaml").write_text("model: cascaded\nmodel_conf: {}\n")
    return d


def test_both_keyword_hit_rates_named_apart(decode_dir):
    scores = score_decode_dir(decode_dir)["cascaded"]
    assert scores["keyword_hit_rate"] == {"kw1": 50.0, "kw2": 50.0, "avg": 50.0}
    assert scores["keyword_hit_rate_top5_neighbours"] == {"kw1": 50.0, "kw2": 100.0, "avg": 75.0}


def test_results_page_shows_both_rates(decode_dir):
    exp = decode_dir.parent
    (decode_dir / "scores.json").write_text(json.dumps(score_decode_dir(decode_dir)))
    results = write_results(exp, ["test"])
    cascaded = json.loads((exp / "results.json").read_text())["test"]["cascaded"]
    assert cascaded == results["test"]["cascaded"]
    assert cascaded["keyword_hit_rate"]["avg"] == 50.0
    assert cascaded["keyword_hit_rate_top5_neighbours"]["avg"] == 75.0
    md = (exp / "RESULTS.md").read_text()
    assert "| top-1 (the keyword itself) | 50.0 | 50.0 | 50.0 |" in md
    assert "| top-5 neighbours (the authors' metric) | 50.0 | 100.0 | 75.0 |" in md


def test_decode_folder_without_neighbours_scores_top1_only(decode_dir):
    (decode_dir / "keyword_neighbour_ids.npy").unlink()
    scores = score_decode_dir(decode_dir)["cascaded"]
    assert "keyword_hit_rate" in scores and "keyword_hit_rate_top5_neighbours" not in scores
