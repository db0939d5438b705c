"""An authors' released checkpoint evaluated without training, through the entry points the recipe runs
(``--pretrained_model <ckpt> --skip_train true``): prepare Flickr8k, format the audio, import, cache the
image embeddings of the imported config's CLIP, infer dev and test, make RESULTS.md, pack."""

import json
from typing import List, Tuple

import pytest
import torch
from authors_layout import authors_config, authors_state_dict, reduced_vocabulary, save_authors_checkpoint
from authors_reference import (
    _exploit,
    authors_cascaded,
    authors_features,
    clip_heads,
    load_towers,
    make_checkpoint,
    waveforms,
)
from helpers.corpora import make_flickr8k_tree

from espnet_speechclip.bin import (
    cache_images,
    format_audio,
    import_authors_ckpt,
    make_results,
    pack,
    speechclip_inference,
)
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.flickr8k import prepare_flickr8k
from espnet_speechclip.errors import run_cli

RELEASED_NAME = "epoch_58-step_6902-val_recall_mean_1_7.7700.ckpt"  # Base Flickr8k cascaded


def infer_dev_and_test(exp: str, capsys) -> List[str]:
    """Recipe stage 3 with the IMPORTED config's CLIP, then stage 6 on dev and test; returns the model's
    --config / --model_file options."""
    sets = ["--data_dir", "dump/raw/flickr8k_dev", "--data_dir", "dump/raw/flickr8k_test"]
    cache_images.main(["--config", f"{exp}/config.yaml", "--cache_root", "dump/image_emb", *sets])
    capsys.readouterr()
    cache_images.main(["--config", f"{exp}/config.yaml", "--cache_root", "dump/image_emb", "--print_dir"])
    emb = capsys.readouterr().out.strip()
    model = ["--config", f"{exp}/config.yaml", "--model_file", f"{exp}/valid.mean_r10.best.pth"]
    for s in ("flickr8k_dev", "flickr8k_test"):
        speechclip_inference.main(
            [*model, "--data_dir", f"dump/raw/{s}", "--image_emb_scp", f"{emb}/img_emb.scp",
             "--output_dir", f"{exp}/decode_{s}"]
        )  # fmt: skip
    return model


def test_released_checkpoint_is_evaluated_without_training(
    tiny_clip, tiny_hubert, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the recipe's layout: data/, dump/, exp/ in the working directory
    # the authors' checkpoint, as released (file name included), around the tiny towers
    hubert = torch.load(tiny_hubert, map_location="cpu", weights_only=True)["model_weight"]
    clip = torch.load(tiny_clip["pretrained"], map_location="cpu", weights_only=True)
    state = authors_state_dict("cascaded", False, hubert, clip, reduced_vocabulary(0), eye=256, seed=0)
    config = authors_config("cascaded", False, hubert["encoder.layers.0.fc2.weight"].shape[0])
    (tmp_path / "slt_ckpts").mkdir()
    ckpt = save_authors_checkpoint(tmp_path / "slt_ckpts" / RELEASED_NAME, state, config)

    # stages 1-2: Flickr8k in its official layout -> data dirs -> 16 kHz dump
    prepare_flickr8k(make_flickr8k_tree(tmp_path / "Flickr8k"), "data")
    for s in ("flickr8k_dev", "flickr8k_test"):
        format_audio.main(
            ["--data_dir", f"data/{s}", "--out_dir", f"dump/raw/{s}", "--audio_dir", f"dump/audio/{s}"]
        )
    assert not [t for t in read_kv("dump/raw/flickr8k_test/text").values() if t.endswith(".")]

    # the import, in place of training
    exp = "exp/authors_" + RELEASED_NAME[: -len(".ckpt")]
    import_authors_ckpt.main(
        [
            "--ckpt", str(ckpt), "--out_dir", exp, "--upstream_path", str(tiny_hubert),
            "--clip_pretrained", tiny_clip["pretrained"], "--clip_model_name", tiny_clip["model_name"],
            "--clip_config_file", tiny_clip["config_file"],
        ]
    )  # fmt: skip

    # stage 3 with the IMPORTED config's CLIP, then stages 6-8 unchanged
    model = infer_dev_and_test(exp, capsys)
    make_results.main(
        ["--exp_dir", exp, "--test_set", "flickr8k_test", "--dev_set", "flickr8k_dev",
         "--model_file", f"{exp}/valid.mean_r10.best.pth", "--data_root", "dump/raw"]
    )  # fmt: skip
    pack.main([*model, "--out", f"{exp}/packed/model.zip", "--results_json", f"{exp}/results.json"])

    results = json.loads((tmp_path / exp / "results.json").read_text())["flickr8k_test"]["cascaded"]
    for key in ("keyword_hit_rate", "keyword_hit_rate_top5_neighbours"):
        assert set(results[key]) == {f"kw{k}" for k in range(1, 9)} | {"avg"}
    assert results["keyword_hit_rate_top5_neighbours"]["avg"] >= results["keyword_hit_rate"]["avg"]
    md = (tmp_path / exp / "RESULTS.md").read_text()
    dev = json.loads((tmp_path / exp / "decode_flickr8k_dev" / "scores.json").read_text())["cascaded"]
    ours_dev = 0.5 * (dev["speech_to_image"]["R@1"] + dev["image_to_speech"]["R@1"])
    assert "## The paper's numbers beside ours (base flickr8k cascaded)" in md
    assert "| metric | paper | ours |" in md
    assert f"| dev mean R@1 (speech→image, image→speech) | 7.77 | {ours_dev:.2f} |" in md
    top5 = results["keyword_hit_rate_top5_neighbours"]["avg"]
    assert f"| keyword hit rate, top-5 neighbours avg | 22.7 | {top5:.1f} |" in md
    assert "| top-1 (the keyword itself) |" in md and "| top-5 neighbours (the authors' metric) |" in md
    assert "`import.json`" in md and "train.log" not in md

    # the archive: the Python API uses it unchanged, and its card says where the weights came from
    from espnet_speechclip.inference import Speech2Image

    s2i = Speech2Image.from_pretrained(tmp_path / exp / "packed" / "model.zip")
    wav = read_kv("dump/raw/flickr8k_test/wav.scp")
    assert len(s2i.keywords(next(iter(wav.values())))) == 8
    import zipfile

    with zipfile.ZipFile(tmp_path / exp / "packed" / "model.zip") as z:
        assert RELEASED_NAME in z.read("README.md").decode()


@pytest.fixture(scope="module")
def towers(tiny_clip, tiny_hubert):
    return load_towers(tiny_clip, tiny_hubert)


def tower_args(towers) -> List[str]:
    """The CLI options that stand the tiny towers in for the public HuBERT and CLIP."""
    clip = towers["clip_conf"]
    return [
        "--upstream_path", str(towers["hubert_path"]), "--clip_pretrained", clip["pretrained"],
        "--clip_model_name", clip["model_name"], "--clip_config_file", clip["config_file"],
    ]  # fmt: skip


def _cli(args: List[str], capsys) -> Tuple[int, str]:
    from espnet_speechclip.bin.import_authors_ckpt import main

    with pytest.raises(SystemExit) as e:
        run_cli(lambda: main(args), prog="import_authors_ckpt")
    return e.value.code, capsys.readouterr().err


def test_cli_one_line_errors(towers, tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"x": _exploit(tmp_path / "pwned")}, evil)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    ckpt, _, _ = make_checkpoint(
        towers, tmp_path / "a.ckpt", "parallel", False, edit=lambda sd: sd.update({"foo.bar": torch.zeros(1)})
    )
    for path, what in (
        (tmp_path / "missing.ckpt", "does not exist"),
        (junk, "not a readable PyTorch checkpoint"),
        (evil, "system"),
        (ckpt, "unknown key foo.bar"),
    ):
        code, err = _cli(
            ["--ckpt", str(path), "--out_dir", str(tmp_path / "exp"), *tower_args(towers)], capsys
        )
        lines = [line for line in err.splitlines() if "error" in line]
        assert code == 1 and len(lines) == 1 and what in lines[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_cli_imports_and_packs_for_the_python_api(towers, tmp_path, monkeypatch):
    """The CLI's folder and its packed archive serve the Python API unchanged."""
    from espnet_speechclip.bin.import_authors_ckpt import main
    from espnet_speechclip.inference.speech2image import Speech2Image

    monkeypatch.setenv("ESPNET_SPEECHCLIP_CACHE", str(tmp_path / "cache"))
    ckpt, sd, vocab = make_checkpoint(
        towers, tmp_path / "epoch_58-step_6902-val_recall_mean_1_7.7700.ckpt", "cascaded", False, seed=2
    )
    clip = towers["clip_conf"]
    main(["--ckpt", str(ckpt), "--out_dir", str(tmp_path / "exp"), *tower_args(towers), "--pack"])
    record = json.loads((tmp_path / "exp" / "import.json").read_text())
    assert record["source"]["release"]["dev_value"] == 7.77
    speech, lengths = waveforms(3, (12000,))
    for source in (tmp_path / "exp", tmp_path / "exp" / "packed" / "model.zip"):
        s2i = Speech2Image.from_pretrained(source)
        words = s2i.keywords(speech[0].numpy())
        with torch.no_grad():
            hidden, frames = s2i.model.speech_encoder.upstream(speech, lengths)
            _, ids = authors_cascaded(
                sd, authors_features(sd, hidden, normalize=False), frames, vocab, clip_heads(clip)
            )
        assert [w.id for w in words] == ids[0].tolist()


def test_cli_damaged_file_is_one_line(towers, tmp_path, capsys):
    """A checkpoint cut short in the download: one line naming the file."""
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "model.ckpt", "cascaded", False)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    code, err = _cli(["--ckpt", str(ckpt), "--out_dir", str(tmp_path / "exp"), "--no_verify"], capsys)
    lines = [line for line in err.splitlines() if "error" in line]
    assert code == 1 and len(lines) == 1 and f"{ckpt} is not a readable PyTorch checkpoint" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "exp").exists()


def test_speechclip_plus_release_is_evaluated_without_training(towers, tmp_path, capsys, monkeypatch):
    """SpeechCLIP+'s Base Flickr8k hybrid, saved as model.ckpt as its download script does: imported,
    inferred, and RESULTS.md puts the dev metric of its Hub file name (parallel embedding) beside ours,
    saying what the identification rests on."""
    from authors_layout import plus_config, plus_state_dict

    monkeypatch.chdir(tmp_path)
    vocab = reduced_vocabulary(0)
    state = plus_state_dict("hybrid", "base", "flickr", towers["hubert"], towers["clip"], vocab)
    config = plus_config("hybrid", "base", "flickr", towers["hubert"]["encoder.layers.0.fc2.weight"].shape[0])
    ckpt = save_authors_checkpoint(tmp_path / "model.ckpt", state, config)
    prepare_flickr8k(make_flickr8k_tree(tmp_path / "Flickr8k"), "data")
    for s in ("flickr8k_dev", "flickr8k_test"):
        format_audio.main(
            ["--data_dir", f"data/{s}", "--out_dir", f"dump/raw/{s}", "--audio_dir", f"dump/audio/{s}"]
        )
    exp = "exp/plus_base_flickr_hybrid"
    import_authors_ckpt.main(["--ckpt", str(ckpt), "--out_dir", exp, *tower_args(towers)])
    infer_dev_and_test(exp, capsys)
    make_results.main(["--exp_dir", exp, "--test_set", "flickr8k_test", "--dev_set", "flickr8k_dev"])
    md = (tmp_path / exp / "RESULTS.md").read_text()
    dev = json.loads((tmp_path / exp / "decode_flickr8k_dev" / "scores.json").read_text())
    assert set(dev) == {"parallel", "cascaded"}
    ours = 0.5 * (dev["parallel"]["speech_to_image"]["R@10"] + dev["parallel"]["image_to_speech"]["R@10"])
    assert f"| dev mean R@10 (speech→image, image→speech) | 80.01 | {ours:.2f} |" in md
    assert (
        "Imported `model.ckpt`, identified as the authors' SpeechCLIP+ release `base/flickr/hybrid` by" in md
    )
    assert "test numbers are not stored here" in md
