"""identity: the options trained weights depend on (files by content), and a model's identity by content."""

import shutil

import yaml

from espnet_speechclip.identity import (
    DATA_PATH_KEYS,
    INIT_ONLY_KEYS,
    RUN_SETTINGS,
    model_identity,
    training_options,
)
from espnet_speechclip.provenance import FileHashes


def _config(tmp_path, **extra):
    clip = tmp_path / "clip.pt"
    if not clip.exists():
        clip.write_bytes(b"clip weights")
    config = dict(
        model="parallel",
        clip_conf=dict(model_name="tiny-clip", pretrained=str(clip)),
        optim_conf=dict(lr=1e-4),
        max_epoch=10,
        ngpu=1,
        train_data_path_and_name_and_type=[["dump/train/wav.scp", "speech", "sound"]],
        init_param=["a.pth"],
    )
    return {**config, **extra}


def test_run_settings_and_data_paths_are_not_what_the_weights_depend_on(tmp_path):
    options = training_options(_config(tmp_path))
    assert not set(options) & (RUN_SETTINGS | DATA_PATH_KEYS)
    assert options["optim_conf"] == {"lr": 1e-4} and options["init_param"] == ["a.pth"]
    # what only matters while training starts is no part of what a decode depends on
    config = _config(tmp_path, freeze_param=["x"], ignore_init_mismatch=True)
    assert set(training_options(config)) - set(training_options(config, model_only=True)) == INIT_ONLY_KEYS


def test_local_files_are_identified_by_content_not_path(tmp_path):
    config = _config(tmp_path)
    (tmp_path / "moved").mkdir()
    moved = str(shutil.copy(tmp_path / "clip.pt", tmp_path / "moved" / "clip.pt"))  # a config holds strings
    elsewhere = dict(config, clip_conf=dict(config["clip_conf"], pretrained=moved))
    hashes = FileHashes()
    options = training_options(config, hashes)
    assert options["clip_conf"]["pretrained"].startswith("sha256:")
    assert training_options(elsewhere, hashes) == options
    (tmp_path / "moved" / "clip.pt").write_bytes(b"other weights")
    assert training_options(elsewhere) != options
    # a string that names no file stays as it is (tags, names)
    assert training_options(dict(config, clip_conf=dict(model_name="ViT-B-32", pretrained="openai")))[
        "clip_conf"
    ] == dict(model_name="ViT-B-32", pretrained="openai")


def test_a_model_is_its_weights_and_model_options(tmp_path):
    config_file, weights = tmp_path / "config.yaml", tmp_path / "w.pth"
    config_file.write_text(yaml.safe_dump(_config(tmp_path)))
    weights.write_bytes(b"weights")
    identity = model_identity(config_file, weights)
    assert set(identity) == {"weights", "options"}
    # another experiment folder, more epochs, another init: the same trained model
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.yaml").write_text(yaml.safe_dump(_config(tmp_path, max_epoch=99) | {"init_param": []}))
    shutil.copy(weights, other / "w.pth")
    assert model_identity(other / "config.yaml", other / "w.pth") == identity
    # other weights or another model option: another model
    (other / "w.pth").write_bytes(b"weights2")
    assert model_identity(other / "config.yaml", other / "w.pth")["weights"] != identity["weights"]
    (other / "config.yaml").write_text(yaml.safe_dump(_config(tmp_path, model_conf=dict(temperature=0.1))))
    assert model_identity(other / "config.yaml", weights)["options"] != identity["options"]
