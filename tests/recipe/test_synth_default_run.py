"""A miniature of the default run (`./run.sh`, built-in synth corpus): every stage on a dozen images, then
the README's reuse commands (the Python API and the query; tests/recipe/test_recipe.py runs their ESPnet
ASR part) on its result."""

import json
import re

import pytest
from helpers.recipe import copy_recipe
from helpers.recipe import run_recipe as run


@pytest.fixture(scope="module")
def synth_run(tmp_path_factory):
    pytest.importorskip("espeakng_loader")
    rec = copy_recipe(tmp_path_factory.mktemp("synth") / "sc1")
    args = "--synth_n_train 12 --synth_n_dev 4 --synth_n_test 4 --clip_steps 2 --nj 2".split()
    out = run(rec, *args, "--train_args", "--max_epoch 1 --batch_size 12")
    return rec, out


def test_miniature_synth_run_goes_through_all_stages(synth_run, capsys):
    rec, out = synth_run
    for branch in ("parallel", "cascaded"):
        exp = rec / "exp" / f"synth_{branch}"
        res = json.loads((exp / "results.json").read_text())["synth_test"][branch]
        assert 0 <= res["speech_to_image"]["R@1"] <= res["speech_to_image"]["R@10"] <= 100
        assert len((exp / "decode_synth_test" / "utt_list").read_text().split()) == 12  # 4 images x 3
        assert (exp / "retrieval_synth_test.png").is_file()
        assert "![retrieval examples](retrieval_synth_test.png)" in (exp / "RESULTS.md").read_text()
        assert (exp / "packed" / "model.zip").is_file()
        # one inference process per data set
        assert [p.name for p in (exp / "decode_synth_test" / "logdir").iterdir()] == ["inference.log"]
    # a K-token cascaded model: one hit rate per keyword slot, and their average
    from espnet_speechclip.config import config_value, read_config

    k = config_value(
        read_config(rec / "exp" / "synth_cascaded" / "config.yaml"), "model_conf.cascaded_conf.num_keywords"
    )
    assert set(res["keyword_hit_rate"]) == {f"kw{i}" for i in range(1, k + 1)} | {"avg"}
    # --nj 2 on CPU: the two configs trained side by side (both launched before either finished)
    lines = out.splitlines()
    launched = [i for i, line in enumerate(lines) if re.search(r"\) training exp/synth_\w+ \(log: ", line)]
    finished = [i for i, line in enumerate(lines) if re.search(r"\) finished training exp/synth_\w+$", line)]
    assert len(launched) == len(finished) == 2 and max(launched) < min(finished), "\n".join(lines)
    for b in ("parallel", "cascaded"):  # and each ended well
        assert "# Ended (code 0)" in (rec / "exp" / f"synth_{b}" / "train.log").read_text()
    # the corpus knows where its words are: the cascaded keywords' time spans are scored against them
    assert (rec / "dump" / "raw" / "synth_test" / "words.ctm").is_file()
    assert (
        0 <= res["keyword_timing"]["boundary_f1"] <= 100
        and res["keyword_timing"]["spans_from"] == "occlusion_segment"
    )
    assert "### Keyword timing (cascaded)" in (rec / "exp" / "synth_cascaded" / "RESULTS.md").read_text()
    assert (rec / "exp" / "clip" / "synth-clip.pt").is_file()
    assert len((rec / "data" / "synth_train" / "wav.scp").read_text().splitlines()) == 36  # 12 x 3
    assert "Successfully finished" in out
    assert "initialized randomly" not in out and "nltk" not in out

    # the acceptance check of the full default run reads these outputs and prints every floor
    from espnet_speechclip.bin.synth_acceptance import check

    passed = check(rec / "exp")
    table = capsys.readouterr().out
    statuses = []
    for figure, floor in (
        ("parallel speech->image R@1", 55),
        ("parallel image->speech R@1", 60),
        ("parallel zero-shot speech->text R@1", 45),
        ("cascaded speech->image R@1", 45),
        ("cascaded keyword hit rate avg", 70),
        ("distinct colour/shape keywords", 8),
    ):
        row = re.search(rf"^{re.escape(figure)} +([0-9.]+) +{floor}  (ok|BELOW FLOOR)$", table, re.MULTILINE)
        assert row, table
        # each row's verdict is its value against its floor, and check() passes only when all do
        assert row.group(2) == ("ok" if float(row.group(1)) >= floor else "BELOW FLOOR"), row.group(0)
        statuses.append(row.group(2))
    assert passed is (statuses == ["ok"] * 6)


def test_reuse_commands_run_after_the_default_run(synth_run):
    """The README's reuse commands after `make demo`: the Python API and the query."""
    from helpers.recipe import check_reuse_example_output, run_reuse_example

    rec, _ = synth_run
    out = run_reuse_example(rec, "exp/synth_parallel", asr=False)
    check_reuse_example_output(out, rec, "exp/synth_parallel", "synth", n_test_images=4, asr=False)
