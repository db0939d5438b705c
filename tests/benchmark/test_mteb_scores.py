"""Our recall vs MTEB's metric code on rankings known by hand: where they agree, and where (ties, the
share-of-captions recall) they differ, as espnet_speechclip.benchmark.mteb_scores states."""

from __future__ import annotations

import json

import pytest

from espnet_speechclip.benchmark.mteb_scores import (
    disagreements,
    find_result,
    mteb_recall,
    mteb_section,
    read_json,
    recall_from_predictions,
    revision_of,
    task_names,
    task_prefix,
    tied_share,
)

pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")
from mteb._evaluators.retrieval_metrics import calculate_retrieval_scores  # noqa: E402

# 3 images with 2 captions each. Similarities chosen so that every rank is known:
# u0 (img a): a first -> S->I hit@1;      u1 (img a): b, a -> hit@2
# u2 (img b): c, a, b -> hit@3 only;      u3 (img b): b first
# u4 (img c): c first;                    u5 (img c): a, b, c -> hit@3 only
UTT2IMG = {"u0": "a", "u1": "a", "u2": "b", "u3": "b", "u4": "c", "u5": "c"}
SIM = {
    "u0": {"a": 0.9, "b": 0.1, "c": 0.0},
    "u1": {"a": 0.5, "b": 0.85, "c": 0.1},
    "u2": {"a": 0.4, "b": 0.3, "c": 0.7},
    "u3": {"a": 0.2, "b": 0.8, "c": 0.3},
    "u4": {"a": 0.1, "b": 0.2, "c": 0.95},
    "u5": {"a": 0.65, "b": 0.55, "c": 0.05},
}
KS = (1, 2, 3)


def a2i_i2a(sim):
    a2i = {u: dict(row) for u, row in sim.items()}
    i2a = {img: {u: sim[u][img] for u in sim} for img in ("a", "b", "c")}
    return a2i, i2a


def qrels():
    i2a = {}
    for u, img in UTT2IMG.items():
        i2a.setdefault(img, {})[u] = 1
    return {u: {img: 1} for u, img in UTT2IMG.items()}, i2a


def mteb_scores(results, rels):
    r = calculate_retrieval_scores(results, rels, list(KS))
    return {
        "recall": {f"R@{k}": 100 * r.recall[f"Recall@{k}"] for k in KS},
        "hit_rate": {f"R@{k}": 100 * r.hit_rate[f"HitRate@{k}"] for k in KS},
    }


def test_known_rankings_give_the_same_recall_in_both_scorers():
    a2i, i2a = a2i_i2a(SIM)
    ours = recall_from_predictions(a2i, i2a, UTT2IMG, KS)
    # by hand: S->I ranks 0, 1, 2, 0, 0, 2
    assert ours["speech_to_image"] == pytest.approx({"R@1": 50.0, "R@2": 100 * 4 / 6, "R@3": 100.0})
    # I->S: a: best own caption u0 0.9 -> rank 0; b: u3 0.8, behind u1 0.85 -> rank 1; c: u4 0.95 -> rank 0
    assert ours["image_to_speech"] == pytest.approx({"R@1": 100 * 2 / 3, "R@2": 100.0, "R@3": 100.0})
    q_a2i, q_i2a = qrels()
    s2i, i2s = mteb_scores(a2i, q_a2i), mteb_scores(i2a, q_i2a)
    # one relevant image: MTEB's recall and hit rate are both our R@k
    assert s2i["recall"] == pytest.approx(ours["speech_to_image"], abs=1e-3)
    assert s2i["hit_rate"] == pytest.approx(ours["speech_to_image"], abs=1e-3)
    # several relevant captions: MTEB's hit rate is our R@k, its recall the share of captions found
    assert i2s["hit_rate"] == pytest.approx(ours["image_to_speech"], abs=1e-3)
    # top 1: a finds 1 of its 2 captions, b none, c 1 of 2
    assert i2s["recall"]["R@1"] == pytest.approx(100 * (0.5 + 0 + 0.5) / 3, abs=1e-3)
    assert disagreements(ours["speech_to_image"], s2i["recall"]) == []


def test_ties_ours_are_pessimistic_mteb_breaks_them_by_document_id():
    tied = {u: {img: 0.5 for img in ("a", "b", "c")} for u in UTT2IMG}
    a2i, i2a = a2i_i2a(tied)
    ours = recall_from_predictions(a2i, i2a, UTT2IMG, KS)
    assert ours["speech_to_image"]["R@1"] == 0.0  # a collapsed model scores nothing
    assert ours["speech_to_image"]["R@3"] == 100.0
    s2i = mteb_scores(a2i, qrels()[0])
    # trec_eval orders equal scores by document id, descending: image "c" comes first
    assert s2i["hit_rate"]["R@1"] == pytest.approx(100 * 2 / 6, abs=1e-3)
    assert s2i["hit_rate"]["R@2"] == pytest.approx(100 * 4 / 6, abs=1e-3)
    assert ours["speech_to_image"]["R@2"] == 0.0
    # they differ by the ties only: not at all once K reaches past every tied competitor
    differ = disagreements(ours["speech_to_image"], s2i["hit_rate"])
    assert [d.split(":")[0] for d in differ] == ["R@1", "R@2"]
    relevant = {u: {img} for u, img in UTT2IMG.items()}
    assert tied_share(a2i, relevant) == 100.0
    assert disagreements(ours["speech_to_image"], s2i["hit_rate"], tied=100.0) == []
    # ties never make MTEB lower than ours, nor higher than the tied share
    assert disagreements({"R@1": 40.0}, {"R@1": 30.0}, tied=50.0) == ["R@1: ours 40.0000 vs MTEB 30.0000"]
    assert disagreements({"R@1": 10.0}, {"R@1": 30.0}, tied=10.0) == ["R@1: ours 10.0000 vs MTEB 30.0000"]
    # one tie: u1's own image a ties image b
    one = {u: dict(row) for u, row in SIM.items()}
    one["u1"]["a"] = one["u1"]["b"]
    assert tied_share(one, relevant) == pytest.approx(100 / 6)


def test_documents_mteb_dropped_rank_below_all_kept_ones():
    a2i, i2a = a2i_i2a(SIM)
    del a2i["u0"]["a"]  # u0's own image (its best) outside MTEB's kept top k: last, rank 2
    ours = recall_from_predictions(a2i, i2a, UTT2IMG, KS)
    assert ours["speech_to_image"]["R@1"] == pytest.approx(100 * 2 / 6)
    assert ours["speech_to_image"]["R@2"] == pytest.approx(100 * 3 / 6)


def test_result_files_and_section(tmp_path):
    result = {
        "task_name": "SynthTestA2IRetrieval",
        "mteb_version": "2.26.24",
        "scores": {
            "test": [{"ndcg_at_10": 0.5, "recall_at_1": 0.25, "recall_at_5": 0.5, "recall_at_10": 1.0}]
        },
    }
    folder = tmp_path / "results" / "org__m" / "rev1"
    folder.mkdir(parents=True)
    (folder / "SynthTestA2IRetrieval.json").write_text(json.dumps(result))
    assert read_json(find_result(tmp_path, "SynthTestA2IRetrieval", "rev1")) == result
    with pytest.raises(FileNotFoundError, match="of model revision rev2"):
        find_result(tmp_path, "SynthTestA2IRetrieval", "rev2")
    assert mteb_recall(result["scores"]["test"][0], "recall") == {"R@1": 25.0, "R@5": 50.0, "R@10": 100.0}
    i2a = {
        "task_name": "SynthTestI2ARetrieval",
        "scores": {
            "test": [
                {
                    "ndcg_at_10": 0.4,
                    **{f"{m}_at_{k}": 0.1 * k for m in ("recall", "hit_rate") for k in (1, 5, 10)},
                }
            ]
        },
    }
    ours = {d: {"R@1": 1.0, "R@5": 2.0, "R@10": 3.0} for d in ("speech_to_image", "image_to_speech")}
    text = "\n".join(mteb_section("synth_test", ours, result, i2a, "parallel"))
    assert "| S→I | MTEB recall@k = hit rate@k | 25.0 | 50.0 | 100.0 | 50.0 |" in text
    assert "| I→S | MTEB hit rate@k | 10.0 | 50.0 | 100.0 | 40.0 |" in text


def test_names_and_revisions():
    assert task_prefix("dump/raw/synth_test") == "SynthTest"
    assert task_names("x/flickr8k_test")["I2A"] == "Flickr8kTestI2ARetrieval"
    assert revision_of({"weights": "1"}) != revision_of({"weights": "2"})
    assert len(revision_of({"weights": "1"})) == 40


def test_results_sections_put_mteb_beside_ours_for_this_model_and_data(tmp_path):
    from helpers.corpora import make_tiny_corpus

    from espnet_speechclip.benchmark.mteb_scores import results_sections
    from espnet_speechclip.data.identity import datadir_identity

    data = make_tiny_corpus(tmp_path, n_images=2, captions=1, split="test")  # data/tiny_test
    model = {"weights": "abc", "options": "def"}
    folder = tmp_path / "mteb" / "results" / "org__m" / revision_of(model)
    folder.mkdir(parents=True)
    (folder / "model_meta.json").write_text(json.dumps({"loader_kwargs": {"branch": "cascaded"}}))
    scores = {f"{m}_at_{k}": 0.5 for m in ("recall", "hit_rate", "ndcg") for k in (1, 5, 10)}
    for d in ("A2I", "I2A"):
        result = {
            "task_name": f"TinyTest{d}Retrieval",
            "dataset_revision": revision_of(datadir_identity(data)),
            "scores": {"test": [scores]},
        }
        (folder / f"TinyTest{d}Retrieval.json").write_text(json.dumps(result))
    (tmp_path / "exp" / "decode_tiny_test").mkdir(parents=True)
    ours = {d: {"R@1": 10.0, "R@5": 20.0, "R@10": 30.0} for d in ("speech_to_image", "image_to_speech")}
    (tmp_path / "exp" / "decode_tiny_test" / "scores.json").write_text(
        json.dumps({"parallel": {}, "cascaded": ours})
    )
    lines = results_sections(tmp_path / "mteb", tmp_path / "exp", ["tiny_test"], model, tmp_path / "data")
    assert lines[0] == "## MTEB evaluator (tiny_test, cascaded branch)"
    assert "| S→I | ours (decode folder) | 10.0 | 20.0 | 30.0 |  |" in lines
    with pytest.raises(FileNotFoundError, match="of model revision"):
        results_sections(tmp_path / "mteb", tmp_path / "exp", ["tiny_test"], {"weights": "other"})
    (data / "text").write_text((data / "text").read_text().replace("square", "box"))
    with pytest.raises(ValueError, match="other data than"):
        results_sections(tmp_path / "mteb", tmp_path / "exp", ["tiny_test"], model, tmp_path / "data")
