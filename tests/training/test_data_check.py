"""The start-up check of training data: bad files named before training, checked files not decoded again."""

import argparse

import numpy as np
import pytest
import soundfile as sf
from helpers.corpora import make_garbage, make_wav, write_lines

from espnet_speechclip.data import format as fmt
from espnet_speechclip.data.datadir import Utterance, write_datadir
from espnet_speechclip.provenance import FileHashes
from espnet_speechclip.training import data_check
from espnet_speechclip.training.data_check import DataCheckError, scan_training_data


def make_list(root, bad=None):
    """wav.scp + utt2num_samples of four 0.1 s utterances; ``bad`` replaces utterance u2's audio."""
    lines, shapes = [], []
    for i in range(4):
        path = root / f"u{i}.wav"
        make_wav(path)
        lines.append(f"u{i} {path}")
        shapes.append(f"u{i} 1600")
    path = root / "u2.wav"
    if bad == "nan":
        sf.write(str(path), np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    elif bad == "8k":
        make_wav(path, rate=8000)
    elif bad == "stereo":
        sf.write(str(path), np.zeros((1600, 2), np.float32), 16000)
    elif bad == "corrupt":
        make_garbage(path)
    elif bad == "missing":
        path.unlink()
    elif bad == "length":
        make_wav(path, n=3200)
    write_lines(root / "wav.scp", lines)
    write_lines(root / "utt2num_samples", shapes)
    return root / "wav.scp"


def args_for(wav_scp):
    return argparse.Namespace(
        train_data_path_and_name_and_type=[(str(wav_scp), "speech", "sound_16k")],
        train_shape_file=[str(wav_scp.parent / "utt2num_samples")],
        valid_data_path_and_name_and_type=[],
        valid_shape_file=[],
    )


@pytest.mark.parametrize(
    "bad,message",
    [
        ("nan", "contains NaN or infinite samples"),
        ("8k", "is 8000 Hz"),
        ("stereo", "has 2 channels"),
        ("corrupt", "cannot be decoded"),
        ("missing", "does not exist"),
        ("length", "has 3200 samples but the shape file says 1600"),
    ],
)
def test_bad_training_audio_is_named_before_training(tmp_path, bad, message):
    wav_scp = make_list(tmp_path, bad)
    with pytest.raises(DataCheckError) as err:
        scan_training_data(args_for(wav_scp), FileHashes())
    text = str(err.value)
    assert str(wav_scp) in text and "1 audio file(s)" in text and "utterance u2" in text and message in text


def test_checked_files_are_not_decoded_again_and_changes_are(tmp_path, monkeypatch):
    wav_scp = make_list(tmp_path)
    checked = FileHashes()
    first = scan_training_data(args_for(wav_scp), checked)
    assert set(first) == {"train.speech"} and first["train.speech"]["content"]

    # a later run with the entries of the first decodes nothing, whether the files' stats still prove them
    # unchanged (settled entries) or their bytes must be hashed again (entries taken right after writing)
    settled = {k: dict(e, hashed_ns=e["stat"][1] + 10**10) for k, e in checked.entries.items()}
    decoded = []
    real = data_check._check_audio
    monkeypatch.setattr(data_check, "_check_audio", lambda *a: decoded.append(a[0]) or real(*a))
    assert scan_training_data(args_for(wav_scp), FileHashes(settled)) == first
    assert scan_training_data(args_for(wav_scp), FileHashes(checked.entries)) == first
    assert decoded == []
    # a file replaced since is decoded again, and the data's identity changes with it
    make_wav(tmp_path / "u1.wav", n=1600, rate=16000)
    with open(tmp_path / "u1.wav", "r+b") as f:  # same length, other samples
        f.seek(100)
        f.write(b"\x01\x02")
    again = scan_training_data(args_for(wav_scp), FileHashes(settled))
    assert decoded == [str(tmp_path / "u1.wav")]
    assert again["train.speech"]["content"] != first["train.speech"]["content"]


def test_audio_vouched_for_by_the_format_stage_is_not_decoded(tmp_path, monkeypatch):
    src = tmp_path / "src"
    utts = []
    for i in range(3):
        make_wav(src / f"u{i}.wav")
        utts.append(Utterance(f"u{i}", str(src / f"u{i}.wav"), "a red square", "spk", "img", "x.png", 1600))
    data = write_datadir(tmp_path / "data", utts)
    fmt.format_datadir(data, tmp_path / "dump", tmp_path / "audio")
    # the format stage hashed its outputs as it wrote them; settle them as time would
    record = fmt.read_record(tmp_path / "dump" / fmt.RECORD_NAME)
    for e in record["outputs"].values():
        e["hashed_ns"] = e["stat"][1] + 10**10
    fmt.write_record(
        tmp_path / "dump" / fmt.RECORD_NAME,
        fmt.RECORD_KIND,
        record["made_from"],
        output_entries=record["outputs"],
    )
    monkeypatch.setattr(data_check, "_check_audio", lambda *a: pytest.fail(f"decoded {a[0]}"))
    scan_training_data(args_for(tmp_path / "dump" / "wav.scp"), FileHashes())


def test_damaged_cached_embeddings_are_named(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    np.save(tmp_path / "b.npy", np.ones(4, np.float32))
    (tmp_path / "b.npy").write_bytes((tmp_path / "b.npy").read_bytes()[:-6])  # truncated
    write_lines(tmp_path / "emb.scp", [f"u1 {tmp_path / 'a.npy'}", f"u2 {tmp_path / 'b.npy'}"])
    args = argparse.Namespace(
        train_data_path_and_name_and_type=[(str(tmp_path / "emb.scp"), "image_emb", "npy")],
        train_shape_file=[],
    )
    with pytest.raises(DataCheckError, match=r"b\.npy cannot be read"):
        scan_training_data(args, FileHashes())
