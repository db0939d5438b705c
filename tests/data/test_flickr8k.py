"""Flickr8k preparation on a tiny fixture tree in the official layout."""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import pytest
from helpers.corpora import (
    OK_LEN,
    assert_kaldi_sorted,
    make_garbage,
    make_jpg,
    make_wav,
    prep_log,
    write_lines,
)

from espnet_speechclip.data import flickr8k
from espnet_speechclip.data.datadir import read_datadir, read_kv

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
    assert u.text == caption("1001_bbb.jpg", 4)[: -len(" .")]
    assert u.speaker == "2"
    assert u.image_key == "1001_bbb"
    assert Path(u.image_path) == (root / image_dir / "1001_bbb.jpg").absolute()
    assert Path(u.wav_path) == (root / "flickr_audio" / "wavs" / "1001_bbb_4.wav").absolute()
    assert u.num_samples == OK_LEN
    assert utts["dev"]["10-2000_eee_0"].text == "A 2000_eee picture number 0"
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


def test_flickr8k_parsers() -> None:
    assert flickr8k.parse_wav2capt(["a_0.wav a.jpg #0", "", "a_1.wav a.jpg #1"]) == {
        "a_0.wav": ("a.jpg", 0),
        "a_1.wav": ("a.jpg", 1),
    }
    with pytest.raises(ValueError, match=r"w2c:2"):
        flickr8k.parse_wav2capt(["a_0.wav a.jpg #0", "a_1.wav a.jpg 1"], "w2c")
    # the final full stop goes (as the authors strip it): "." would be a keyword hit in every caption
    assert flickr8k.parse_token_file(
        ["a.jpg#0\tA dog  runs .", "a.jpg#1\t", "a.jpg#2\tA dog runs.", "a.jpg#3\t.", "a.jpg#4\tMr. T !"]
    ) == {
        "a.jpg#0": "A dog  runs",
        "a.jpg#1": "",
        "a.jpg#2": "A dog runs",
        "a.jpg#3": "",
        "a.jpg#4": "Mr. T !",
    }
    with pytest.raises(ValueError, match="both the train and the dev"):
        flickr8k.assign_splits({"train": ["a.jpg"], "dev": ["a.jpg"]})


def test_flickr8k_transcripts_have_no_final_full_stop(tmp_path: Path) -> None:
    """The official token file ends captions with " ."; kept, "." would enter the training codebook and
    score a keyword hit in nearly every caption."""
    from helpers.corpora import make_flickr8k_tree

    from espnet_speechclip.models.clip import text_token_ids
    from espnet_speechclip.models.codebook import codebook_from_texts

    root = make_flickr8k_tree(tmp_path / "Flickr8k")
    assert (root / "Flickr8k_text" / "Flickr8k.token.txt").read_text().splitlines()[0].endswith(" square .")
    out = flickr8k.prepare_flickr8k(root, tmp_path / "data")
    for split, data_dir in out.items():
        texts = read_kv(data_dir / "text")
        assert texts and all(t.endswith(" square") for t in texts.values()), split
    full_stop = text_token_ids(".")
    assert len(full_stop) == 1
    assert full_stop[0] not in codebook_from_texts(read_kv(out["train"] / "text").values())
