"""SpokenCOCO preparation (Karpathy split) on a tiny fixture tree in the official layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import pytest
from helpers.corpora import OK_LEN, assert_kaldi_sorted, make_garbage, make_jpg, make_wav, prep_log

from espnet_speechclip.data import spokencoco
from espnet_speechclip.data.datadir import read_datadir


def coco_image(split_dir: str, idx: int) -> str:
    return f"{split_dir}/COCO_{split_dir}_{idx:012d}.jpg"


def build_spokencoco(tmp: Path) -> Tuple[Path, Path, Path]:
    sc, coco = tmp / "SpokenCOCO", tmp / "mscoco"
    on_disk = [
        coco_image("train2014", 1),
        coco_image("train2014", 2),
        coco_image("val2014", 10),
        coco_image("val2014", 11),
        coco_image("val2014", 12),
    ]  # val 13 is missing on disk
    for i, im in enumerate(on_disk):
        make_jpg(coco / im, shade=20 * i)

    def cap(speaker: str, uttid: str, wav_dir: str, kind: str = "ok", text: str = "") -> Dict[str, str]:
        wav = f"wavs/{wav_dir}/0/{uttid}.wav"
        if kind == "ok":
            make_wav(sc / wav)
        elif kind == "8k":
            make_wav(sc / wav, n=OK_LEN // 2, rate=8000)
        elif kind == "garbage":
            make_garbage(sc / wav)
        elif kind == "short":
            make_wav(sc / wav, n=120)
        return {
            "text": text or f"A SPOKEN CAPTION {uttid.upper()}",
            "speaker": speaker,
            "uttid": uttid,
            "wav": wav,
        }

    train = {
        "data": [
            {
                "image": coco_image("train2014", 1),
                "captions": [
                    cap("A1B2", "A1B2-3XYZ_1_100", "train"),
                    cap("A1B2", "A1B2-3XYZ_1_101", "train", kind="missing"),
                ],
            },
            {
                "image": coco_image("train2014", 2),
                "captions": [cap("C3D4", "C3D4-3XYZ_2_200", "train")],
            },  # no Karpathy
        ]
    }
    val = {
        "data": [
            {
                "image": coco_image("val2014", 10),
                "captions": [
                    cap("m07", "foo_10_1", "val", kind="8k"),
                    cap("m07", "m07-3XYZ_10_2", "val", kind="garbage"),
                ],
            },
            {"image": coco_image("val2014", 11), "captions": [cap("C3D4", "C3D4-3XYZ_11_1", "val")]},
            {
                "image": coco_image("val2014", 12),
                "captions": [
                    cap("A1B2", "A1B2-3XYZ_12_1", "val"),
                    cap("A1B2", "A1B2-3XYZ_12_2", "val", kind="short"),
                ],
            },
            {"image": coco_image("val2014", 13), "captions": [cap("C3D4", "C3D4-3XYZ_13_1", "val")]},
        ]
    }
    sc.mkdir(parents=True, exist_ok=True)
    (sc / "SpokenCOCO_train.json").write_text(json.dumps(train))
    (sc / "SpokenCOCO_val.json").write_text(json.dumps(val))

    def k(filepath: str, idx: int, split: str) -> Dict[str, object]:
        return {
            "filepath": filepath,
            "filename": f"COCO_{filepath}_{idx:012d}.jpg",
            "split": split,
            "cocoid": idx,
            "sentences": [],
        }

    karpathy = tmp / "dataset_coco.json"
    karpathy.write_text(
        json.dumps(
            {
                "dataset": "coco",
                "images": [
                    k("train2014", 1, "train"),
                    k("val2014", 10, "restval"),
                    k("val2014", 11, "val"),
                    k("val2014", 12, "test"),
                    k("val2014", 13, "test"),
                    k("val2014", 14, "val"),
                ],
            }
        )
    )
    return sc, coco, karpathy


def test_spokencoco_karpathy_splits_and_drops(tmp_path: Path) -> None:
    sc, coco, karpathy = build_spokencoco(tmp_path)
    out = spokencoco.prepare_spokencoco(sc, coco, karpathy, tmp_path / "data")
    assert {s: p.name for s, p in out.items()} == {
        "train": "spokencoco_train",
        "dev": "spokencoco_dev",
        "test": "spokencoco_test",
    }
    utts = {s: {u.utt_id: u for u in read_datadir(p)} for s, p in out.items()}
    # restval (val2014 image 10) joins train; the uttid without a speaker prefix gets one.
    assert sorted(utts["train"]) == ["A1B2-3XYZ_1_100", "m07-foo_10_1"]
    assert sorted(utts["dev"]) == ["C3D4-3XYZ_11_1"]
    assert sorted(utts["test"]) == ["A1B2-3XYZ_12_1"]

    u = utts["train"]["m07-foo_10_1"]
    assert u.speaker == "m07"
    assert u.text == "A SPOKEN CAPTION FOO_10_1"
    assert u.image_key == "COCO_val2014_000000000010"
    assert Path(u.image_path) == (coco / coco_image("val2014", 10)).absolute()
    assert Path(u.wav_path) == (sc / "wavs/val/0/foo_10_1.wav").absolute()
    assert u.num_samples == OK_LEN  # 8 kHz file, counted in 16 kHz samples
    for p in out.values():
        assert_kaldi_sorted(p)

    train_log, test_log = prep_log(out["train"]), prep_log(out["test"])
    assert "dropped 2 (1 corrupt wav, 1 missing wav)" in train_log
    assert "1 kept utterances needs conversion" in train_log
    assert "dropped 2 (1 missing image, 1 too short)" in test_log
    assert "ignored 1 utterances of 1 images that are not in dataset_coco.json" in train_log
    assert "1 images of dataset_coco.json have no spoken caption" in train_log
    assert "COCO_train2014_000000000002" not in (out["train"] / "img.scp").read_text()


def test_spokencoco_empty_split_errors(tmp_path: Path) -> None:
    sc, coco, karpathy = build_spokencoco(tmp_path)
    (sc / "wavs/val/0/C3D4-3XYZ_11_1.wav").unlink()
    with pytest.raises(ValueError, match="spokencoco_dev ends empty"):
        spokencoco.prepare_spokencoco(sc, coco, karpathy, tmp_path / "data")


def test_spokencoco_missing_inputs_error(tmp_path: Path) -> None:
    sc, coco, karpathy = build_spokencoco(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"nope\.json.*KARPATHY_COCO"):
        spokencoco.prepare_spokencoco(sc, coco, tmp_path / "nope.json", tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"train2014 not found.*MSCOCO"):
        spokencoco.prepare_spokencoco(sc, tmp_path, karpathy, tmp_path / "data")
    (sc / "SpokenCOCO_val.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"SpokenCOCO_val\.json.*SPOKENCOCO"):
        spokencoco.prepare_spokencoco(sc, coco, karpathy, tmp_path / "data")


def test_karpathy_parser() -> None:
    obj = {
        "images": [
            {"filepath": "val2014", "filename": "x.jpg", "split": "restval"},
            {"filepath": "val2014", "filename": "y.jpg", "split": "val"},
        ]
    }
    assert spokencoco.parse_karpathy(obj) == {"val2014/x.jpg": "train", "val2014/y.jpg": "dev"}
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        spokencoco.parse_karpathy({"images": [{"filepath": "a", "filename": "b.jpg", "split": "holdout"}]})
    assert spokencoco.utterance_id("spk", "spk-1_2", "wavs/x.wav") == "spk-1_2"
    assert spokencoco.utterance_id("spk", None, "wavs/x.wav") == "spk-x"
