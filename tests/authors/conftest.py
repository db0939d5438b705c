"""Shared fixtures of the checkpoint-import tests: the tiny towers and two imported SpeechCLIP models."""

from __future__ import annotations

import pytest
from authors_reference import load_towers, make_checkpoint, run_import


@pytest.fixture(scope="session")
def towers(tiny_clip, tiny_hubert):
    """The tiny HuBERT (s3prl converted file) and tiny CLIP weights standing in for the public ones."""
    return load_towers(tiny_clip, tiny_hubert)


@pytest.fixture(scope="session")
def imported(towers, tmp_path_factory):
    """Base parallel (fixed temperature, 256 eye buffers) and Large cascaded (learnable temperature,
    layer-normed hidden states, 1024 eye buffers), imported and loaded back with Speech2Image."""
    from espnet_speechclip.inference import Speech2Image

    out = {}
    for name, kind, large, eye in (
        ("base_parallel", "parallel", False, 256),
        ("large_cascaded", "cascaded", True, 1024),
    ):
        root = tmp_path_factory.mktemp(name)
        ckpt, state, vocab = make_checkpoint(towers, root / "authors.ckpt", kind, large, eye=eye, seed=1)
        exp = run_import(towers, ckpt, root / "exp")
        model = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth").model
        out[name] = dict(exp=exp, state=state, vocab=vocab, model=model, large=large, ckpt=ckpt)
    return out
