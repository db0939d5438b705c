"""The config reader and its task defaults; reading a value imports neither ESPnet nor the models."""

import subprocess
import sys

import pytest
from helpers import ROOT

from espnet_speechclip.config import ConfigError, config_value, dotted_get, dotted_set, read_config


def test_config_value_is_the_file_s_value_or_the_task_default():
    config = read_config({"model": "cascaded", "clip_conf": None, "model_conf": {"k": None}})
    assert config_value(config, "model") == "cascaded"
    assert config_value(config, "clip_conf.model_name") == "ViT-B-32-quickgelu"  # the task table's
    assert config_value(config, "image_input") == "embedding"
    # constructor defaults are the builder's (option_value): here only the caller's default
    assert config_value(config, "speech_encoder_conf.upstream", "none") == "none"
    assert config_value(config, "model_conf.k", 3) == 3  # an explicit None means "the default"


def test_dotted_get_and_set():
    config = {"a": {"b": {"c": 1}}}
    dotted_set(config, "a.b.c", 2)
    assert dotted_get(config, "a.b.c") == 2 and dotted_get(config, "a.x.c", "d") == "d"


def test_not_a_config(tmp_path):
    (tmp_path / "c.yaml").write_text("- a list\n")
    with pytest.raises(ConfigError, match="not a SpeechCLIP config"):
        read_config(tmp_path / "c.yaml")


def test_reading_a_config_value_loads_no_model_code():
    code = (
        "import sys; from espnet_speechclip.config import config_value; config_value({}, 'model'); "
        "heavy = ('espnet2', 'torch', 'espnet_speechclip.models'); "
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_synth_hybrid_is_the_cascaded_config_with_the_parallel_branch():
    """conf/synth/hybrid.yaml stays the built-in corpus' cascaded settings plus its parallel branch."""
    import yaml

    cascaded, parallel, hybrid = (
        yaml.safe_load((ROOT / "conf" / "synth" / f"{name}.yaml").read_text())
        for name in ("cascaded", "parallel", "hybrid")
    )
    assert hybrid["model"] == "hybrid"
    assert hybrid["model_conf"].pop("parallel_conf") == parallel["model_conf"]["parallel_conf"]
    assert hybrid["model_conf"] == cascaded["model_conf"]
    assert {k: v for k, v in hybrid.items() if k != "model"} == {
        k: v for k, v in cascaded.items() if k != "model"
    }
