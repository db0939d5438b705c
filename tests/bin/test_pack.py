"""bin/pack: recipe stage 8's command (the archive format: tests/inference/test_packing.py)."""

import zipfile

import pytest

from espnet_speechclip.bin import pack
from espnet_speechclip.errors import SpeechCLIPError


def test_packs_an_experiment_with_its_card_options(parallel_exp, tmp_path):
    out = tmp_path / "packed" / "model.zip"
    pack.main(
        [
            *(
                "--config",
                str(parallel_exp / "config.yaml"),
                "--model_file",
                str(parallel_exp / "latest.pth"),
            ),
            *(
                "--out",
                str(out),
                "--dataset",
                "flickr8k",
                "--license",
                "mit",
                "--card_text",
                "Made in a test.",
            ),
        ]
    )
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        card = zf.read("README.md").decode()
    assert {"config.yaml", "README.md", "meta.json"} <= names
    assert "license: mit" in card and "flickr8k" in card and "Made in a test." in card


def test_missing_weights_stop_before_writing(parallel_exp, tmp_path):
    out = tmp_path / "model.zip"
    args = ["--config", str(parallel_exp / "config.yaml"), "--model_file", str(tmp_path / "nope.pth")]
    with pytest.raises((FileNotFoundError, SpeechCLIPError), match="nope.pth"):
        pack.main([*args, "--out", str(out)])
    assert not out.exists()
