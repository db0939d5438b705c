"""Importing the authors' SpeechCLIP checkpoints (espnet_speechclip.authors.importer).

The real files cannot be downloaded here, so each test writes a checkpoint in the authors' exact layout
(tests/authors_layout.py) and the imported model must reproduce the authors' forward, re-written in
tests/authors_reference.py from their math with plain tensor operations.
"""

from __future__ import annotations

import hashlib
import json
from typing import Dict

import pytest
import torch
from authors_layout import EOT, FF, SOT
from authors_reference import (
    authors_cascaded,
    authors_features,
    authors_frames,
    authors_parallel,
    clip_heads,
    make_checkpoint,
    run_import,
    waveforms,
)


@torch.no_grad()
def test_parallel_base_equals_authors_math(imported):
    case = imported["base_parallel"]
    model, sd = case["model"], case["state"]
    speech, lengths = waveforms(0)
    ours = model.encode_speech(speech, lengths).parallel
    # Same frames as ours (see test_known_mismatch_frame_lengths for the authors' framing).
    hidden, frames = model.speech_encoder.upstream(speech, lengths)
    theirs = authors_parallel(sd, authors_features(sd, hidden, normalize=False), frames)
    assert ours.shape == theirs.shape == (3, 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_cascaded_large_equals_authors_math(imported, towers):
    case = imported["large_cascaded"]
    model, sd, vocab = case["model"], case["state"], case["vocab"]
    for seed in (0, 1):
        speech, lengths = waveforms(seed, (15000, 8800, 11111, 16000))
        out = model.encode_speech(speech, lengths)
        hidden, frames = model.speech_encoder.upstream(speech, lengths)
        emb, ids = authors_cascaded(
            sd, authors_features(sd, hidden, normalize=True), frames, vocab, clip_heads(towers["clip_conf"])
        )
        assert torch.equal(out.keyword_ids, ids), (out.keyword_ids, ids)
        torch.testing.assert_close(out.cascaded, emb, atol=1e-5, rtol=0)
        assert not set(ids.flatten().tolist()) & {0, SOT, EOT}


@torch.no_grad()
def test_hybrid_maps_both_branches(towers, tmp_path):
    """Both objective weights > 0: our hybrid model, each branch equal to the authors' math."""
    from espnet_speechclip.inference import Speech2Image

    ckpt, sd, vocab = make_checkpoint(towers, tmp_path / "authors.ckpt", "hybrid", False, seed=4)
    exp = run_import(towers, ckpt, tmp_path / "exp")
    s2i = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth")
    model, config = s2i.model, s2i.config
    assert (
        config["model"] == "hybrid"
        and config["model_conf"]["parallel_weight"] == config["model_conf"]["cascaded_weight"] == 1
    )
    speech, lengths = waveforms(4)
    out = model.encode_speech(speech, lengths)
    hidden, frames = model.speech_encoder.upstream(speech, lengths)
    feats = authors_features(sd, hidden, normalize=False)
    torch.testing.assert_close(out.parallel, authors_parallel(sd, feats, frames), atol=1e-5, rtol=0)
    emb, ids = authors_cascaded(sd, feats, frames, vocab, clip_heads(towers["clip_conf"]))
    assert torch.equal(out.keyword_ids, ids)
    torch.testing.assert_close(out.cascaded, emb, atol=1e-5, rtol=0)


def test_written_experiment(imported):
    """config.yaml in our format, the temperature mapped, the eye buffers ignored, import.json complete."""
    import yaml

    base, large = imported["base_parallel"], imported["large_cascaded"]
    conf = yaml.safe_load((base["exp"] / "config.yaml").read_text())
    assert conf["model"] == "parallel" and conf["speech_encoder_conf"]["upstream"] == "hubert_local"
    assert conf["speech_encoder_conf"]["layer_norm"] is False
    assert conf["model_conf"]["parallel_conf"] == dict(num_layers=1, nhead=8, dim_feedforward=FF, dropout=0.1)
    assert conf["model_conf"]["learnable_temperature"] is False
    assert float(base["model"].loss.scale()) == pytest.approx(1 / 0.07)
    # the authors' precision (trainer.precision 16) and their raw last HuBERT layer
    assert conf["use_amp"] is True and conf["amp_dtype"] == "float16"
    assert conf["speech_encoder_conf"]["raw_last_layer"] is True
    conf = yaml.safe_load((large["exp"] / "config.yaml").read_text())
    assert conf["model"] == "cascaded" and conf["speech_encoder_conf"]["layer_norm"] is True
    assert conf["model_conf"]["cascaded_conf"]["vq_temperature"] == 0.1
    assert conf["model_conf"]["learnable_temperature"] is True
    # the authors' criterion.temperature is log(1/T), as our log_scale: the same logit scale
    assert float(large["model"].loss.log_scale.detach()) == float(large["state"]["criterion.temperature"])
    for case, eye in ((base, 256), (large, 1024)):
        record = json.loads((case["exp"] / "import.json").read_text())
        ignored = {e["key"]: e.get("shape") for e in record["ignored"]}
        assert ignored["criterion.eye_mat"] == [eye, eye] and ignored["criterion.eye_mat_fl"] == [eye, eye]
        assert "criterion.neg_eye_mat" in ignored
        assert record["source"]["sha256"] == hashlib.sha256(case["ckpt"].read_bytes()).hexdigest()
        assert record["frozen"]["clip"]["checked"] > 0
        assert record["frozen"]["hubert"]["checked"] == len(
            [k for k in case["state"] if k.startswith("audio_encoder.encoder.")]
        )
        # the stored config was read through the stand-ins, not guessed
        assert (
            record["architecture"]["sources"]["layer_norm"] == "config audio_encoder.normalize_hiddenstates"
        )
        assert record["authors_config"]["audio_encoder"]["type"] == "FairseqHubert"


@torch.no_grad()
def test_frame_lengths_equal_the_authors_per_utterance(imported):
    """Each utterance alone, and the longest of a batch, attend exactly the authors' frames."""
    case = imported["base_parallel"]
    model, sd = case["model"], case["state"]
    speech, lengths = waveforms(0)
    batched = model.encode_speech(speech, lengths).parallel
    expert = model.speech_encoder.upstream.expert
    for i, n in enumerate(lengths.tolist()):
        hidden = list(expert([speech[i, :n]])["hidden_states"])  # HuBERT's own frames, no extension
        frames = torch.tensor([authors_frames(n, hidden[0].shape[1])])
        theirs = authors_parallel(sd, authors_features(sd, hidden, normalize=False), frames)
        alone = model.encode_speech(speech[i : i + 1, :n], lengths[i : i + 1]).parallel
        torch.testing.assert_close(alone, theirs, atol=1e-5, rtol=0)
        if n == int(lengths.max()):  # the longest needs no padding: the same in the batch
            torch.testing.assert_close(batched[i : i + 1], theirs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_large_weights_the_raw_last_layer(towers, tmp_path):
    """A tiny HuBERT with HuBERT Large's pre-norm layout (layer_norm_first, a trained final LayerNorm): the
    imported model weights the raw output of the last layer, as the authors' hooked forward does."""
    from helpers.stand_ins import make_pre_norm_hubert

    from espnet_speechclip.inference import Speech2Image

    path = make_pre_norm_hubert(tmp_path / "tiny_hubert_large.pt")
    hubert = torch.load(path, map_location="cpu", weights_only=True)["model_weight"]
    large = dict(towers, hubert=hubert, hubert_path=path)
    ckpt, sd, _ = make_checkpoint(large, tmp_path / "authors.ckpt", "parallel", True)
    exp = run_import(large, ckpt, tmp_path / "exp")
    s2i = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth")
    assert s2i.config["speech_encoder_conf"]["raw_last_layer"] is True
    model = s2i.model
    speech, lengths = waveforms(2)
    expert = model.speech_encoder.upstream.expert
    layers = expert.model.encoder.layers
    # The authors' hidden states: s3prl's (inputs of every layer) but the raw output of the last layer.
    raw: Dict[str, torch.Tensor] = {}

    def keep_raw_output(module, inputs, output) -> None:  # returns None: the output is left as it is
        raw["x"] = output[0].transpose(0, 1)

    for i, n in enumerate(lengths.tolist()):
        handle = layers[-1].register_forward_hook(keep_raw_output)
        hidden = list(expert([speech[i, :n]])["hidden_states"])
        handle.remove()
        last = raw["x"][:, : hidden[-1].shape[1]]
        assert not torch.allclose(last, hidden[-1], atol=1e-3)  # s3prl's last state is LayerNorm'd
        frames = torch.tensor([authors_frames(n, hidden[0].shape[1])])
        theirs = authors_parallel(sd, authors_features(sd, hidden[:-1] + [last], normalize=True), frames)
        ours = model.encode_speech(speech[i : i + 1, :n], lengths[i : i + 1]).parallel
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
