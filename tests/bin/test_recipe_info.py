"""recipe_info: the names and values the recipe's shell reads from Python."""

import shlex

import pytest
from helpers import RECIPE

from espnet_speechclip.bin import recipe_info


def test_demo_command_opens_the_page_on_the_model_with_keywords(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(RECIPE)
    recipe_info.main(["demo-command", "synth", "conf/synth/parallel.yaml conf/synth/cascaded.yaml"])
    line = capsys.readouterr().out.strip()
    assert line == (
        f"cd {RECIPE} && . ./path.sh && python3 -m espnet_speechclip.bin.demo "
        "--model exp/synth_cascaded/packed/model.zip --images dump/raw/synth_test"
    )
    # one config, a tag, other folders; a parallel-only run opens its parallel model
    cmd = recipe_info.demo_command(
        "flickr8k", ["conf/paper/parallel_base.yaml"], "mine", "my exp", "/d", recipe_dir=str(tmp_path)
    )
    words = shlex.split(cmd)
    assert words[:2] == ["cd", str(tmp_path)]
    assert words[words.index("--model") + 1] == "my exp/mine/packed/model.zip"
    assert words[words.index("--images") + 1] == "/d/raw/flickr8k_test"
    cmd = recipe_info.demo_command(
        "flickr8k", ["conf/paper/parallel_base.yaml", "conf/paper/hybrid_base.yaml"]
    )
    assert "--model exp/flickr8k_hybrid_base/packed/model.zip" in cmd
    # the recipe's --python is the interpreter the command runs
    recipe_info.main(["demo-command", "synth", "conf/synth/parallel.yaml", "--python", "/opt/py/bin/python"])
    assert " && /opt/py/bin/python -m espnet_speechclip.bin.demo " in capsys.readouterr().out


def test_download_exp_name_stays_inside_exp(capsys, tmp_path):
    recipe_info.main(["download-exp-name", "org/name@v1"])
    assert capsys.readouterr().out.strip() == "org/name@v1"
    (tmp_path / "model.zip").write_bytes(b"")
    recipe_info.main(["download-exp-name", str(tmp_path / "model.zip")])
    assert capsys.readouterr().out.strip() == "model"
    # a revision that would name a folder outside exp/ is refused before anything is made
    with pytest.raises(SystemExit) as e:
        recipe_info.main(["download-exp-name", "foo/bar@../../../../x"])
    assert e.value.code == 1
    assert "revision '../../../../x' is not a branch, tag or commit name" in capsys.readouterr().err


def test_config_value_reads_a_constructor_default_only_for_class_sections(capsys, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("model: cascaded\nclip_conf: {model_name: x, pretrained: y}\n")
    recipe_info.main(["config-value", str(config), "model"])
    assert capsys.readouterr().out.strip() == "cascaded"
    recipe_info.main(["config-value", str(config), "speech_encoder_conf.upstream"])
    assert capsys.readouterr().out.strip() == "hubert"
    recipe_info.main(["config-value", str(config), "clip_conf.config_file"])
    assert capsys.readouterr().out.strip() == ""
