"""Captions of the spoken-shapes scenes describe their scenes in single CLIP tokens."""

from __future__ import annotations

import json
import random

from helpers.corpora import assert_describes

from espnet_speechclip.data.synth import captions, scenes


def test_random_captions_describe_their_scenes():
    rng = random.Random(0)
    for _ in range(500):
        scene = scenes.sample_scene(rng)
        assert scene == scenes.Scene.from_dict(json.loads(json.dumps(scene.to_dict())))
        for text in captions.captions(scene, rng, 3):
            assert_describes(text, scene.to_dict())
    # Three captions of one image come from three different templates.
    assert len(set(captions.captions(scenes.sample_scene(rng), rng, 3))) == 3


def test_caption_words_are_single_clip_tokens_and_fit_the_context():
    import open_clip

    from espnet_speechclip.training.synth_clip import CONFIG_PATH

    tok = open_clip.SimpleTokenizer()
    for w in captions.VOCABULARY:
        assert len(tok.encode(w)) == 1, f"caption word {w!r} is {tok.encode(w)} in CLIP BPE"
    context = json.loads(CONFIG_PATH.read_text())["text_cfg"]["context_length"]
    rng = random.Random(1)
    longest = 0
    for _ in range(500):
        for text in captions.captions(scenes.sample_scene(rng), rng, 6):
            assert set(text.split()) <= set(captions.VOCABULARY), text
            longest = max(longest, len(tok.encode(text)))
    assert longest + 2 <= context  # start and end tokens
