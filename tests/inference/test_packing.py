"""Recipe stage 8: packing a model into one self-contained archive, and unpacking it."""

import json
import logging
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import ROOT

from espnet_speechclip.bin import pack, speechclip_inference
from espnet_speechclip.inference.packing import PackError, pack_model, unpack_model

CONF = ROOT / "conf" / "tiny"


# ------------------------------------------------------------------------------------------ format


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_clip, tiny_hubert):
    """A tiny parallel model trained 1 epoch through the real entry point, on a local HuBERT checkpoint,
    CLIP weights and CLIP JSON that are private copies (the test deletes them later)."""
    from helpers.stand_ins import train_tiny_speechclip

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


def test_pack_unpack_infer_self_contained(trained, tmp_path, monkeypatch, caplog):
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
            "--hand_written_results",
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
        "ESPNET_SPEECHCLIP_CACHE",  # where the archive unpacks, and how to move it
        "~/.cache/espnet_speechclip/",
    ):
        assert needle in card

    # the archive alone suffices: the exp dir and every local file it was built from are gone
    shutil.rmtree(exp)
    shutil.rmtree(trained["local"])
    with caplog.at_level(logging.INFO, logger="espnet_speechclip.inference.archive"):
        packed = infer(tmp_path / "dec_zip", data, emb, "--model", str(archive))
    unpacked = [r.getMessage() for r in caplog.records if r.getMessage().startswith("unpacked ")]
    assert len(unpacked) == 1 and str(tmp_path / "cache") in unpacked[0]
    assert "ESPNET_SPEECHCLIP_CACHE" in unpacked[0]
    assert packed.keys() == baseline.keys() and "speech_parallel.npy" in packed
    for name in baseline:
        np.testing.assert_allclose(packed[name], baseline[name], atol=1e-6, err_msg=name)
    assert json.loads((tmp_path / "dec_zip" / "scores.json").read_text()) == json.loads(
        (tmp_path / "dec_exp" / "scores.json").read_text()
    )

    # unpacking again reuses the extraction (no member is read again)
    first = unpack_model(archive)
    monkeypatch.setattr(
        "espnet_speechclip.inference.archive._extract_verified",
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
    bad = rewrite_zip(archive, tmp_path / "resized.zip", {"model.pth": buf.read_bytes()})
    with pytest.raises(PackError, match="member model.pth of .*resized.zip is .* bytes in the zip, but meta"):
        unpack_model(bad, tmp_path / "cache2")
    # the same size, other bytes (the last byte of the stored weights changed)
    same_size = bytearray(first[1].read_bytes())
    same_size[-1] ^= 0xFF
    bad = rewrite_zip(archive, tmp_path / "tampered.zip", {"model.pth": bytes(same_size)})
    with pytest.raises(PackError, match="member model.pth of .*tampered.zip fails its sha256 check"):
        unpack_model(bad, tmp_path / "cache2")
    with pytest.raises(PackError, match=re.escape("lacks member files/clip/tiny-clip.pt")):
        unpack_model(
            rewrite_zip(archive, tmp_path / "missing.zip", {"files/clip/tiny-clip.pt": None}),
            tmp_path / "cache2",
        )
    assert not list((tmp_path / "cache2").iterdir())


def test_pack_cascaded_codebook_and_relative_paths(tmp_path):
    """A cascaded model's codebook file goes into the archive too; relative config paths resolve
    against base_dir. The weights are the freshly built model's (no training needed for packing)."""
    from helpers import TINY_CLIP_CONFIG
    from helpers.stand_ins import make_tiny_clip

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


def test_pack_refuses_results_of_other_weights_or_without_a_record(parallel_exp, tmp_path):
    """Stage 7 for other weights stopped before its record (or results copied without one): stage 8
    refuses the results instead of putting another model's recalls in the card."""
    from espnet_speechclip.evaluation.results import write_results
    from espnet_speechclip.identity import model_identity
    from espnet_speechclip.provenance import ProvenanceError, record_path

    config = parallel_exp / "config.yaml"
    exp = tmp_path / "exp"
    (exp / "decode_test").mkdir(parents=True)
    shutil.copy(config, exp / "config.yaml")
    scores = {"parallel": {"speech_to_image": {"R@1": 6.67, "R@5": 28.3, "R@10": 46.7}}}
    (exp / "decode_test" / "scores.json").write_text(json.dumps(scores))
    write_results(exp, ["test"], model=model_identity(config, parallel_exp / "latest.pth"))
    weights = torch.load(parallel_exp / "latest.pth", weights_only=True)
    key = next(k for k, v in weights.items() if v.is_floating_point())
    weights[key] += 1.0
    torch.save(weights, tmp_path / "other.pth")
    results = ["--results_json", str(exp / "results.json")]
    args = [
        "--config",
        str(config),
        "--model_file",
        str(tmp_path / "other.pth"),
        "--out",
        str(tmp_path / "m.zip"),
    ]
    # what a scoring run killed after removing the record left: the first model's results, no record
    record = record_path(exp / "results.json")
    kept = record.read_bytes()
    record.unlink()
    with pytest.raises(ProvenanceError, match="results.json has no record of a finished run"):
        pack.main([*args, *results])
    record.write_bytes(kept)
    with pytest.raises(ProvenanceError, match=r"results.json was made from other inputs \(model.weights: "):
        pack.main([*args, *results])
    assert not (tmp_path / "m.zip").exists()
