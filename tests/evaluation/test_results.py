"""The results pages and their record: written with the pages, never removed before; results without a
matching record are refused."""

import json

import pytest
import yaml

from espnet_speechclip.evaluation import results as results_module
from espnet_speechclip.evaluation.results import require_results_of, write_results
from espnet_speechclip.provenance import ProvenanceError, record_path

MODEL_A = {"weights": "a" * 64, "options": "x"}
MODEL_B = {"weights": "b" * 64, "options": "x"}


def scored(exp, r1: float):
    """An experiment folder whose decode folder of set ``test`` scored S->I R@1 = ``r1``."""
    exp.mkdir(exist_ok=True)
    config = {"model": "parallel", "clip_conf": {"model_name": "tiny"}, "speech_encoder_conf": {}}
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    (exp / "decode_test").mkdir(exist_ok=True)
    scores = {"parallel": {"speech_to_image": {"R@1": r1, "R@5": 50.0, "R@10": 70.0}}}
    (exp / "decode_test" / "scores.json").write_text(json.dumps(scores))
    return exp


def test_a_scoring_run_stopped_before_its_record_leaves_results_that_are_refused(tmp_path, monkeypatch):
    exp = scored(tmp_path / "exp", 6.67)
    write_results(exp, ["test"], model=MODEL_A)
    require_results_of(exp / "results.json", MODEL_A)
    with pytest.raises(ProvenanceError, match="was made from other inputs"):  # the weights of another run
        require_results_of(exp / "results.json", MODEL_B)

    # stage 7 for other weights, killed before its record is written (kill -9 at any point before)
    scored(exp, 5.0)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(results_module, "write_record", killed)
    with pytest.raises(KeyboardInterrupt):
        write_results(exp, ["test"], model=MODEL_B)
    assert json.loads((exp / "results.json").read_text())["test"]["parallel"]["speech_to_image"]["R@1"] == 5.0
    assert record_path(exp / "results.json").is_file()  # the old record stays until replaced
    for model in (MODEL_A, MODEL_B):  # neither the old model's record nor the new model vouches for them
        with pytest.raises(ProvenanceError, match=r"rerun the scoring stage \(stage 7\)"):
            require_results_of(exp / "results.json", model)

    monkeypatch.undo()
    write_results(exp, ["test"], model=MODEL_B)
    require_results_of(exp / "results.json", MODEL_B)


def test_results_without_a_record_are_refused(tmp_path):
    exp = scored(tmp_path / "exp", 6.67)
    write_results(exp, ["test"])  # no model: no record
    assert not record_path(exp / "results.json").exists()
    with pytest.raises(
        ProvenanceError, match=r"results.json has no record .*\(pack --hand_written_results\)"
    ):
        require_results_of(exp / "results.json", MODEL_A)
    # a decode folder's scores.json passes on its folder's record, and only that
    with pytest.raises(ProvenanceError, match="scores.json has no record"):
        require_results_of(exp / "decode_test" / "scores.json", MODEL_A)
