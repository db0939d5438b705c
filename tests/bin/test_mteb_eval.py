"""mteb_eval end to end on a tiny model and data dir: MTEB's evaluator, its result files, and our
recall agreeing with MTEB's on the scores it ranked."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")

from espnet_speechclip.benchmark.mteb_scores import find_result, read_json, revision_of, split_scores  # noqa: E402
from espnet_speechclip.bin.mteb_eval import main  # noqa: E402
from espnet_speechclip.identity import model_identity  # noqa: E402
from espnet_speechclip.inference.loader import resolve_model  # noqa: E402


def test_local_tasks_run_through_mteb(parallel_exp, tmp_path, capsys):
    from helpers.corpora import make_tiny_corpus

    data = make_tiny_corpus(tmp_path / "corpus", n_images=4, captions=2, split="test")
    out = tmp_path / "results"
    main(
        [
            "--model",
            str(parallel_exp),
            "--data_dir",
            str(data),
            "--output_folder",
            str(out),
            "--device",
            "cpu",
        ]
        + ["--cache_dir", str(tmp_path / "hf")]
    )
    printed = capsys.readouterr().out
    revision = revision_of(model_identity(*resolve_model(parallel_exp)))
    folder = out / "results" / f"espnet-speechclip__{parallel_exp.name}" / revision
    assert json.loads((folder / "model_meta.json").read_text())["embed_dim"] == 32
    for direction in ("A2I", "I2A"):
        scores = split_scores(read_json(find_result(out, f"TinyTest{direction}Retrieval", revision)))
        assert 0.0 < scores["ndcg_at_10"] <= 1.0 and scores["main_score"] == scores["ndcg_at_10"]
        assert (out / "predictions" / f"TinyTest{direction}Retrieval_predictions.json").is_file()
        # the agreement line: ours and MTEB's R@1/5/10, printed side by side and equal
        line = next(x for x in printed.splitlines() if x.startswith(f"TinyTest{direction}Retrieval: ours"))
        ours, theirs = line.split("ours R@1/5/10 ")[1].split("; MTEB ")
        assert ours.split() == theirs.split(" ", 1)[1].split(";")[0].split()


def test_without_tasks_it_says_what_to_give(tmp_path):
    with pytest.raises(ValueError, match="--tasks.*--data_dir"):
        main(["--model", str(tmp_path), "--output_folder", str(tmp_path)])


def test_task_names_as_the_pinned_release_spells_them():
    import mteb

    from espnet_speechclip.bin.mteb_eval import mteb_task
    from espnet_speechclip.errors import InputError

    assert mteb_task(mteb, "SpokenCOCOA2I").metadata.name == "SpokenCOCOA2IRetrieval"
    assert mteb_task(mteb, "SpokenCOCOI2ARetrieval").metadata.category == "i2a"
    with pytest.raises(InputError, match="unknown MTEB task.*NoSuchTask"):
        mteb_task(mteb, "NoSuchTask")
