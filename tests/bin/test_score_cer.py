"""The CER scoring entry point on Kaldi-style text files."""

import json

import pytest

from espnet_speechclip.bin import score_cer


def test_score_cer_prints_and_writes_the_rates(tmp_path, capsys):
    (tmp_path / "text").write_text("u1 a red star\nu2 a blue cross\n")
    (tmp_path / "hyp").write_text("u1 a red star\nu2 a blu cross\n")
    out = score_cer.main(
        ["--ref", str(tmp_path / "text"), "--hyp", str(tmp_path / "hyp"), "--json", str(tmp_path / "s.json")]
    )
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("CER 4.55 % (1 errors / 22 reference chars")
    assert printed[1].startswith("WER 16.67 % (1 errors / 6 reference words")
    assert json.loads((tmp_path / "s.json").read_text()) == out
    assert out["char"]["deletions"] == 1


def test_score_cer_names_the_bad_file(tmp_path, capsys):
    (tmp_path / "text").write_text("u1 a red star\n")
    (tmp_path / "hyp").write_text("u7 a red star\n")
    with pytest.raises(SystemExit):
        score_cer.main(["--ref", str(tmp_path / "text"), "--hyp", str(tmp_path / "nope")])
    assert "--hyp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        score_cer.main(["--ref", str(tmp_path / "text"), "--hyp", str(tmp_path / "hyp")])
    err = capsys.readouterr().err
    assert "no reference" in err and "hyp" in err
