"""The SpeechCLIP model: its six variants (one table, ESPnet's class choices) and the typed output of
``encode_speech`` / ``forward_speech``."""

import inspect

import pytest
import torch
from helpers import TINY

from espnet_speechclip.models.outputs import BRANCHES, SpeechEmbeddings, UnitCount

TEMPERATURE = ["temperature", "learnable_temperature", "max_scale"]
# What each --model takes in model_conf (the constructor arguments the variants had one by one).
OPTIONS = {
    "parallel": ["parallel_conf"] + TEMPERATURE,
    "cascaded": ["cascaded_conf"] + TEMPERATURE,
    "hybrid": ["parallel_conf", "cascaded_conf", "parallel_weight", "cascaded_weight"] + TEMPERATURE,
    "cascaded_plus": ["cascaded_conf", "quantity_weight"] + TEMPERATURE,
    "hybrid_plus": ["cascaded_conf", "parallel_weight", "cascaded_weight", "quantity_weight"] + TEMPERATURE,
    "hybrid_shared": ["cascaded_conf", "parallel_weight", "cascaded_weight"] + TEMPERATURE,
}
MODEL_BRANCHES = {"parallel": ["parallel"], "cascaded": ["cascaded"], "cascaded_plus": ["cascaded"]}


def tiny_model(tiny_clip, name):
    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import build_model

    config = read_config(TINY / f"{name}.yaml")
    config["clip_conf"] = dict(tiny_clip)
    torch.manual_seed(0)
    return build_model(config)


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_variant_takes_its_options_with_the_papers_defaults(name):
    """ESPnet reads a model's options (--print_config, the model_conf check) off its signature."""
    from espnet2.utils.get_default_kwargs import get_default_kwargs

    from espnet_speechclip.models.builder import model_choices

    model_class = model_choices.get_class(name)
    params = list(inspect.signature(model_class).parameters)
    assert params == ["speech_encoder", "text_encoder", "image_encoder"] + OPTIONS[name]
    defaults = get_default_kwargs(model_class)
    assert defaults["temperature"] == 0.07 and defaults["max_scale"] == 100.0
    assert defaults["learnable_temperature"] is False
    if "quantity_weight" in defaults:
        assert defaults["quantity_weight"] == 0.25
    for key in ("parallel_weight", "cascaded_weight"):
        assert defaults.get(key, 1.0) == 1.0


def test_unknown_options_and_the_bare_class_are_refused(tiny_clip):
    from espnet_speechclip.models.builder import model_choices
    from espnet_speechclip.models.speechclip import SpeechCLIP

    model = tiny_model(tiny_clip, "parallel")
    towers = (model.speech_encoder, model.text_encoder, None)
    with pytest.raises(TypeError, match="cascaded_conf"):
        model_choices.get_class("parallel")(*towers, cascaded_conf={})
    with pytest.raises(TypeError, match="variant"):
        SpeechCLIP(*towers)


@pytest.mark.parametrize("name", ["parallel", "hybrid", "cascaded_plus"])
def test_encode_speech_gives_typed_embeddings_and_no_losses(tiny_clip, name):
    model = tiny_model(tiny_clip, name).eval()
    speech, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 5000])
    with torch.no_grad():
        out = model.encode_speech(speech, lengths)
        timed = model.encode_speech(speech, lengths, keyword_attention=True)
    assert isinstance(out, SpeechEmbeddings)
    branches = MODEL_BRANCHES.get(name, list(BRANCHES))
    assert model.branches == branches == list(out.branches())
    for b in branches:
        emb = out.branch(b)
        assert emb.shape == (3, model.text_encoder.embed_dim)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    for b in set(BRANCHES) - set(branches):
        with pytest.raises(KeyError, match=b):
            out.branch(b)
    if "cascaded" not in branches:
        assert out.keyword_ids is None and timed.keyword_attention is None
        assert set(out.per_utterance()) == {"parallel"}
        return
    k = out.keyword_ids.shape[1]
    assert out.keyword_scores.shape == (3, k) and out.keyword_neighbour_ids.shape == (3, k, 5)
    assert out.keyword_attention is None and out.frame_lengths is None
    frames = timed.frame_lengths
    assert timed.keyword_attention.shape == (3, k, int(frames.max()))
    cif = name == "cascaded_plus"
    assert (out.keyword_lengths is not None) == (out.keyword_frames is not None) == cif
    if cif:
        assert out.keyword_frames.shape == (3, k, 2) and int(out.keyword_lengths.max()) == k
    # per utterance: the fixed-width fields only, never anything frame-level
    assert set(timed.per_utterance()) == {
        *branches,
        "keyword_ids",
        "keyword_scores",
        "keyword_neighbour_ids",
        *(["keyword_lengths"] if cif else []),
    }
    # the same numbers with or without the attention
    for b in branches:
        torch.testing.assert_close(out.branch(b), timed.branch(b), rtol=0, atol=0)


def test_forward_speech_gives_the_unit_count_on_the_training_path_only(tiny_clip):
    model = tiny_model(tiny_clip, "cascaded_plus").train()
    speech, lengths = torch.randn(3, 8000), torch.tensor([8000, 6000, 5000])
    out, count = model.forward_speech(speech, lengths)
    assert isinstance(count, UnitCount) and count.loss.dim() == 0
    assert torch.equal(count.units, out.keyword_lengths) and count.targets.shape == (3,)
    assert out.keyword_neighbour_ids is None  # eval mode only
    parallel = tiny_model(tiny_clip, "parallel").train()
    assert parallel.forward_speech(speech, lengths)[1] is None
