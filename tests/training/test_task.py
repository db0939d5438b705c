"""End to end through the real entry points: train, resume, infer, on a tiny generated corpus (CPU)."""

import json
import re
import shutil

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
    from helpers.corpora import make_tiny_corpus

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
    from helpers.stand_ins import training_data_args

    # transcripts: validation also scores zero-shot speech->text; CIF models with caption-length unit
    # targets train on them (the other models leave them unused)
    return training_data_args(corpus["train"], corpus["dev"]) + [
        "--valid_data_path_and_name_and_type",
        f"{corpus['dev']}/text,text,text",
        "--train_data_path_and_name_and_type",
        f"{corpus['train']}/text,text,text",
    ]


def train_cmd(corpus, tiny_clip, model, out, *extra):
    """speechclip_train's options for ``conf/tiny/<model>.yaml`` on the tiny corpus and CLIP."""
    return [
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


def train(corpus, tiny_clip, model, out, *extra):
    speechclip_train.main(train_cmd(corpus, tiny_clip, model, out, *extra))


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
        assert set(scores["cascaded"]["keyword_hit_rate_top5_neighbours"]) == {
            "pooled",
            "utterance_avg",
            "keywords_per_utterance",
        }
        near = np.load(dec / "keyword_neighbour_ids.npy")
        assert near.shape == ids.shape + (5,) and (near[~mask] == -1).all() and (near[mask] >= 0).all()
        # every CIF unit has a span (snapped onto the signal's segments), a stretch of its utterance
        own = spans[mask]
        assert np.isfinite(own).all() and (own[:, 0] >= 0).all() and (own[:, 0] < own[:, 1]).all()
    else:
        assert "keyword_hit_rate_top5_neighbours" in scores["cascaded"]
        assert np.load(dec / "keyword_neighbour_ids.npy").shape == (12, 4, 5)
        assert len(lines) == 12 and all(len(line.split()) == 1 + 4 for line in lines)
        assert set(scores["cascaded"]["keyword_hit_rate"]) == {"kw1", "kw2", "kw3", "kw4", "avg"}
    valid = ~np.isnan(spans[..., 0])
    assert (spans[valid][:, 0] <= spans[valid][:, 1]).all() and (spans[valid] >= 0).all()
    assert spans[valid].max() <= max(durations) + 1e-6  # float32 seconds
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


# ------------------------------------------------------------------------- the paper's training setup
PAPER_CONFIGS = sorted((ROOT / "conf" / "paper").glob("*.yaml"))


@pytest.fixture(scope="module")
def paper_args():
    """The paper configs as the task's parser reads them (config values over the task defaults)."""
    from espnet_speechclip.training.task import SpeechCLIPTask

    parser = SpeechCLIPTask.get_parser()
    return {p.name: parser.parse_args(["--config", str(p)]) for p in PAPER_CONFIGS}


def test_paper_configs_train_on_plain_random_batches(paper_args):
    """The authors draw plain random batches; length-grouped batches (a speed option) change the
    negatives and the cascaded BatchNorm statistics, so they are opt-in."""
    from espnet_speechclip.config import TASK_DEFAULTS

    assert TASK_DEFAULTS["length_group_batches"] == 1
    # SpeechCLIP's 5 and SpeechCLIP+'s 6 (Base Flickr8k, Large Flickr8k and SpokenCOCO, cascaded+ / hybrid+)
    assert len(paper_args) == 11
    assert sum("_plus_" in name for name in paper_args) == 6
    for name, args in paper_args.items():
        assert args.length_group_batches == 1, name


def test_paper_configs_use_fp16_everywhere(paper_args):
    """The paper trained with fp16 AMP; ESPnet would pick bf16 on GPUs that have it."""
    for name, args in paper_args.items():
        assert args.use_amp is True and args.amp_dtype == "float16", name


def test_paper_configs_hold_the_final_learning_rate(paper_args):
    """The authors' schedule: linear warm-up to 1e-4 at 5k steps, linear decay to 1e-8 at 50k steps, and
    1e-8 after (ESPnet's piecewiselinearwarmuplr returns to ~base_lr * sqrt(50k/step) past its last
    point: more epochs, or a resume with a larger max_epoch, would restart near the peak)."""
    from espnet2.tasks.abs_task import scheduler_classes

    for name, args in paper_args.items():
        optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=args.optim_conf["lr"])
        scheduler = scheduler_classes[args.scheduler](optimizer, **args.scheduler_conf)
        for step, lr in (
            (5000, 1e-4),
            (27500, 0.5 * (1e-4 + 1e-8)),
            (50000, 1e-8),
            (50001, 1e-8),
            (10**6, 1e-8),
        ):
            scheduler.last_epoch = (
                step - 1
            )  # ESPnet steps the scheduler once per batch; step n = last_epoch + 1
            assert scheduler.get_lr()[0] == pytest.approx(lr, rel=1e-9), (name, step)


def test_resume_with_more_epochs_holds_the_final_rate(corpus, tiny_clip, tmp_path):
    """A finished schedule stays finished: resuming with a larger max_epoch trains at the final rate."""
    out = tmp_path / "exp"
    schedule = [
        "--scheduler",
        "piecewiselinearholdlr",
        "--scheduler_conf",
        "warmup_steps_list=[0,2,8]",
        "--scheduler_conf",
        "warmup_lr_list=[0.0,0.003,0.00001]",
    ]
    train(corpus, tiny_clip, "parallel", out, "--max_epoch", "2", *schedule)  # 2 x 4 steps: the schedule
    train(corpus, tiny_clip, "parallel", out, "--max_epoch", "4", "--resume", "true", *schedule)
    stats = reporter_stats(out)
    assert sorted(stats) == [1, 2, 3, 4]
    assert stats[1]["train"]["optim0_lr0"] > 1e-3
    for epoch in (3, 4):
        assert stats[epoch]["train"]["optim0_lr0"] == pytest.approx(1e-5, rel=1e-9)


def _same_weights(a, b):
    wa = torch.load(a, map_location="cpu", weights_only=True)
    wb = torch.load(b, map_location="cpu", weights_only=True)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].numpy().tobytes() == wb[k].numpy().tobytes(), k


def test_kill_9_then_resume_equals_an_uninterrupted_run(corpus, tiny_clip, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    epochs = ["--max_epoch", "3", "--resume", "true"]
    whole = tmp_path / "whole"
    speechclip_train.main(train_cmd(corpus, tiny_clip, "parallel", whole, *epochs))

    # 1. killed at a random point after the first epoch's files appear
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "espnet_speechclip.bin.speechclip_train"]
    cmd += train_cmd(corpus, tiny_clip, "parallel", killed, *epochs)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed / "1epoch.pth").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    assert not (killed / "3epoch.pth").exists()
    speechclip_train.main(train_cmd(corpus, tiny_clip, "parallel", killed, *epochs))

    # 2. killed in the worst window: checkpoint.pth of epoch 3 saved, its weights file and links not yet
    late = tmp_path / "late"
    shutil.copytree(whole, late, symlinks=True)
    for name in ("3epoch.pth", "latest.pth", "valid.mean_r10.best.pth"):
        (late / name).unlink(missing_ok=True)
    speechclip_train.main(train_cmd(corpus, tiny_clip, "parallel", late, *epochs))

    def learned(out):  # every statistic but the timings
        return {
            e: {m: {k: v for k, v in d.items() if "time" not in k} for m, d in phases.items()}
            for e, phases in reporter_stats(out).items()
        }

    for run in (killed, late):
        assert learned(run) == learned(whole)
        _same_weights(run / "3epoch.pth", whole / "3epoch.pth")
        assert os.readlink(run / "valid.mean_r10.best.pth") == os.readlink(whole / "valid.mean_r10.best.pth")
        assert os.readlink(run / "latest.pth") == "3epoch.pth"


def test_a_damaged_checkpoint_is_named(corpus, tiny_clip, tmp_path):
    from espnet_speechclip.provenance import ProvenanceError

    out = tmp_path / "exp"
    speechclip_train.main(train_cmd(corpus, tiny_clip, "parallel", out, "--max_epoch", "1"))
    data = (out / "checkpoint.pth").read_bytes()
    (out / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ProvenanceError, match=r"checkpoint\.pth cannot be read"):
        speechclip_train.main(
            train_cmd(corpus, tiny_clip, "parallel", out, "--max_epoch", "2", "--resume", "true")
        )


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
            "projection_hidden",
            "projection_dropout",
            "final_norm",
        }
        assert conf["vq_temperature"] == 0.1 and conf["codebook"] == "full"
        if "--config" in argv:  # the file's keys and the command line's win; the rest are defaults
            assert conf["num_keywords"] == 4 and conf["nhead"] == 2
        else:
            assert conf["num_keywords"] == 8 and conf["nhead"] == 1
        assert "codebook_ids" not in conf and "text_encoder" not in conf


@pytest.mark.parametrize(
    "model, branches", [("cascaded_plus", ["cascaded_conf"]), ("hybrid_plus", ["cascaded_conf"])]
)
def test_print_config_shows_the_cif_branch_options(model, branches, monkeypatch):
    """SpeechCLIP+ models: the CIF branch's options and, nested, its downsampler's; a config's partial
    cif_conf keeps the defaults of the keys it does not set."""
    import io
    import sys

    import yaml

    from espnet_speechclip.models.cif import CIFDownsampler
    from espnet_speechclip.training.task import SpeechCLIPTask

    def shown(*argv):
        monkeypatch.setattr(sys, "argv", ["speechclip_train.py", "--print_config", *argv])
        out = io.StringIO()
        SpeechCLIPTask.print_config(file=out)
        return yaml.safe_load(out.getvalue())["model_conf"]

    model_conf = shown("--model", model)
    assert [k for k in model_conf if k.endswith("_conf")] == branches
    conf = model_conf["cascaded_conf"]
    assert conf["unit_target"] == "frames" and conf["codebook"] == "full" and "parallel_dim" not in conf
    assert conf["cif_conf"] == dict(
        kernel_size=3,
        num_layers=1,
        dropout=0.5,
        threshold=1.0,
        tail_threshold=0.5,
        frames_per_unit=20.0,
        scaling_steps=5000,
        max_units=75,
        at_least_one=True,
    )
    CIFDownsampler(16, **conf["cif_conf"])  # every option shown is one the downsampler takes
    partial = shown("--model", model, "--model_conf", "cascaded_conf.cif_conf.scaling_steps=10")
    assert partial["cascaded_conf"]["cif_conf"] == dict(conf["cif_conf"], scaling_steps=10)
    assert model_conf["quantity_weight"] == 0.25
