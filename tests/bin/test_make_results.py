"""bin/make_results: recipe stage 7 refuses what is not the finished inference of the model (RESULTS.md
itself: tests/recipe/test_recipe.py and tests/evaluation/)."""

import pytest

from espnet_speechclip.bin import make_results
from espnet_speechclip.errors import SpeechCLIPError


def test_a_missing_decode_is_refused_naming_the_stage(parallel_exp, tmp_path):
    import shutil

    exp = tmp_path / "exp"
    shutil.copytree(parallel_exp, exp)
    with pytest.raises(SpeechCLIPError, match=r"decode_flickr8k_test.*stage 6|stage 6.*decode_flickr8k_test"):
        make_results.main(
            ["--exp_dir", str(exp), "--test_set", "flickr8k_test", "--model_file", str(exp / "latest.pth")]
        )
    assert not (exp / "RESULTS.md").exists() and not (exp / "results.json").exists()


def test_without_a_model_file_the_default_checkpoints_are_looked_for(tmp_path):
    (tmp_path / "config.yaml").write_text("model: parallel\n")
    with pytest.raises(SpeechCLIPError, match="valid.mean_r10.best.pth"):
        make_results.main(["--exp_dir", str(tmp_path), "--test_set", "x_test"])
