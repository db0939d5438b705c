"""An authors' released checkpoint evaluated without training, through the entry points the recipe runs
(``--pretrained_model <ckpt> --skip_train true``): prepare Flickr8k, format the audio, import, cache the
image embeddings of the imported config's CLIP, infer dev and test, make RESULTS.md, pack."""

import json

import torch
from authors_layout import authors_config, authors_state_dict, reduced_vocabulary, save_authors_checkpoint
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

RELEASED_NAME = "epoch_58-step_6902-val_recall_mean_1_7.7700.ckpt"  # Base Flickr8k cascaded


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
