"""bin/hub_download: the recipe's --download_model, a model laid out as an experiment folder."""

import json
import os

import pytest

from espnet_speechclip.bin import hub_download


def test_a_packed_model_becomes_an_experiment_folder(sc, tmp_path):
    exp = tmp_path / "exp" / "ns" / "name"
    hub_download.main(["--model", str(sc["archive"]), "--exp_dir", str(exp), "--model_name", "latest.pth"])
    weights = exp / "latest.pth"
    assert weights.is_symlink() and os.path.isabs(os.readlink(weights))
    record = json.loads((exp / "download.json").read_text())
    assert record["source"] == str(sc["archive"]) and record["model_file"] == os.readlink(weights)
    assert (exp / "config.yaml").is_file() and (exp / "README.md").is_file()
    # again: the link is replaced, not refused
    hub_download.main(["--model", str(sc["archive"]), "--exp_dir", str(exp), "--model_name", "latest.pth"])
    assert weights.is_symlink()


def test_a_trained_checkpoint_is_never_overwritten(sc, tmp_path, capsys):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "valid.mean_r10.best.pth").write_bytes(b"trained here")
    with pytest.raises(SystemExit) as e:
        hub_download.main(["--model", str(sc["archive"]), "--exp_dir", str(exp)])
    assert e.value.code == 1
    assert "is a trained checkpoint, not a downloaded one: use another exp folder" in capsys.readouterr().err
    assert (exp / "valid.mean_r10.best.pth").read_bytes() == b"trained here"


def test_a_missing_model_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        hub_download.main(["--model", str(tmp_path / "nope.zip"), "--exp_dir", str(tmp_path / "exp")])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("usage:") is False and "error:" in err and "nope.zip" in err
