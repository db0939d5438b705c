"""Scoring a decode folder, and its results page: both keyword hit rates, named apart; variable-length
keywords (pooled hit rate) and keyword timing against a word alignment, on hand-made folders whose numbers
are worked out here."""

import json

import numpy as np
import pytest

from espnet_speechclip.data.datadir import write_ctm
from espnet_speechclip.evaluation.results import keyword_tables, write_results
from espnet_speechclip.evaluation.scoring import score_decode_dir
from espnet_speechclip.evaluation.tables import keyword_timing_table
from espnet_speechclip.inference.decode_dir import DecodeDir, merge_utterance_parts
from espnet_speechclip.models.clip import text_token_ids

NAN = float("nan")
TEXT = {"u1": "a red star", "u2": "a blue circle"}
WORDS = {
    "u1": [("a", 0.0, 0.1), ("red", 0.1, 0.4), ("star", 0.4, 0.8)],
    "u2": [("a", 0.0, 0.1), ("blue", 0.1, 0.5), ("circle", 0.5, 1.0)],
}


def tok(word: str) -> int:
    (i,) = text_token_ids(word)
    return i


def write_folder(d, ids, spans, lengths=None, utts=("u1", "u2")):
    """A decode folder of two utterances of two images, cascaded branch, perfect retrieval."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "utt_list").write_text("".join(f"{u}\n" for u in utts))
    (d / "image_list").write_text("i1\ni2\n")
    (d / "utt2img").write_text("u1 i1\nu2 i2\n")
    (d / "text").write_text("".join(f"{u} {t}\n" for u, t in TEXT.items()))
    np.save(d / "image.npy", np.eye(2, dtype=np.float32))
    np.save(d / "speech_cascaded.npy", np.eye(2, dtype=np.float32))
    ids = np.array(ids, dtype=np.int64)
    np.save(d / "keyword_ids.npy", ids)
    np.save(d / "keyword_scores.npy", np.where(ids >= 0, 0.5, 0.0).astype(np.float32))
    np.save(d / "keyword_spans.npy", np.array(spans, dtype=np.float64))
    if lengths is not None:
        np.save(d / "keyword_lengths.npy", np.array(lengths, dtype=np.int64))
    from espnet_speechclip.models.clip import decode_token

    with open(d / "keywords", "w") as f:
        for u, row in zip(utts, ids):
            f.write(" ".join([u] + [decode_token(i) for i in row if i >= 0]) + "\n")
    return d


@pytest.fixture
def cif_folder(tmp_path):
    # u1: three units "a" "red" "star" on the words (the second ends 40 ms late); u2: two units,
    # "blue" over "a blue" and "circle" on its word; padded with -1 / NaN
    d = write_folder(
        tmp_path / "cif",
        [[tok("a"), tok("red"), tok("star")], [tok("blue"), tok("circle"), -1]],
        [[(0.0, 0.1), (0.1, 0.44), (0.44, 0.8)], [(0.0, 0.5), (0.5, 1.0), (NAN, NAN)]],
        lengths=[3, 2],
    )
    write_ctm(d / "words.ctm", WORDS)
    return d


def test_variable_length_keywords_and_their_timing(cif_folder):
    res = score_decode_dir(cif_folder)["cascaded"]
    assert res["speech_to_image"]["R@1"] == 100.0
    # 5 keywords, all in their captions ("a" is a caption token like any other here)
    assert res["keyword_hit_rate"] == {"pooled": 100.0, "utterance_avg": 100.0, "keywords_per_utterance": 2.5}
    t = res["keyword_timing"]
    assert t["spans_from"] == "cif_segment" and t["keywords"] == 5 and t["tolerance"] == 0.02
    # interior boundaries: u1 predicted 0.1, 0.44 vs reference 0.1, 0.4 -> 1 hit; u2 predicted 0.5 vs
    # reference 0.1, 0.5 -> 1 hit. P = 2/3, R = 2/4
    assert t["boundary_precision"] == pytest.approx(200 / 3)
    assert t["boundary_recall"] == pytest.approx(50.0)
    assert t["boundary_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5) * 100)
    assert t["over_segmentation"] == pytest.approx(3 / 4 - 1)
    # equal spans: u1 0.267, 0.533 (no hit), u2 0.5 (a hit): P = 1/3, R = 1/4
    assert t["boundary_f1_equal"] == pytest.approx(100 * 2 / 7)
    # contains: u1 "a" yes, "red" (0.1-0.44 over 0.1-0.4) yes, "star" (0.44-0.8 vs 0.4-0.8) no;
    # u2 "blue" (0.0-0.5 over 0.1-0.5) yes, "circle" yes -> 4 / 5; every span overlaps its word
    assert t["span_contains_word"] == pytest.approx(80.0)
    assert t["span_overlaps_word"] == 100.0
    assert t["mean_span"] == pytest.approx((0.1 + 0.34 + 0.36 + 0.5 + 0.5) / 5)
    # the results page shows the pooled rate, the spans of the example keywords and the timing table
    page = "\n".join(keyword_tables(cif_folder, res) + keyword_timing_table(t))
    assert "| top-1 (the keyword itself) | 100.0 | 100.0 | 2.50 |" in page
    assert "star (0.50, 0.44-0.80)" in page and "circle (0.50, 0.50-1.00)" in page
    assert (
        "| boundary F1 | 57.1 | 28.6 |" in page and "| boundary precision / recall | 66.7 / 50.0 | |" in page
    )
    assert "| span contains its word (%) | 80.0 |" in page
    json.dumps(res)  # scores.json


def test_k_token_keywords_keep_slot_rates_and_take_attention_spans(tmp_path):
    d = write_folder(
        tmp_path / "k",
        [[tok("red"), tok("blue")], [tok("blue"), tok("circle")]],
        [[(0.1, 0.4), (0.0, 0.8)], [(0.1, 0.5), (0.3, 1.0)]],
    )
    write_ctm(d / "words.ctm", WORDS)
    res = score_decode_dir(d)["cascaded"]
    assert res["keyword_hit_rate"] == {"kw1": 100.0, "kw2": 50.0, "avg": 75.0}
    assert res["keyword_timing"]["spans_from"] == "occlusion_segment"
    # without a word alignment there is nothing to time against
    (d / "words.ctm").unlink()
    assert "keyword_timing" not in score_decode_dir(d)["cascaded"]


def test_alignment_missing_an_utterance_is_named(cif_folder):
    write_ctm(cif_folder / "words.ctm", {"u1": WORDS["u1"]})
    with pytest.raises(ValueError, match=r"words.ctm has no words for 1 utterance.*u2"):
        score_decode_dir(cif_folder)


def test_parts_of_different_keyword_widths_merge_padded(tmp_path):
    """Parallel inference jobs of a CIF model: each part is as wide as its own longest keyword list."""
    a = write_folder(tmp_path / "a", [[5, 6, 7]], [[(0, 1), (1, 2), (2, 3)]], lengths=[3], utts=["u1"])
    b = write_folder(tmp_path / "b", [[8]], [[(0, 1)]], lengths=[1], utts=["u2"])
    merged = merge_utterance_parts([a, b], tmp_path / "m")
    np.testing.assert_array_equal(np.load(merged / "keyword_ids.npy"), [[5, 6, 7], [8, -1, -1]])
    np.testing.assert_array_equal(np.load(merged / "keyword_lengths.npy"), [3, 1])
    spans = np.load(merged / "keyword_spans.npy")
    assert spans.shape == (2, 3, 2) and np.isnan(spans[1, 1:]).all()
    np.testing.assert_array_equal(np.load(merged / "keyword_scores.npy")[1], [0.5, 0, 0])
    (merged / "image_list").write_text("i1\ni2\n")
    (merged / "utt2img").write_text("u1 i1\nu2 i2\n")
    ids, spans = DecodeDir.read(merged).keyword_lists()
    assert [list(i) for i in ids] == [[5, 6, 7], [8]] and spans[1].shape == (1, 2)


def test_variable_length_keywords_top5_neighbour_rate(cif_folder):
    """CIF keywords get the authors' neighbour rate too, pooled: a keyword hits when it or one of its
    nearest codebook subwords is in the caption; the padding (-1) never hits."""
    others = [tok(w) for w in ("cat", "tree", "sky")]
    # u1 "a red star": keyword "dog" misses, but its neighbour "star" is in the caption; "man" misses
    # u2 "a blue circle": "green" misses, "circle" hits
    ids = np.array([[tok("dog"), tok("man"), -1], [tok("green"), tok("circle"), -1]])
    near = np.array(
        [
            [[tok("dog"), *others, tok("star")], [tok("man"), *others, tok("dog")], [-1] * 5],
            [[tok("green"), *others, tok("man")], [tok("circle"), *others, tok("man")], [-1] * 5],
        ]
    )
    np.save(cif_folder / "keyword_ids.npy", ids)
    np.save(cif_folder / "keyword_lengths.npy", np.array([2, 2]))
    np.save(cif_folder / "keyword_neighbour_ids.npy", near)
    (cif_folder / "keywords").write_text("u1 dog man\nu2 green circle\n")
    res = score_decode_dir(cif_folder)["cascaded"]
    assert res["keyword_hit_rate"] == {"pooled": 25.0, "utterance_avg": 25.0, "keywords_per_utterance": 2.0}
    assert res["keyword_hit_rate_top5_neighbours"] == {
        "pooled": 50.0,
        "utterance_avg": 50.0,
        "keywords_per_utterance": 2.0,
    }
    page = "\n".join(keyword_tables(cif_folder, res))
    assert "| top-5 neighbours (the authors' metric) | 50.0 | 50.0 | 2.00 |" in page


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
