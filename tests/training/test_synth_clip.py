"""The stand-in CLIP trainer of the built-in synth_corpus."""

from __future__ import annotations

import json
import logging

import torch
from helpers import SYNTH_SIZES as SIZES


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
