"""The model builder's own part of the config: constructor defaults of the configured classes."""

from espnet_speechclip.config import MISSING
from espnet_speechclip.models.builder import constructor_default, option_value
from espnet_speechclip.models.speech_encoder import S3PRLSpeechEncoder


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
