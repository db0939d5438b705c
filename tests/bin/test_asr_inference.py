"""bin/asr_inference: ESPnet's ASR inference with the speechclip frontend (run: tests/frontend/)."""

import pytest

from espnet_speechclip.bin import asr_inference
from espnet_speechclip.inference.archive import UNPACK_CACHE_NOTE


def test_help_names_the_unpack_cache(capsys):
    with pytest.raises(SystemExit) as e:
        asr_inference.main(["-h"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--asr_train_config" in out
    assert out.rstrip().endswith(UNPACK_CACHE_NOTE.rstrip())
