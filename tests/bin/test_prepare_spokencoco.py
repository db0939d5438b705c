"""The SpokenCOCO preparation command, on the tiny fixture tree of the library's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from data.test_spokencoco import build_spokencoco

from espnet_speechclip.bin.prepare_spokencoco import main


def test_spokencoco_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sc, coco, karpathy = build_spokencoco(tmp_path)
    main(
        [
            "--spokencoco",
            str(sc),
            "--mscoco",
            str(coco),
            "--karpathy",
            str(karpathy),
            "--out_dir",
            str(tmp_path / "data"),
            "--nj",
            "2",
        ]
    )
    assert "spokencoco_test" in capsys.readouterr().out
    assert (tmp_path / "data" / "spokencoco_train" / "utt2num_samples").is_file()
