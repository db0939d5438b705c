"""bin/asr_train: ESPnet's ASR training with the speechclip frontend (run: tests/frontend/)."""

import pytest

from espnet_speechclip.bin import asr_train


def test_help_ends_with_the_speechclip_frontend(capsys):
    with pytest.raises(SystemExit) as e:
        asr_train.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--frontend_conf" in out
    # the epilog keeps its lines (raw), after the options
    assert out.rstrip().endswith(asr_train.FRONTEND_HELP.rstrip())
    assert "--frontend_conf packed_model=exp/<tag>/packed/model.zip" in out
