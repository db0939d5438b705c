"""bin/speechclip_train: --help answers with the task's usage (training itself: tests/training/)."""

import pytest

from espnet_speechclip.bin import speechclip_train


def test_help_starts_with_the_usage(capsys):
    with pytest.raises(SystemExit) as e:
        speechclip_train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr()
    assert out.out.startswith("usage:") and "--clip_conf" in out.out and "--speech_encoder_conf" in out.out
    assert out.err == ""  # no command-line echo before the help
