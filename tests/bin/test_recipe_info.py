"""recipe_info: the names and values the recipe's shell reads from Python."""

import shlex

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
