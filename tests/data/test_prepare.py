"""Shared corpus-preparation rules."""

from __future__ import annotations

from espnet_speechclip.data.prepare import num_samples_16k


def test_num_samples_16k() -> None:
    assert num_samples_16k(1600, 16000) == 1600
    assert num_samples_16k(800, 8000) == 1600
    assert num_samples_16k(441, 44100) == 160
    assert num_samples_16k(3, 22050) == 2  # round, not floor


# ---------------------------------------------------------------------------------------------------------
# SpokenCOCO
