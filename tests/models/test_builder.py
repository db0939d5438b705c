"""models/builder: a config in, a model with its frozen towers out; clip_conf checked first; the constructor
defaults of the configured classes."""

import pytest
import yaml
from helpers import TINY

from espnet_speechclip.config import MISSING
from espnet_speechclip.models.builder import build_model, check_clip_conf, constructor_default, option_value
from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder


def tiny_config(name: str, clip_conf: dict) -> dict:
    config = yaml.safe_load((TINY / f"{name}.yaml").read_text())
    config["clip_conf"] = dict(clip_conf)
    return config


def test_check_clip_conf_names_what_is_wrong():
    conf = dict(model_name="ViT-B-32", pretrained="openai")
    assert check_clip_conf(conf) == conf and check_clip_conf(conf) is not conf
    with pytest.raises(ValueError, match=r"unknown keys \['cache_dir'\]; allowed"):
        check_clip_conf(dict(conf, cache_dir="/x"))
    with pytest.raises(ValueError, match="clip_conf.model_name is required"):
        check_clip_conf(dict(pretrained="openai"))
    with pytest.raises(ValueError, match="clip_conf.pretrained is required .* rebuilt from the config"):
        check_clip_conf(dict(model_name="ViT-B-32"))
    assert check_clip_conf(dict(model_name="ViT-B-32"), need_weights=False) == dict(model_name="ViT-B-32")


@pytest.mark.parametrize("name, branches", [("parallel", ["parallel"]), ("hybrid", ["parallel", "cascaded"])])
def test_each_config_builds_its_branches_on_the_frozen_towers(tiny_clip, name, branches):
    model = build_model(tiny_config(name, tiny_clip))
    assert model.branches == branches
    assert model.image_encoder is None  # the tiny configs train on cached image embeddings
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    assert any(p.requires_grad for p in model.speech_encoder.parameters())


def test_pixels_build_the_image_tower_and_random_clip_needs_no_weights(tiny_clip):
    config = tiny_config("parallel", tiny_clip)
    config["image_input"] = "pixels"
    assert build_model(config).image_encoder is not None
    assert build_model(config, image_tower=False).image_encoder is None
    # without CLIP weights: no image tower unless asked for, and no pretrained entry needed
    del config["clip_conf"]["pretrained"]
    assert build_model(config, clip_weights=False).image_encoder is None
    assert build_model(config, clip_weights=False, image_tower=True).image_encoder is not None
    with pytest.raises(ValueError, match="clip_conf.pretrained is required"):
        build_model(config)


def test_an_unknown_model_name_is_refused(tiny_clip):
    config = tiny_config("parallel", tiny_clip)
    config["model"] = "triple"
    with pytest.raises(ValueError, match="triple"):
        build_model(config)


def test_an_unknown_upstream_is_said_before_clip_loads(tmp_path):
    """CLIP is built first; the upstream's name is checked before it (ViT-L takes seconds and gigabytes):
    the weights file below does not exist, and the error is about the upstream."""
    config = tiny_config(
        "parallel", dict(model_name="ViT-L-14-quickgelu", pretrained=str(tmp_path / "no.pt"))
    )
    config["speech_encoder_conf"]["upstream"] = "hubert_nope"
    with pytest.raises(ValueError, match="unknown s3prl upstream 'hubert_nope'"):
        build_model(config)


def test_option_value_reads_constructor_defaults():
    config = {"model": "cascaded", "speech_encoder_conf": {"upstream": None}}
    assert option_value(config, "speech_encoder_conf.upstream") == "hubert"
    assert (
        option_value({"speech_encoder_conf": {"upstream": "fbank"}}, "speech_encoder_conf.upstream")
        == "fbank"
    )
    assert option_value(config, "model") == "cascaded"
    assert option_value(config, "speech_encoder_conf.no_such_key", "d") == "d"
    assert option_value(config, "model_conf.cascaded_conf.x", "d") == "d"  # deeper keys: no class default


def test_constructor_default_of_each_section():
    import inspect

    expected = inspect.signature(S3PRLSpeechEncoder.__init__).parameters["upstream"].default
    assert constructor_default({"model": "parallel"}, "speech_encoder_conf", "upstream") == expected
    assert constructor_default({"model": "parallel"}, "clip_conf", "model_name") is MISSING
