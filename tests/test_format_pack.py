"""Recipe stage 2 (audio format) and stage 8 (packing a model into one self-contained archive)."""

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_speechclip.bin import format_audio, pack, speechclip_inference
from espnet_speechclip.data import format as fmt
from espnet_speechclip.data.datadir import Utterance, read_datadir, read_kv, write_datadir
from espnet_speechclip.data.media import MediaError, write_wav
from espnet_speechclip.inference.packing import PackError, pack_model, unpack_model

CONF = Path(__file__).resolve().parent.parent / "conf" / "tiny"


# ------------------------------------------------------------------------------------------ format


def sine(freq: float, n: int, rate: int) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


def peak_hz(wav: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / rate)[spec.argmax()])


@pytest.fixture
def mixed_datadir(tmp_path):
    """Four utterances: 16 kHz mono wav and flac (kept), 8 kHz mono and 16 kHz stereo (converted)."""
    src = tmp_path / "src"
    src.mkdir()
    img = tmp_path / "img.png"
    img.write_bytes(b"")  # the format stage never opens images
    write_wav(src / "a.wav", sine(300, 8000, 16000))
    sf.write(src / "b.flac", sine(300, 8000, 16000), 16000, subtype="PCM_16")
    sf.write(src / "c.wav", sine(440, 4000, 8000), 8000, subtype="PCM_16")
    stereo = np.stack([sine(500, 6000, 16000), sine(500, 6000, 16000)], axis=1)
    sf.write(src / "d.wav", stereo, 16000, subtype="PCM_16")
    utts = [
        Utterance(u, str(src / name), f"caption {u}", "spk", "img1", str(img), n)
        for u, name, n in (
            ("a", "a.wav", 8000),
            ("b", "b.flac", 8000),
            ("c", "c.wav", 4000),
            ("d", "d.wav", 6000),
        )
    ]
    return write_datadir(tmp_path / "data" / "set", utts)


def test_format_keeps_16k_mono_and_converts_the_rest(mixed_datadir, tmp_path, monkeypatch):
    out, audio = tmp_path / "dump" / "set", tmp_path / "audio"
    counts = fmt.format_datadir(mixed_datadir, out, audio, nj=2)
    assert counts == dict(total=4, kept=2, converted=2, written=2, up_to_date=False)

    src = read_kv(mixed_datadir / "wav.scp")
    utts = {u.utt_id: u for u in read_datadir(out)}
    assert utts["a"].wav_path == src["a"] and utts["b"].wav_path == src["b"]  # referenced, not copied
    assert sorted(p.name for p in audio.iterdir()) == ["c.wav", "d.wav"]
    for u in ("c", "d"):
        assert Path(utts[u].wav_path).parent == audio
        info = sf.info(utts[u].wav_path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert utts[u].num_samples == info.frames  # exact, from the written file
    assert utts["c"].num_samples == 8000  # 4000 samples at 8 kHz
    assert utts["d"].num_samples == 6000
    c, _ = sf.read(utts["c"].wav_path)
    d, _ = sf.read(utts["d"].wav_path)
    assert peak_hz(c, 16000) == pytest.approx(440, abs=5)
    assert peak_hz(d, 16000) == pytest.approx(500, abs=5)
    assert np.abs(d).max() == pytest.approx(0.5, abs=0.01)  # mixed, not summed
    # the other lists travel unchanged
    for name in ("text", "utt2spk", "utt2img", "img.scp"):
        assert (out / name).read_text() == (mixed_datadir / name).read_text()

    # a rerun on unchanged input does nothing at all: any conversion attempt would raise
    def no_work(job):
        raise AssertionError(f"rerun converted {job}")

    monkeypatch.setattr(fmt, "_format_one", no_work)
    counts = format_audio.main(
        ["--data_dir", str(mixed_datadir), "--out_dir", str(out), "--audio_dir", str(audio)]
    )
    assert counts == dict(total=4, kept=2, converted=2, written=0, up_to_date=True)
    monkeypatch.undo()

    # changed input lists: redone
    (mixed_datadir / "text").write_text(
        (mixed_datadir / "text").read_text().replace("caption a", "new words")
    )
    counts = fmt.format_datadir(mixed_datadir, out, audio)
    assert counts["written"] == 2 and not counts["up_to_date"]
    assert read_kv(out / "text")["a"] == "new words"
    # a converted file removed since (a cleaned dump/): redone too
    (audio / "c.wav").unlink()
    assert fmt.format_datadir(mixed_datadir, out, audio)["written"] == 2
    assert (audio / "c.wav").is_file()


def test_format_names_missing_and_corrupt_files(mixed_datadir, tmp_path):
    scp = read_kv(mixed_datadir / "wav.scp")
    Path(scp["c"]).unlink()
    Path(scp["b"]).write_bytes(b"not audio at all")
    with pytest.raises(MediaError) as err:
        fmt.format_datadir(mixed_datadir, tmp_path / "out", tmp_path / "audio")
    msg = str(err.value)
    assert "2 utterance(s)" in msg
    assert f"utterance c: audio file {scp['c']} does not exist" in msg
    assert f"utterance b: audio file {scp['b']}" in msg
    assert not (tmp_path / "out" / "wav.scp").exists()
    with pytest.raises(ValueError, match="overwrite"):
        fmt.format_datadir(mixed_datadir, mixed_datadir, tmp_path / "audio")


# -------------------------------------------------------------------------------------------- pack


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip, tiny_hubert):
    """A tiny parallel model trained 1 epoch through the real entry point, on a local HuBERT checkpoint,
    CLIP weights and CLIP JSON that are private copies (the test deletes them later)."""
    from helpers import train_tiny_speechclip

    root = tmp_path_factory.mktemp("pack")
    local = root / "local"
    (local / "json").mkdir(parents=True)
    clip_weights = Path(shutil.copy(tiny_clip["pretrained"], local / "tiny-clip.pt"))
    clip_json = Path(shutil.copy(tiny_clip["config_file"], local / "json" / "tiny-clip.json"))
    hubert = Path(shutil.copy(tiny_hubert, local / "hubert.pt"))
    clip_conf = dict(model_name="tiny-clip", pretrained=str(clip_weights), config_file=str(clip_json))

    out = train_tiny_speechclip(root, clip_conf, CONF / "parallel.yaml", hubert)
    exp, data, img_emb_scp = out["exp"], out["data"], out["img_emb_scp"]
    return dict(
        root=root, exp=exp, local=local, data=data, img_emb_scp=img_emb_scp, model_file=exp / "1epoch.pth"
    )


def infer(out: Path, data: Path, img_emb_scp: Path, *model_args: str) -> dict:
    speechclip_inference.main(
        [*model_args, "--data_dir", str(data), "--output_dir", str(out), "--image_emb_scp", str(img_emb_scp)]
    )
    return {f.name: np.load(f) for f in sorted(out.glob("*.npy"))}


def rewrite_zip(src: Path, dst: Path, replace: dict) -> Path:
    """Copy an archive, replacing members (bytes) or dropping them (None)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def test_pack_unpack_infer_self_contained(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("ESPNET_SPEECHCLIP_CACHE", str(tmp_path / "cache"))
    exp, data, emb = trained["exp"], trained["data"], trained["img_emb_scp"]
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"parallel": {"speech_to_image": {"R@1": 0.125}}}))
    baseline = infer(
        tmp_path / "dec_exp",
        data,
        emb,
        "--config",
        str(exp / "config.yaml"),
        "--model_file",
        str(trained["model_file"]),
    )

    archive = tmp_path / "packed" / "model.zip"
    pack.main(
        [
            "--config",
            str(exp / "config.yaml"),
            "--model_file",
            str(trained["model_file"]),
            "--out",
            str(archive),
            "--results_json",
            str(results),
        ]
    )
    with zipfile.ZipFile(archive) as zf:
        names = set(zf.namelist())
        config = yaml.safe_load(zf.read("config.yaml"))
        meta = json.loads(zf.read("meta.json"))
        card = zf.read("README.md").decode()
    assert {
        "config.yaml",
        "model.pth",
        "README.md",
        "meta.json",
        "files/clip/tiny-clip.pt",
        "files/clip_config/tiny-clip.json",
        "files/upstream/hubert.pt",
    } <= names
    assert config["clip_conf"]["pretrained"] == "files/clip/tiny-clip.pt"
    assert config["clip_conf"]["config_file"] == "files/clip_config/tiny-clip.json"
    assert config["speech_encoder_conf"]["path_or_url"] == "files/upstream/hubert.pt"
    assert config["train_data_path_and_name_and_type"] == [] and config["output_dir"] is None
    assert set(meta["sha256"]) == names - {"meta.json"}
    assert meta["package_version"] and meta["created"]
    for needle in (
        "parallel",
        "hubert_local",
        "tiny-clip",
        "Trainable parameters",
        "0.125",
        "--model model.zip",
    ):
        assert needle in card

    # the archive alone suffices: the exp dir and every local file it was built from are gone
    shutil.rmtree(exp)
    shutil.rmtree(trained["local"])
    packed = infer(tmp_path / "dec_zip", data, emb, "--model", str(archive))
    assert packed.keys() == baseline.keys() and "speech_parallel.npy" in packed
    for name in baseline:
        np.testing.assert_allclose(packed[name], baseline[name], atol=1e-6, err_msg=name)
    assert json.loads((tmp_path / "dec_zip" / "scores.json").read_text()) == json.loads(
        (tmp_path / "dec_exp" / "scores.json").read_text()
    )

    # unpacking again reuses the extraction (no member is read again)
    first = unpack_model(archive)
    monkeypatch.setattr(
        "espnet_speechclip.inference.packing._extract_verified",
        lambda *a: pytest.fail("re-extracted an unchanged archive"),
    )
    assert unpack_model(archive) == first
    monkeypatch.undo()
    assert first[0].parent.parent == tmp_path / "cache"

    # a tampered or missing member is refused, and leaves no extraction behind
    weights = torch.load(first[1], weights_only=True)
    weights["speech_encoder.layer_sum.weights"] += 1.0
    buf = tmp_path / "w.pth"
    torch.save(weights, buf)
    bad = rewrite_zip(archive, tmp_path / "tampered.zip", {"model.pth": buf.read_bytes()})
    with pytest.raises(PackError, match="member model.pth of .*tampered.zip fails its sha256 check"):
        unpack_model(bad, tmp_path / "cache2")
    with pytest.raises(PackError, match=re.escape("lacks member files/clip/tiny-clip.pt")):
        unpack_model(
            rewrite_zip(archive, tmp_path / "missing.zip", {"files/clip/tiny-clip.pt": None}),
            tmp_path / "cache2",
        )
    assert not list((tmp_path / "cache2").iterdir())


def test_inference_needs_exactly_one_way_to_give_the_model(tmp_path, capsys):
    base = ["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")]
    for extra in (
        [],
        ["--config", "c.yaml"],
        ["--model", "m.zip", "--config", "c.yaml", "--model_file", "m.pth"],
        ["--model", "m.zip", "--model_file", "m.pth"],
    ):
        with pytest.raises(SystemExit):
            speechclip_inference.main(base + extra)
        assert "--model" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="m.zip"):
        speechclip_inference.main(base + ["--model", str(tmp_path / "m.zip")])


def test_pack_cascaded_codebook_and_relative_paths(tmp_path):
    """A cascaded model's codebook file goes into the archive too; relative config paths resolve
    against base_dir. The weights are the freshly built model's (no training needed for packing)."""
    from helpers import TINY_CLIP_CONFIG, make_tiny_clip

    from espnet_speechclip.inference import Speech2Image
    from espnet_speechclip.models.codebook import codebook_from_texts, write_codebook

    base = tmp_path / "recipe"
    (base / "conf").mkdir(parents=True)
    make_tiny_clip(base / "clip.pt")
    shutil.copy(TINY_CLIP_CONFIG, base / "conf" / "tiny-clip.json")
    write_codebook(base / "codebook.txt", codebook_from_texts(["a red square", "a blue square"]))
    config = yaml.safe_load((CONF / "cascaded.yaml").read_text())
    config["clip_conf"].update(pretrained="clip.pt", config_file="conf/tiny-clip.json")
    config["model_conf"]["cascaded_conf"]["codebook"] = "codebook.txt"
    config["image_input"] = "embedding"
    (base / "config.yaml").write_text(yaml.safe_dump(config))

    # build with absolute paths to get the weights file
    absolute = json.loads(json.dumps(config))
    absolute["clip_conf"].update(
        pretrained=str(base / "clip.pt"), config_file=str(base / "conf/tiny-clip.json")
    )
    absolute["model_conf"]["cascaded_conf"]["codebook"] = str(base / "codebook.txt")
    (tmp_path / "abs.yaml").write_text(yaml.safe_dump(absolute))
    model = Speech2Image(tmp_path / "abs.yaml").model
    torch.save(model.state_dict(), base / "model.pth")

    with pytest.raises(PackError, match="clip.pt"):  # relative to the current dir: not found
        pack_model(base / "config.yaml", base / "model.pth", tmp_path / "x.zip")
    archive = pack_model(
        base / "config.yaml", base / "model.pth", tmp_path / "c.zip", card_text="Hello card", base_dir=base
    )
    with zipfile.ZipFile(archive) as zf:
        assert "Hello card" in zf.read("README.md").decode()
    shutil.rmtree(base)
    config_path, model_path = unpack_model(archive, tmp_path / "cache")
    assert yaml.safe_load(config_path.read_text())["model_conf"]["cascaded_conf"]["codebook"] == str(
        (tmp_path / "cache").resolve() / config_path.parent.name / "files/codebook/codebook.txt"
    )
    rebuilt = Speech2Image(config_path, model_path).model
    assert torch.equal(rebuilt.cascaded.codebook_ids, model.cascaded.codebook_ids)
