"""The stand-in CLIP trainer of the built-in synth_corpus."""

from __future__ import annotations

import json
import logging

import torch
from helpers.corpora import SYNTH_SIZES as SIZES


def test_synth_clip_smoke(synth_corpus, tmp_path, caplog):
    import open_clip

    from espnet_speechclip.training.synth_clip import eval_json_path, register_synth_clip, train_synth_clip

    out = tmp_path / "clip" / "synth-clip.pt"
    train_synth_clip(
        synth_corpus / "data" / "synth_train",
        out,
        steps=2,
        batch_size=8,
        eval_data_dir=synth_corpus / "data" / "synth_test",
        threads=1,
    )
    saved = torch.load(out, weights_only=True)
    register_synth_clip()
    model = open_clip.create_model("synth-clip", pretrained=str(out))
    loaded = model.state_dict()
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)

    report = json.loads(eval_json_path(out).read_text())
    assert report["n_images"] == SIZES["n_test"] and report["n_captions"] == SIZES["n_test"] * 3
    for direction in ("text_to_image", "image_to_text"):
        r = report[direction]
        assert 0 <= r["R@1"] <= r["R@5"] <= r["R@10"] == 100.0  # 2 images: R@10 is certain

    with caplog.at_level(logging.INFO):
        train_synth_clip(synth_corpus / "data" / "synth_train", out, steps=2, batch_size=8, threads=1)
    assert "skipping" in caplog.text


def test_synth_clip_is_retrained_when_its_data_or_options_change(synth_corpus, tmp_path, caplog):
    """A reseeded corpus (same image names, new pictures) or new options must not reuse old weights."""
    import dataclasses
    import shutil

    from PIL import Image

    from espnet_speechclip.data.datadir import read_datadir, write_datadir
    from espnet_speechclip.training.synth_clip import eval_json_path, train_synth_clip

    # a private copy of the training data whose images this test may change
    utts = read_datadir(synth_corpus / "data" / "synth_train")
    (tmp_path / "img").mkdir()
    copied = []
    for u in utts:
        dst = tmp_path / "img" / f"{u.image_key}.png"
        if not dst.exists():
            shutil.copy(u.image_path, dst)
        copied.append(dataclasses.replace(u, image_path=str(dst)))
    train = write_datadir(tmp_path / "train", copied)
    out, test = tmp_path / "clip" / "synth-clip.pt", synth_corpus / "data" / "synth_test"

    def run(steps=2, eval_dir=test):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            train_synth_clip(train, out, steps=steps, batch_size=8, eval_data_dir=eval_dir, threads=1)
        return "training synth-clip" in caplog.text, json.loads(eval_json_path(out).read_text())

    trained, report = run()
    assert trained and report["steps"] == 2
    weights = out.read_bytes()
    assert run() == (False, report)  # nothing changed: reused, report kept

    trained, report = run(steps=3)
    assert trained and report["steps"] == 3 and out.read_bytes() != weights

    Image.new("RGB", (64, 64), (255, 0, 255)).save(copied[0].image_path)  # reseeded corpus, same names
    trained, reseeded = run(steps=3)
    assert trained and reseeded["made_from"]["weights"] != report["made_from"]["weights"]

    # the report follows its test data's content too
    _, on_train = run(steps=3, eval_dir=train)
    assert (
        on_train["n_images"] == SIZES["n_train"]
        and on_train["made_from"]["eval_data"] != reseeded["made_from"]["eval_data"]
    )


def test_fresh_scenes_get_the_pixels_of_the_per_image_transform():
    """The batched transform of the freshly rendered scenes gives open_clip's val transform exactly,
    and falls back to it for images of another size."""
    import random

    import open_clip
    import torch

    from espnet_speechclip.data.synth.scenes import render, sample_scene
    from espnet_speechclip.training.synth_clip import MODEL_NAME, _pixels_at_size, register_synth_clip

    register_synth_clip()
    preprocess = open_clip.create_model_and_transforms(MODEL_NAME)[2]
    rng = random.Random(3)
    pixels = _pixels_at_size(preprocess, 64, [render(sample_scene(rng), 64) for _ in range(2)])
    assert pixels.__name__ == "pixels"  # the batched one
    for size in (64, 80):
        images = [render(sample_scene(rng), size) for _ in range(5)]
        assert torch.equal(pixels(images), torch.stack([preprocess(im) for im in images])), size
    # a transform of another shape keeps the per-image path
    assert _pixels_at_size(lambda im: im, 64, []).func.__name__ == "_transform"


def test_a_caption_longer_than_the_context_is_refused():
    import open_clip
    import pytest

    from espnet_speechclip.training.synth_clip import MODEL_NAME, _Tokenize, register_synth_clip

    register_synth_clip()
    tok = open_clip.get_tokenizer(MODEL_NAME)
    tokenize = _Tokenize(tok, tok.context_length)
    fits = " ".join(["red"] * (tok.context_length - 2))
    assert tokenize([fits, "a red circle"]).shape == (2, tok.context_length)
    with pytest.raises(ValueError, match="does not fit synth-clip's context of 16 tokens"):
        tokenize([fits + " red"])
