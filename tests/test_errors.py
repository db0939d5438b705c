"""Input errors reach command-line users as one line; bugs keep their traceback."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from espnet_speechclip.config import read_config
from espnet_speechclip.errors import run_cli, user_message


def test_an_error_raised_by_speechclip_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: read_config("/nope/train.yaml"), prog="prog")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("prog: error: SpeechCLIP config /nope/train.yaml does not exist")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_library_error_or_debug_mode_keeps_the_traceback(monkeypatch):
    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    with pytest.raises(json.JSONDecodeError):
        run_cli(lambda: json.loads("{"))
    monkeypatch.setenv("SPEECHCLIP_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_cli(lambda: read_config("/nope/train.yaml"))
    try:
        read_config("/nope/train.yaml")
    except FileNotFoundError as e:
        assert user_message(e) is None


def test_an_unknown_upstream_is_one_line_from_an_entry_point(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "conf" / "tiny" / "parallel.yaml").read_text().replace("fbank", "hubert_nope"))
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_speechclip.bin.count_params", str(bad)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "unknown s3prl upstream 'hubert_nope'" in proc.stderr and "Traceback" not in proc.stderr
