"""End to end through the real entry points: train, resume, infer, on a tiny generated corpus (CPU)."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import ROOT

from espnet_speechclip.bin import speechclip_inference, speechclip_train
from espnet_speechclip.training.image_cache import cache_image_embeddings, write_utt_emb_scp

CONF = ROOT / "conf" / "tiny"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, tiny_clip):
    from helpers import make_tiny_corpus

    root = tmp_path_factory.mktemp("corpus")
    dirs = {
        "train": make_tiny_corpus(root, 16, 2, seed=0, split="train"),
        "dev": make_tiny_corpus(root, 6, 2, seed=1, split="dev"),
    }
    for d in dirs.values():
        cache = cache_image_embeddings(d / "img.scp", tiny_clip, root / "image_emb", progress=False)
        write_utt_emb_scp(d / "utt2img", cache / "img_emb.scp", d / "image_emb.scp")
    dirs["img_emb_scp"] = cache / "img_emb.scp"
    return dirs


def data_args(corpus):
    from helpers import training_data_args

    # transcripts on the dev set: validation also scores zero-shot speech->text
    return training_data_args(corpus["train"], corpus["dev"]) + [
        "--valid_data_path_and_name_and_type",
        f"{corpus['dev']}/text,text,text",
    ]


def train(corpus, tiny_clip, model, out, *extra):
    cmd = [
        "--config",
        str(CONF / f"{model}.yaml"),
        "--output_dir",
        str(out),
        "--ngpu",
        "0",
        "--clip_conf",
        f"pretrained={tiny_clip['pretrained']}",
        "--clip_conf",
        f"config_file={tiny_clip['config_file']}",
        *data_args(corpus),
        *extra,
    ]
    speechclip_train.main(cmd)


def reporter_stats(out):
    states = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    return states["reporter"]["stats"]


@pytest.mark.parametrize("model", ["parallel", "cascaded", "hybrid"])
def test_train_resume_and_infer(corpus, tiny_clip, tmp_path, model):
    out = tmp_path / "exp"
    train(corpus, tiny_clip, model, out, "--max_epoch", "4")
    stats = reporter_stats(out)
    assert sorted(stats) == [1, 2, 3, 4]
    assert stats[4]["train"]["loss"] < stats[1]["train"]["loss"]
    for b in ["parallel", "cascaded"] if model == "hybrid" else [model]:
        for key in ("s2i_r1", "s2i_r10", "i2s_r1", "mean_r10"):
            assert f"{b}_{key}" in stats[4]["valid"]

    # checkpoints hold the trainable weights only; strict loading still checks all of them
    weights = torch.load(out / "4epoch.pth", map_location="cpu", weights_only=True)
    assert not [k for k in weights if k.startswith(("speech_encoder.upstream.", "text_encoder."))]
    assert "speech_encoder.layer_sum.weights" in weights

    # resume: a second run continues from epoch 5 and does not retrain epochs 1-4. A sentinel in the
    # saved history proves it: retraining from scratch would recompute (and overwrite) it.
    states = torch.load(out / "checkpoint.pth", map_location="cpu", weights_only=False)
    states["reporter"]["stats"][1]["train"]["loss"] = 123.0
    torch.save(states, out / "checkpoint.pth")
    train(corpus, tiny_clip, model, out, "--max_epoch", "5", "--resume", "true")
    stats = reporter_stats(out)
    assert sorted(stats) == [1, 2, 3, 4, 5]
    assert stats[1]["train"]["loss"] == 123.0

    # the inference entry reproduces the validation recall of the same weights
    dec = tmp_path / "decode"
    speechclip_inference.main(
        [
            "--config",
            str(out / "config.yaml"),
            "--model_file",
            str(out / "5epoch.pth"),
            "--data_dir",
            str(corpus["dev"]),
            "--output_dir",
            str(dec),
            "--image_emb_scp",
            str(corpus["img_emb_scp"]),
        ]
    )
    scores = json.loads((dec / "scores.json").read_text())
    for b, res in scores.items():
        for k in (1, 5, 10):
            assert res["speech_to_image"][f"R@{k}"] == pytest.approx(stats[5]["valid"][f"{b}_s2i_r{k}"])
            assert res["image_to_speech"][f"R@{k}"] == pytest.approx(stats[5]["valid"][f"{b}_i2s_r{k}"])
            assert res["speech_to_text"][f"R@{k}"] == pytest.approx(stats[5]["valid"][f"{b}_s2t_r{k}"])
    # the same in two parallel jobs and a merge, as the recipe's --inference_nj 2 runs it
    split = tmp_path / "decode_split"
    common = [
        "--config",
        str(out / "config.yaml"),
        "--model_file",
        str(out / "5epoch.pth"),
        "--data_dir",
        str(corpus["dev"]),
        "--output_dir",
        str(split),
        "--image_emb_scp",
        str(corpus["img_emb_scp"]),
        "--num_splits",
        "2",
    ]
    for j in ("1", "2"):
        speechclip_inference.main(common + ["--split", j])
    speechclip_inference.main(common + ["--merge"])
    assert json.loads((split / "scores.json").read_text()) == scores
    for f in dec.glob("*.npy"):
        np.testing.assert_allclose(np.load(split / f.name), np.load(f), atol=1e-5)
    for f in ("utt_list", "image_list", "keywords"):
        if (dec / f).is_file():
            assert (split / f).read_text() == (dec / f).read_text()

    if model != "parallel":
        assert "keyword_hit_rate" in scores["cascaded"]
        lines = (dec / "keywords").read_text().splitlines()
        assert len(lines) == 12 and all(len(line.split()) == 1 + 4 for line in lines)


def test_missing_image_ids_fail_before_training(corpus, tiny_clip, tmp_path):
    args = [
        "--config",
        str(CONF / "parallel.yaml"),
        "--output_dir",
        str(tmp_path / "x"),
        "--ngpu",
        "0",
        "--clip_conf",
        f"pretrained={tiny_clip['pretrained']}",
        "--clip_conf",
        f"config_file={tiny_clip['config_file']}",
    ]
    d = corpus["train"]
    data = [
        "--train_data_path_and_name_and_type",
        f"{d}/wav.scp,speech,sound_16k",
        "--train_data_path_and_name_and_type",
        f"{d}/image_emb.scp,image_emb,npy",
        "--train_shape_file",
        f"{d}/utt2num_samples",
        "--valid_data_path_and_name_and_type",
        f"{d}/wav.scp,speech,sound_16k",
        "--valid_data_path_and_name_and_type",
        f"{d}/image_emb.scp,image_emb,npy",
        "--valid_shape_file",
        f"{d}/utt2num_samples",
    ]
    with pytest.raises(RuntimeError, match="image_id"):
        speechclip_train.main(args + data)
    assert not list((tmp_path / "x").glob("*.pth"))


def test_short_audio_fails_before_training_naming_the_utterance(corpus, tiny_clip, tmp_path):
    shape = tmp_path / "utt2num_samples"
    lines = (corpus["train"] / "utt2num_samples").read_text().splitlines()
    first = lines[0].split()[0]
    shape.write_text("\n".join([f"{first} 120"] + lines[1:]) + "\n")
    args = data_args(corpus)
    args[args.index(f"{corpus['train']}/utt2num_samples")] = str(shape)
    with pytest.raises(ValueError, match=re.escape(first)):
        speechclip_train.main(
            [
                "--config",
                str(CONF / "parallel.yaml"),
                "--output_dir",
                str(tmp_path / "x"),
                "--ngpu",
                "0",
                "--clip_conf",
                f"pretrained={tiny_clip['pretrained']}",
                "--clip_conf",
                f"config_file={tiny_clip['config_file']}",
                *args,
            ]
        )


@pytest.mark.parametrize(
    "override,error,match",
    [
        (
            ["--speech_encoder_conf", "upstream=hubert_nope"],
            ValueError,
            "unknown s3prl upstream 'hubert_nope'",
        ),
        (
            [
                "--speech_encoder_conf",
                "upstream=hubert_local",
                "--speech_encoder_conf",
                "path_or_url=/nope/h.pt",
            ],
            FileNotFoundError,
            "/nope/h.pt",
        ),
        (
            ["--clip_conf", "model_name=ViT-Q-99", "--clip_conf", "config_file=null"],
            ValueError,
            "unknown CLIP model 'ViT-Q-99'",
        ),
        (["--clip_conf", "pretrained=null"], ValueError, "clip_conf.pretrained is required"),
    ],
)
def test_bad_configs_fail_before_any_step(corpus, tiny_clip, tmp_path, override, error, match):
    cmd = [
        "--config",
        str(CONF / "parallel.yaml"),
        "--output_dir",
        str(tmp_path / "x"),
        "--ngpu",
        "0",
        "--clip_conf",
        f"pretrained={tiny_clip['pretrained']}",
        "--clip_conf",
        f"config_file={tiny_clip['config_file']}",
        *data_args(corpus),
        *override,
    ]
    with pytest.raises(error, match=match):
        speechclip_train.main(cmd)


def test_codebook_not_matching_clip_vocabulary(corpus, tiny_clip, tmp_path):
    bad = tmp_path / "codebook.txt"
    bad.write_text("736 blue\n")
    with pytest.raises(ValueError, match="another vocabulary"):
        train(corpus, tiny_clip, "cascaded", tmp_path / "x", "--model_conf", f"cascaded_conf.codebook={bad}")


@pytest.mark.parametrize(
    "argv, branches",
    [
        (["--model", "parallel"], ["parallel_conf"]),
        (["--model", "cascaded"], ["cascaded_conf"]),
        (["--model", "hybrid"], ["parallel_conf", "cascaded_conf"]),
        (
            ["--config", str(CONF / "cascaded.yaml"), "--model_conf", "cascaded_conf.nhead=2"],
            ["cascaded_conf"],
        ),
    ],
)
def test_print_config_shows_the_branch_options_of_each_model(argv, branches, monkeypatch):
    """ESPnet reads model_conf's defaults off the model class, where a branch conf is None: the task
    shows the branch's options with their defaults instead, under what the config sets."""
    import io
    import sys

    import yaml

    from espnet_speechclip.models.parallel import ParallelBranch
    from espnet_speechclip.training.task import SpeechCLIPTask

    monkeypatch.setattr(sys, "argv", ["speechclip_train.py", "--print_config", *argv])
    out = io.StringIO()
    SpeechCLIPTask.print_config(file=out)
    model_conf = yaml.safe_load(out.getvalue())["model_conf"]
    assert [k for k in model_conf if k.endswith("_conf")] == branches
    if "parallel_conf" in branches:
        assert model_conf["parallel_conf"] == dict(num_layers=1, nhead=8, dim_feedforward=3072, dropout=0.1)
        assert ParallelBranch(16, 8, **model_conf["parallel_conf"]).layers[0].self_attn.num_heads == 8
    if "cascaded_conf" in branches:
        conf = model_conf["cascaded_conf"]
        assert set(conf) == {
            "num_keywords",
            "num_layers",
            "nhead",
            "dim_feedforward",
            "dropout",
            "vq_temperature",
            "codebook",
        }
        assert conf["vq_temperature"] == 0.1 and conf["codebook"] == "full"
        if "--config" in argv:  # the file's keys and the command line's win; the rest are defaults
            assert conf["num_keywords"] == 4 and conf["nhead"] == 2
        else:
            assert conf["num_keywords"] == 8 and conf["nhead"] == 1
        assert "codebook_ids" not in conf and "text_encoder" not in conf
