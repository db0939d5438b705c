"""Flickr8k and SpokenCOCO preparation on tiny fixture trees in the official layouts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from espnet_speechclip.data import flickr8k, spokencoco
from espnet_speechclip.data.datadir import read_datadir, read_kv
from espnet_speechclip.data.prepare import num_samples_16k

OK_LEN = 1600  # 0.1 s at 16 kHz, above the default min_samples=400


def make_jpg(path: Path, shade: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 50, 200)).save(path, "JPEG")


def make_wav(path: Path, n: int = OK_LEN, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")


def make_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a RIFF file at all" * 10)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def prep_log(path: Path) -> str:
    return (path / "prep.log").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------
# Flickr8k

# (wav name, image, k, speaker, kind); kind: ok, 8k, missing, garbage, short
FLICKR_WAVS: List[Tuple[str, str, int, str, str]] = [
    ("1000_aaa_0.wav", "1000_aaa.jpg", 0, "1", "ok"),
    ("1000_aaa_1.wav", "1000_aaa.jpg", 1, "10", "8k"),
    ("1001_bbb_0.wav", "1001_bbb.jpg", 0, "2", "missing"),
    ("1001_bbb_1.wav", "1001_bbb.jpg", 1, "2", "garbage"),
    ("1001_bbb_2.wav", "1001_bbb.jpg", 2, "2", "short"),
    ("1001_bbb_3.wav", "1001_bbb.jpg", 3, "2", "ok"),  # its caption is absent from the token file
    ("1001_bbb_4.wav", "1001_bbb.jpg", 4, "2", "ok"),
    ("1002_ccc_0.wav", "1002_ccc.jpg", 0, "1", "ok"),  # image missing on disk
    ("1003_ddd_0.wav", "1003_ddd.jpg", 0, "1", "ok"),  # image is garbage
    ("2000_eee_0.wav", "2000_eee.jpg", 0, "10", "ok"),
    ("2000_eee_1.wav", "2000_eee.jpg", 1, "1", "ok"),
    ("3000_fff_0.wav", "3000_fff.jpg", 0, "2", "ok"),
    ("9000_zzz_0.wav", "9000_zzz.jpg", 0, "1", "ok"),  # image in no split list
    ("9000_zzz_1.wav", "9000_zzz.jpg", 1, "2", "ok"),
]
FLICKR_SPLITS = {
    "Flickr_8k.trainImages.txt": ["1000_aaa.jpg", "1001_bbb.jpg", "1002_ccc.jpg", "1003_ddd.jpg"],
    "Flickr_8k.devImages.txt": ["2000_eee.jpg", "2001_ggg.jpg"],  # 2001_ggg has no spoken caption
    "Flickr_8k.testImages.txt": ["3000_fff.jpg"],
}


def caption(image: str, k: int) -> str:
    return f"A {image.split('.')[0]} picture number {k} ."


def build_flickr8k(root: Path, image_dir: str = "Flicker8k_Dataset", text_dir: str = "Flickr8k_text") -> Path:
    for image in [
        "1000_aaa.jpg",
        "1001_bbb.jpg",
        "2000_eee.jpg",
        "2001_ggg.jpg",
        "3000_fff.jpg",
        "9000_zzz.jpg",
        "9001_yyy.jpg",
    ]:
        make_jpg(root / image_dir / image)
    make_garbage(root / image_dir / "1003_ddd.jpg")
    # Token file: 5 tab-separated captions per image, as in the official file, minus 1001_bbb.jpg#3.
    images = sorted({w[1] for w in FLICKR_WAVS} | {"2001_ggg.jpg"})
    tokens = [
        f"{im}#{k}\t{caption(im, k)}" for im in images for k in range(5) if (im, k) != ("1001_bbb.jpg", 3)
    ]
    write_lines(root / text_dir / "Flickr8k.token.txt", tokens)
    for name, imgs in FLICKR_SPLITS.items():
        write_lines(root / text_dir / name, imgs)
    audio = root / "flickr_audio"
    write_lines(audio / "wav2capt.txt", [f"{w} {im} #{k}" for w, im, k, _, _ in FLICKR_WAVS])
    write_lines(audio / "wav2spk.txt", [f"{w} {spk}" for w, _, _, spk, _ in FLICKR_WAVS])
    for w, _, _, _, kind in FLICKR_WAVS:
        path = audio / "wavs" / w
        if kind == "ok":
            make_wav(path)
        elif kind == "8k":
            make_wav(path, n=OK_LEN // 2, rate=8000)
        elif kind == "garbage":
            make_garbage(path)
        elif kind == "short":
            make_wav(path, n=100)
    return root


@pytest.fixture
def flickr_root(tmp_path: Path) -> Path:
    return build_flickr8k(tmp_path / "Flickr8k")


def assert_kaldi_sorted(path: Path) -> None:
    """utt2spk must sort the same by utterance and by (speaker, utterance): ESPnet/Kaldi checks this."""
    rows = list(read_kv(path / "utt2spk").items())
    assert rows == sorted(rows, key=lambda r: (r[1], r[0]))


@pytest.mark.parametrize("image_dir,text_dir", [("Flicker8k_Dataset", "Flickr8k_text"), ("Images", ".")])
def test_flickr8k_splits_and_drops(tmp_path: Path, image_dir: str, text_dir: str) -> None:
    root = build_flickr8k(tmp_path / "Flickr8k", image_dir, text_dir)
    out = flickr8k.prepare_flickr8k(root, tmp_path / "data")
    assert {s: p.name for s, p in out.items()} == {
        "train": "flickr8k_train",
        "dev": "flickr8k_dev",
        "test": "flickr8k_test",
    }

    utts = {s: {u.utt_id: u for u in read_datadir(p)} for s, p in out.items()}
    assert sorted(utts["train"]) == ["1-1000_aaa_0", "10-1000_aaa_1", "2-1001_bbb_4"]
    assert sorted(utts["dev"]) == ["1-2000_eee_1", "10-2000_eee_0"]
    assert sorted(utts["test"]) == ["2-3000_fff_0"]

    u = utts["train"]["2-1001_bbb_4"]
    assert u.text == caption("1001_bbb.jpg", 4)
    assert u.speaker == "2"
    assert u.image_key == "1001_bbb"
    assert Path(u.image_path) == (root / image_dir / "1001_bbb.jpg").absolute()
    assert Path(u.wav_path) == (root / "flickr_audio" / "wavs" / "1001_bbb_4.wav").absolute()
    assert u.num_samples == OK_LEN
    assert utts["dev"]["10-2000_eee_0"].text == caption("2000_eee.jpg", 0)
    # The 8 kHz wav is kept, its length counted in 16 kHz samples.
    assert utts["train"]["10-1000_aaa_1"].num_samples == OK_LEN
    for p in out.values():
        assert_kaldi_sorted(p)

    log = prep_log(out["train"])
    assert (
        "dropped 6 (1 corrupt image, 1 corrupt wav, 1 missing caption, 1 missing image, "
        "1 missing wav, 1 too short)"
    ) in log
    assert "1 kept utterances needs conversion" in log
    assert "ignored 2 utterances of 1 images that are in no split list" in log
    assert "ignored 2 image files" in log  # 9000_zzz and 9001_yyy on disk
    assert "nothing dropped" in prep_log(out["dev"])
    assert "9000_zzz" not in (out["train"] / "img.scp").read_text()


def test_flickr8k_parallel_matches_serial(flickr_root: Path, tmp_path: Path) -> None:
    serial = flickr8k.prepare_flickr8k(flickr_root, tmp_path / "a", nj=1)
    parallel = flickr8k.prepare_flickr8k(flickr_root, tmp_path / "b", nj=2)
    for split in serial:
        for name in ("wav.scp", "text", "utt2spk", "utt2img", "img.scp", "utt2num_samples", "prep.log"):
            assert (serial[split] / name).read_text() == (parallel[split] / name).read_text()


def test_flickr8k_min_samples(flickr_root: Path, tmp_path: Path) -> None:
    out = flickr8k.prepare_flickr8k(flickr_root, tmp_path / "data", min_samples=50)
    assert "1 too short" not in prep_log(out["train"])
    assert read_kv(out["train"] / "utt2num_samples")["2-1001_bbb_2"] == "100"


def test_flickr8k_empty_split_errors_and_writes_nothing(flickr_root: Path, tmp_path: Path) -> None:
    (flickr_root / "flickr_audio" / "wavs" / "3000_fff_0.wav").unlink()
    with pytest.raises(ValueError, match=r"flickr8k_test ends empty.*1 missing wav"):
        flickr8k.prepare_flickr8k(flickr_root, tmp_path / "data")
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "missing",
    [
        "Flickr8k_text/Flickr_8k.devImages.txt",
        "Flickr8k_text/Flickr8k.token.txt",
        "flickr_audio/wav2capt.txt",
    ],
)
def test_flickr8k_missing_listing_errors(flickr_root: Path, tmp_path: Path, missing: str) -> None:
    (flickr_root / missing).unlink()
    with pytest.raises(FileNotFoundError, match=Path(missing).name.replace(".", r"\.")) as err:
        flickr8k.prepare_flickr8k(flickr_root, tmp_path / "data")
    assert "FLICKR8K" in str(err.value)


def test_flickr8k_cli(flickr_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    flickr8k.main(["--root", str(flickr_root), "--out_dir", str(tmp_path / "data"), "--nj", "1"])
    printed = capsys.readouterr().out
    assert "flickr8k_train" in printed and "flickr8k_test" in printed
    assert (tmp_path / "data" / "flickr8k_dev" / "wav.scp").is_file()


def test_flickr8k_parsers() -> None:
    assert flickr8k.parse_wav2capt(["a_0.wav a.jpg #0", "", "a_1.wav a.jpg #1"]) == {
        "a_0.wav": ("a.jpg", 0),
        "a_1.wav": ("a.jpg", 1),
    }
    with pytest.raises(ValueError, match=r"w2c:2"):
        flickr8k.parse_wav2capt(["a_0.wav a.jpg #0", "a_1.wav a.jpg 1"], "w2c")
    assert flickr8k.parse_token_file(["a.jpg#0\tA dog  runs .", "a.jpg#1\t"]) == {
        "a.jpg#0": "A dog  runs .",
        "a.jpg#1": "",
    }
    with pytest.raises(ValueError, match="both the train and the dev"):
        flickr8k.assign_splits({"train": ["a.jpg"], "dev": ["a.jpg"]})


def test_num_samples_16k() -> None:
    assert num_samples_16k(1600, 16000) == 1600
    assert num_samples_16k(800, 8000) == 1600
    assert num_samples_16k(441, 44100) == 160
    assert num_samples_16k(3, 22050) == 2  # round, not floor


# ---------------------------------------------------------------------------------------------------------
# SpokenCOCO


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


def test_spokencoco_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    sc, coco, karpathy = build_spokencoco(tmp_path)
    spokencoco.main(
        [
            "--spokencoco",
            str(sc),
            "--mscoco",
            str(coco),
            "--karpathy",
            str(karpathy),
            "--out_dir",
            str(tmp_path / "data"),
            "--nj",
            "2",
        ]
    )
    assert "spokencoco_test" in capsys.readouterr().out
    assert (tmp_path / "data" / "spokencoco_train" / "utt2num_samples").is_file()


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
