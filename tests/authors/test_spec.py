"""authors/spec: each derived value says where it came from; stored settings we cannot express are
refused naming them; the key tables have the shapes of the authors' modules."""

import pytest
import torch

from espnet_speechclip.authors.spec import (
    QUANTIZER_REQUIREMENTS,
    Architecture,
    attention_and_norm_keys,
    attention_settings,
    check_requirements,
    config_value,
    encoder_layer_shapes,
    keyword_norm_and_quantizer,
    require_key,
    vq_temperature,
)
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError

BASE = "model_settings.cascaded_branch."


def _config(**branch):
    return {"model_settings": {"cascaded_branch": branch}}


def test_a_value_comes_from_the_config_else_the_shapes_else_the_paper_and_says_which():
    arch = Architecture(model="parallel")
    config = _config(transformer_args={"nhead": 8})
    assert config_value(arch, "a", config, BASE + "transformer_args.nhead", 1, 8, "w") == 8
    assert config_value(arch, "b", config, BASE + "transformer_args.d_model", 0, 768, "w.shape") == 768
    assert config_value(arch, "c", config, BASE + "transformer_args.dropout", 0.1) == 0.1
    assert arch.sources == {
        "a": f"config {BASE}transformer_args.nhead",
        "b": "shape of w.shape",
        "c": "paper default (not in the stored config)",
    }
    with pytest.raises(AuthorsCheckpointError, match="says .*nhead = 8, but w implies 4: .*inconsistent"):
        config_value(arch, "a", config, BASE + "transformer_args.nhead", 1, 4, "w")


def test_a_stored_setting_we_cannot_express_is_refused_by_name():
    check_requirements(_config(vq={"type": "SimpleVectorQuantizer"}), QUANTIZER_REQUIREMENTS, BASE)
    check_requirements(_config(), QUANTIZER_REQUIREMENTS, BASE)  # absent: the authors' default
    with pytest.raises(
        AuthorsCheckpointError, match=r"vq.args.use_gumbel = True; .*Gumbel \(supported: False\)"
    ):
        check_requirements(_config(vq={"args": {"use_gumbel": True}}), QUANTIZER_REQUIREMENTS, BASE)


def test_vq_temperature_the_stored_buffer_wins_and_a_schedule_is_refused():
    arch = Architecture(model="cascaded")
    assert vq_temperature(arch, {}, _config()) == 0.1  # the authors' default, fixed=0.1
    state = {"cascaded_branch.vector_quantizer.curr_temp": torch.tensor([0.25])}
    assert vq_temperature(arch, state, _config(vq={"args": {"temp": "learnable=0.1"}})) == 0.25
    assert any("learned or changed" in n for n in arch.notes) and any("learnable" in n for n in arch.notes)
    with pytest.raises(AuthorsCheckpointError, match="scheduled VQ temperature"):
        vq_temperature(arch, {}, _config(vq={"args": {"temp": "(2, 0.5, 0.999995)"}}))


def test_attention_settings_are_checked_against_the_speech_width():
    arch = Architecture(model="cascaded", speech_width=768)
    assert attention_settings(arch, _config(transformer_args={"nhead": 8}), "cascaded") == (8, 0.1)
    with pytest.raises(AuthorsCheckpointError, match="width 1024 differs from HuBERT's 768"):
        attention_settings(arch, _config(transformer_args={"d_model": 1024}), "cascaded")
    with pytest.raises(AuthorsCheckpointError, match="width 768 is not divisible by nhead 5"):
        attention_settings(arch, _config(transformer_args={"nhead": 5}), "cascaded")


def test_key_tables_have_the_shapes_of_the_modules_they_name():
    layer = torch.nn.TransformerEncoderLayer(16, 2, dim_feedforward=40)
    assert {k: list(v.shape) for k, v in layer.state_dict().items()} == dict(encoder_layer_shapes(16, 40))
    keys = attention_and_norm_keys("theirs.", "ours.", 16)
    assert keys["theirs.multihead_attn_layer.in_proj_weight"] == (
        "ours.attn.in_proj_weight",
        [48, 16],
        "copy",
    )
    assert keys["theirs.attentionBlock_Norm.bias"] == ("ours.norm.bias", [16], "copy")
    # K keywords: one BatchNorm over K * D_t features, stored dimension-major; CIF units share one
    slots = keyword_norm_and_quantizer(8, 512)["cascaded_branch.bn_layer.bn_layer.weight"]
    assert slots[1] == [8 * 512] and slots[2].startswith("permute")
    assert keyword_norm_and_quantizer(None, 512)["cascaded_branch.bn_layer.bn_layer.weight"][1:] == (
        [512],
        "copy (one BatchNorm1d over the CLIP width, shared by every unit)",
    )
    with pytest.raises(AuthorsCheckpointError, match="missing key x.weight \\(the projection\\)"):
        require_key({}, "x.weight", "the projection")
