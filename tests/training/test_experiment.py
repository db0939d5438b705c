"""An experiment folder's config is the config its weights were trained with."""

import numpy as np
import pytest
import soundfile as sf
from helpers import ROOT
from helpers.corpora import make_tiny_corpus
from helpers.stand_ins import training_data_args

from espnet_speechclip.bin import speechclip_train
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.provenance import ProvenanceError
from espnet_speechclip.training.data_check import DataCheckError
from espnet_speechclip.training.image_cache import cache_image_embeddings, write_utt_emb_scp


@pytest.fixture
def data(tmp_path, tiny_clip):
    d = make_tiny_corpus(tmp_path / "corpus", 8, 2, seed=0, split="train")
    cache = cache_image_embeddings(d / "img.scp", tiny_clip, tmp_path / "image_emb", progress=False)
    write_utt_emb_scp(d / "utt2img", cache / "img_emb.scp", d / "image_emb.scp")
    return d


def train(data, tiny_clip, out, *extra):
    speechclip_train.main(
        [
            "--config",
            str(ROOT / "conf" / "tiny" / "parallel.yaml"),
            "--output_dir",
            str(out),
            "--ngpu",
            "0",
            "--max_epoch",
            "1",
            "--clip_conf",
            f"pretrained={tiny_clip['pretrained']}",
            "--clip_conf",
            f"config_file={tiny_clip['config_file']}",
            *training_data_args(data),
            *extra,
        ]
    )


def test_a_trained_experiment_refuses_other_settings_or_data(data, tiny_clip, tmp_path):
    out = tmp_path / "exp"
    train(data, tiny_clip, out)
    config, weights = (out / "config.yaml").read_bytes(), (out / "1epoch.pth").read_bytes()

    with pytest.raises(ProvenanceError) as err:
        train(data, tiny_clip, out, "--optim_conf", "lr=0.5", "--resume", "true")
    message = str(err.value)
    assert "optim_conf.lr: 0.003 -> 0.5" in message and "start a new experiment" in message
    assert "--output_dir" in message and "--tag" in message
    assert (out / "config.yaml").read_bytes() == config and (out / "1epoch.pth").read_bytes() == weights

    # run settings are not training options: more epochs, logging, workers continue the experiment
    train(data, tiny_clip, out, "--max_epoch", "2", "--resume", "true", "--log_level", "WARNING")
    assert (out / "2epoch.pth").is_file()

    # the same lists with other audio (a regenerated corpus under the same names) are other data
    wav = read_kv(data / "wav.scp")["spk0-trainimg000_0"]
    samples, rate = sf.read(wav)
    sf.write(wav, samples[::-1].copy(), rate, subtype="PCM_16")
    with pytest.raises(ProvenanceError, match=r"data\.train\.speech\.content"):
        train(data, tiny_clip, out, "--max_epoch", "3", "--resume", "true")


def test_a_folder_without_trained_weights_takes_new_settings(data, tiny_clip, tmp_path):
    out = tmp_path / "exp"
    out.mkdir()
    (out / "config.yaml").write_text("stale: true\n")  # e.g. a run stopped before its first epoch
    train(data, tiny_clip, out, "--optim_conf", "lr=0.01")
    assert "lr: 0.01" in (out / "config.yaml").read_text()


@pytest.mark.parametrize("bad", ["nan", "8k", "stereo"])
def test_bad_training_audio_is_named_before_any_step(data, tiny_clip, tmp_path, bad):
    wav = read_kv(data / "wav.scp")["spk1-trainimg003_1"]
    if bad == "nan":
        sf.write(wav, np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    elif bad == "8k":
        sf.write(wav, np.zeros(8000, np.float32), 8000)
    else:
        sf.write(wav, np.zeros((8000, 2), np.float32), 16000)
    with pytest.raises(DataCheckError, match=rf"utterance spk1-trainimg003_1 \({wav}\)"):
        train(data, tiny_clip, tmp_path / "exp")
    assert not list((tmp_path / "exp").glob("*.pth"))


def test_records_of_older_versions_keep_their_embedding_lists_while_the_files_are_unchanged():
    from espnet_speechclip.training.experiment import _upgraded

    old = {"options": {}, "data": {"train.image_emb": {"type": "npy", "list": "l", "content": "bytes"}}}
    now = {"options": {}, "data": {"train.image_emb": {"type": "npy", "list": "l", "embeddings": "made"}}}
    assert _upgraded(old, now, {"train.image_emb": "bytes"}) == now
    assert _upgraded(old, now, {"train.image_emb": "other bytes"}) == old
