"""bin/format_audio: recipe stage 2 from the command line (the formatting: tests/data/test_format.py)."""

import pytest
from helpers.corpora import make_tiny_corpus

from espnet_speechclip.bin import format_audio
from espnet_speechclip.data.datadir import read_kv


def test_formats_a_data_dir_and_reports_its_counts(tmp_path):
    data = make_tiny_corpus(tmp_path, n_images=1, captions=2)
    out = tmp_path / "raw"
    args = ["--data_dir", str(data), "--out_dir", str(out), "--audio_dir", str(tmp_path / "audio")]
    counts = format_audio.main(args)
    assert isinstance(counts, dict) and counts
    assert read_kv(out / "text") == read_kv(data / "text")
    assert format_audio.main(args) != {}  # a rerun reports too


def test_a_bad_job_count_is_refused(tmp_path):
    with pytest.raises(SystemExit, match="--nj must be >= 1, got 0"):
        format_audio.main(["--data_dir", "d", "--out_dir", "o", "--audio_dir", "a", "--nj", "0"])
    with pytest.raises(SystemExit):
        format_audio.main(["--out_dir", "o", "--audio_dir", "a"])  # --data_dir is required
