"""A miniature of the default run (`./run.sh`, built-in synth corpus): every stage on a few dozen images,
then the README's reuse commands on its result."""

import json
import re
import time

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


def test_miniature_synth_run_goes_through_all_stages(synth_run, capsys):
    rec, out = synth_run
    for branch in ("parallel", "cascaded"):
        exp = rec / "exp" / f"synth_{branch}"
        res = json.loads((exp / "results.json").read_text())["synth_test"][branch]
        assert 0 <= res["speech_to_image"]["R@1"] <= res["speech_to_image"]["R@10"] <= 100
        assert len((exp / "decode_synth_test" / "utt_list").read_text().split()) == 18
        assert (exp / "retrieval_synth_test.png").is_file()
        assert "![retrieval examples](retrieval_synth_test.png)" in (exp / "RESULTS.md").read_text()
        assert (exp / "packed" / "model.zip").is_file()
        # one inference process per data set
        assert [p.name for p in (exp / "decode_synth_test" / "logdir").iterdir()] == ["inference.log"]
    assert "keyword_hit_rate" in res
    # --nj 2 on CPU: the two configs trained side by side (each started before the other ended)
    spans = {b: _run_span(rec / "exp" / f"synth_{b}" / "train.log") for b in ("parallel", "cascaded")}
    assert spans["parallel"][0] <= spans["cascaded"][1] and spans["cascaded"][0] <= spans["parallel"][1]
    # the corpus knows where its words are: the cascaded keywords' time spans are scored against them
    assert (rec / "dump" / "raw" / "synth_test" / "words.ctm").is_file()
    assert (
        0 <= res["keyword_timing"]["boundary_f1"] <= 100
        and res["keyword_timing"]["spans_from"] == "saliency_segment"
    )
    assert "### Keyword timing (cascaded)" in (rec / "exp" / "synth_cascaded" / "RESULTS.md").read_text()
    assert (rec / "exp" / "clip" / "synth-clip.pt").is_file()
    assert len((rec / "data" / "synth_train" / "wav.scp").read_text().splitlines()) == 72
    assert "Successfully finished" in out
    assert "initialized randomly" not in out and "nltk" not in out

    # the acceptance check of the full default run reads these outputs and prints every floor
    from espnet_speechclip.bin.synth_acceptance import check

    check(rec / "exp")
    table = capsys.readouterr().out
    for figure, floor in (
        ("parallel speech->image R@1", 55),
        ("parallel image->speech R@1", 60),
        ("parallel zero-shot speech->text R@1", 45),
        ("cascaded speech->image R@1", 45),
        ("cascaded keyword hit rate avg", 70),
        ("distinct colour/shape keywords", 8),
    ):
        assert re.search(rf"^{re.escape(figure)} +[0-9.]+ +{floor} ", table, re.MULTILINE), table


def test_reuse_commands_run_after_the_default_run(synth_run):
    from helpers import check_reuse_example_output, run_reuse_example

    rec, _ = synth_run
    out = run_reuse_example(rec, "exp/synth_parallel")
    check_reuse_example_output(out, rec, "exp/synth_parallel", "synth", n_test_images=6)


def _run_span(log):
    """(start, end) of a job from the header and footer lines that utils/run.pl writes to its log."""
    text = log.read_text()
    start = re.search(r"^# Started at (.+)$", text, re.MULTILINE).group(1)
    end = re.search(r"^# Ended \(code 0\) at (.+)$", text, re.MULTILINE).group(1)
    return tuple(time.mktime(time.strptime(t.strip(), "%a %b %d %H:%M:%S %Y")) for t in (start, end))
