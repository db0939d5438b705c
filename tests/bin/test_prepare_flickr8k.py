"""The Flickr8k preparation command, on the tiny fixture tree of the library's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data.test_flickr8k import build_flickr8k

from espnet_speechclip.bin.prepare_flickr8k import main


def test_flickr8k_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flickr_root = build_flickr8k(tmp_path / "Flickr8k")
    main(["--root", str(flickr_root), "--out_dir", str(tmp_path / "data"), "--nj", "1"])
    printed = capsys.readouterr().out
    assert "flickr8k_train" in printed and "flickr8k_test" in printed
    assert (tmp_path / "data" / "flickr8k_dev" / "wav.scp").is_file()
