"""data/synth/speech: the synth corpus's speakers, word times from espeak-ng's events, silence trimming."""

import numpy as np
import pytest

from espnet_speechclip.data.synth import speech
from espnet_speechclip.data.synth.speech import (
    WordTime,
    make_speakers,
    speech_bounds,
    trim_silence,
    word_times,
)

WORD, PHONEME = 1, 7  # espeak_EVENT_TYPE values


def test_speakers_are_split_deterministically_and_distinctly():
    train, held = make_speakers(0)
    assert (train, held) == make_speakers(0) and make_speakers(1) != (train, held)
    assert len(held) == speech.N_HELD_OUT_SPEAKERS and len(train) + len(held) == 60
    names = [s.name for s in train + held]
    assert len(set(names)) == 60 and all(" " not in n and "+" in n for n in names)
    for s in train + held:
        assert speech.RATE_RANGE[0] < s.rate < speech.RATE_RANGE[1]
        assert speech.PITCH_RANGE[0] < s.pitch < speech.PITCH_RANGE[1]


def test_each_word_spans_its_phonemes_up_to_the_next_phoneme():
    text = "red square"
    events = [
        (WORD, 1, 3, 100, ""),
        (PHONEME, 1, 3, 100, "r"),
        (PHONEME, 1, 3, 200, "E"),
        (PHONEME, 1, 3, 300, "d"),
        (WORD, 5, 6, 400, ""),
        (PHONEME, 5, 6, 450, "s"),
        (PHONEME, 5, 6, 600, "w"),
        (PHONEME, 0, 0, 900, "_:"),  # the pause after it ends the last word
        (2, 0, 0, 950, ""),  # another event type: ignored
    ]
    assert word_times(text, events, 1000, 1000) == [
        WordTime("red", 0.1, 0.45),
        WordTime("square", 0.45, 0.9),
    ]


def test_a_joined_function_word_takes_the_last_phonemes_of_its_group():
    # espeak speaks "on the" as one word: one word event, the phonemes of both under its position
    text = "on the left"
    events = [
        (WORD, 1, 2, 0, ""),
        (PHONEME, 1, 2, 0, "0"),
        (PHONEME, 1, 2, 100, "n"),
        (PHONEME, 1, 2, 200, "D"),
        (PHONEME, 1, 2, 300, "@"),
        (WORD, 8, 4, 400, ""),
        (PHONEME, 8, 4, 400, "l"),
    ]
    out = word_times(text, events, 800, 1000)
    assert [w.word for w in out] == ["on", "the", "left"]
    assert (out[0].start, out[0].end) == (0.0, 0.2)  # "the" took two phonemes
    assert (out[1].start, out[1].end) == (0.2, 0.4)
    assert (out[2].start, out[2].end) == (0.4, 0.8)  # to the end of the audio


def test_a_group_without_phonemes_is_shared_equally_and_times_are_clipped():
    events = [(WORD, 1, 1, 0, ""), (WORD, 5, 1, 600, "")]
    out = word_times("a b c", events, 500, 1000)
    assert [(w.word, w.start, w.end) for w in out] == [
        ("a", 0.0, 0.3),
        ("b", 0.3, pytest.approx(0.5)),  # clipped to the audio's 500 samples
        ("c", 0.5, 0.5),
    ]


def test_speech_bounds_cut_quiet_edges_with_a_margin():
    rate = 1000
    wav = np.zeros(1000)
    wav[300:600] = np.sin(np.arange(300))
    start, end = speech_bounds(wav, rate, margin_s=0.02)
    assert (start, end) == (280, 620)
    assert np.array_equal(trim_silence(wav, rate, margin_s=0.02), wav[280:620])
    assert speech_bounds(np.zeros(1000), rate) == (0, 1000)  # silence: nothing to cut
    assert speech_bounds(np.ones(5), rate) == (0, 5)  # shorter than a frame
    assert speech_bounds(wav, rate, margin_s=1.0) == (0, 1000)  # the margin stops at the ends


def test_moved_word_times_follow_the_trim():
    words = [WordTime("a", 0.1, 0.3), WordTime("b", 0.3, 0.9)]
    assert speech._moved(words, 0.2, 0.5) == [
        WordTime("a", 0.0, pytest.approx(0.1)),
        WordTime("b", pytest.approx(0.1), 0.5),
    ]


def test_a_missing_espeak_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_loader(name, *args, **kwargs):
        if name == "espeakng_loader":
            raise ImportError("no module named espeakng_loader")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_loader)
    with pytest.raises(RuntimeError) as e:
        speech.Espeak()
    assert str(e.value) == speech._MISSING_ESPEAK
