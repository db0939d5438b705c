"""Speech2Image's inputs: each bad one named before any model runs."""

import numpy as np
import pytest
import torch

from espnet_speechclip.data.media import MediaError
from espnet_speechclip.inference.inputs import is_one_speech, load_speech, load_speech_inputs


def test_one_or_many():
    assert is_one_speech("a.wav") and is_one_speech(np.zeros(3)) and is_one_speech((np.zeros(3), 8000))
    assert not is_one_speech(["a.wav", "b.wav"]) and not is_one_speech(("a.wav", "b.wav"))


def test_waveforms_are_checked_and_resampled():
    wav = load_speech((np.zeros(8000, np.float32) + 0.1, 8000), "u1")
    assert wav.dtype == np.float32 and len(wav) == 16000
    assert len(load_speech(torch.zeros(400), "u2")) == 400
    with pytest.raises(MediaError, match="^u3 is empty"):
        load_speech(np.zeros(0), "u3")
    with pytest.raises(MediaError, match="^u4 contains NaN"):
        load_speech(np.array([0.0, np.nan]), "u4")
    with pytest.raises(ValueError, match="^u5: expected a mono waveform"):
        load_speech(np.zeros((2, 100)), "u5")
    with pytest.raises(ValueError, match="^u6: sample rate must be positive"):
        load_speech((np.zeros(10), 0), "u6")
    with pytest.raises(TypeError, match="^u7: expected a file path"):
        load_speech(3.5, "u7")


def test_a_list_is_labelled_by_position_or_name():
    with pytest.raises(MediaError, match="^speech input #1 is empty"):
        load_speech_inputs([np.zeros(10), np.zeros(0)], None)
    with pytest.raises(ValueError, match="1 names for 2 utterances"):
        load_speech_inputs([np.zeros(10), np.zeros(10)], ["a"])
