"""A miniature of the default run (`./run.sh`, built-in synth corpus): every stage on a few dozen images,
then the README's reuse commands on its result."""

import json

import pytest
from helpers import copy_recipe
from helpers import run_recipe as run


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    rec = copy_recipe(tmp_path_factory.mktemp("synth") / "sc1")
    args = "--synth_n_train 24 --synth_n_dev 6 --synth_n_test 6 --clip_steps 20 --nj 2".split()
    out = run(rec, *args, "--train_args", "--max_epoch 1 --batch_size 12")
    return rec, out


def test_miniature_synth_run_goes_through_all_stages(synth_run):
    rec, out = synth_run
    for branch in ("parallel", "cascaded"):
        exp = rec / "exp" / f"synth_{branch}"
        res = json.loads((exp / "results.json").read_text())["synth_test"][branch]
        assert 0 <= res["speech_to_image"]["R@1"] <= res["speech_to_image"]["R@10"] <= 100
        assert len((exp / "decode_synth_test" / "utt_list").read_text().split()) == 18
        assert (exp / "retrieval_synth_test.png").is_file()
        assert "![retrieval examples](retrieval_synth_test.png)" in (exp / "RESULTS.md").read_text()
        assert (exp / "packed" / "model.zip").is_file()
    assert "keyword_hit_rate" in res
    # the corpus knows where its words are: the cascaded keywords' time spans are scored against them
    assert (rec / "dump" / "raw" / "synth_test" / "words.ctm").is_file()
    assert (
        0 <= res["keyword_timing"]["boundary_f1"] <= 100
        and res["keyword_timing"]["spans_from"] == "attention"
    )
    assert "### Keyword timing (cascaded)" in (rec / "exp" / "synth_cascaded" / "RESULTS.md").read_text()
    assert (rec / "exp" / "clip" / "synth-clip.pt").is_file()
    assert len((rec / "data" / "synth_train" / "wav.scp").read_text().splitlines()) == 72
    assert "Successfully finished" in out
    assert "initialized randomly" not in out and "nltk" not in out


def test_reuse_commands_run_after_the_default_run(synth_run):
    from helpers import check_reuse_example_output, run_reuse_example

    rec, _ = synth_run
    out = run_reuse_example(rec, "exp/synth_parallel")
    check_reuse_example_output(out, rec, "exp/synth_parallel", "synth", n_test_images=6)
