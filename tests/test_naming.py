"""The recipe's naming rules, read back from an experiment's config."""

import pytest

from espnet_speechclip.config import ConfigError
from espnet_speechclip.naming import experiment_data_dir, set_name


def _config(speech_list):
    return {
        "train_data_path_and_name_and_type": [
            ["dump/raw/x/utt2img", "image_id", "text"],
            [speech_list, "speech", "sound_16k"],
        ]
    }


@pytest.mark.parametrize("corpus", ["synth", "flickr8k", "spoken_coco"])
def test_experiment_data_dir_follows_set_name(corpus):
    config = _config(f"dumpdir/raw/{set_name(corpus, 'train')}/wav.scp")
    for split in ("train", "dev", "test"):
        assert str(experiment_data_dir(config, split)) == f"dumpdir/raw/{set_name(corpus, split)}"


def test_experiment_data_dir_of_a_config_not_from_the_recipe():
    with pytest.raises(ConfigError, match="not trained by the recipe"):
        experiment_data_dir(_config("data/my_speech/wav.scp"), "test")
    with pytest.raises(ConfigError, match="not trained by the recipe"):
        experiment_data_dir({}, "test")
