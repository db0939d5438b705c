"""End to end through the real entry points: train, resume, infer, on a tiny generated corpus (CPU)."""

import json
import re

import numpy as np
import pytest
import torch
from helpers import ROOT

from espnet_speechclip.bin import speechclip_inference, speechclip_train
from espnet_speechclip.data.datadir import read_kv
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

    # transcripts: validation also scores zero-shot speech->text; CIF models with caption-length unit
    # targets train on them (the other models leave them unused)
    return training_data_args(corpus["train"], corpus["dev"]) + [
        "--valid_data_path_and_name_and_type",
        f"{corpus['dev']}/text,text,text",
        "--train_data_path_and_name_and_type",
        f"{corpus['train']}/text,text,text",
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


BRANCHES = {
    "hybrid": ["parallel", "cascaded"],
    "hybrid_plus": ["parallel", "cascaded"],
    "cascaded_plus": ["cascaded"],
}


@pytest.mark.parametrize("model", ["parallel", "cascaded", "hybrid", "cascaded_plus", "hybrid_plus"])
def test_train_resume_and_infer(corpus, tiny_clip, tmp_path, model):
    out = tmp_path / "exp"
    train(corpus, tiny_clip, model, out, "--max_epoch", "4")
    stats = reporter_stats(out)
    assert sorted(stats) == [1, 2, 3, 4]
    assert stats[4]["train"]["loss"] < stats[1]["train"]["loss"]
    for b in BRANCHES.get(model, [model]):
        for key in ("s2i_r1", "s2i_r10", "i2s_r1", "mean_r10"):
            assert f"{b}_{key}" in stats[4]["valid"]
    if model.endswith("_plus"):
        # the CIF quantity loss and unit counts, in training and on the dev set (caption-length targets
        # for hybrid_plus, read from the transcripts; frame-count targets for cascaded_plus)
        for mode in ("train", "valid"):
            for key in ("loss_quantity", "units", "unit_error"):
                assert key in stats[4][mode], (mode, key)
        # the first epoch's 4 forwards scale the alphas to the targets (scaling_steps: 4), later ones not
        assert stats[1]["train"]["unit_error"] == 0.0

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

    if model == "parallel":
        return
    lines = (dec / "keywords").read_text().splitlines()
    ids, spans = np.load(dec / "keyword_ids.npy"), np.load(dec / "keyword_spans.npy")
    assert spans.shape == ids.shape + (2,)
    durations = [int(v) / 16000 for v in read_kv(corpus["dev"] / "utt2num_samples").values()]
    if model.endswith("_plus"):
        # a variable number of keywords: -1 / NaN after each utterance's own, a pooled hit rate
        n = np.load(dec / "keyword_lengths.npy")
        assert n.shape == (12,) and n.min() >= 1 and ids.shape[1] == n.max()
        assert [len(line.split()) - 1 for line in lines] == n.tolist()
        mask = np.arange(ids.shape[1])[None, :] < n[:, None]
        assert (ids[~mask] == -1).all() and (ids[mask] >= 0).all() and np.isnan(spans[~mask]).all()
        assert set(scores["cascaded"]["keyword_hit_rate"]) == {
            "pooled",
            "utterance_avg",
            "keywords_per_utterance",
        }
        # CIF units tile the utterance: each starts where the one before it ended
        for row, k in zip(spans, n):
            np.testing.assert_allclose(row[1:k, 0], row[: k - 1, 1])
    else:
        assert len(lines) == 12 and all(len(line.split()) == 1 + 4 for line in lines)
        assert set(scores["cascaded"]["keyword_hit_rate"]) == {"kw1", "kw2", "kw3", "kw4", "avg"}
    valid = ~np.isnan(spans[..., 0])
    assert (spans[valid][:, 0] <= spans[valid][:, 1]).all() and (spans[valid] >= 0).all()
    assert spans[valid].max() <= max(durations) + 1e-9
    assert "keyword_timing" not in scores["cascaded"]  # the tiny corpus has no word alignment


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
