"""Decode folders record the model and data they were made from; stale or unfinished ones are refused."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.corpora import make_tiny_corpus

from espnet_speechclip.errors import InputError
from espnet_speechclip.inference.decode_dir import (
    decode_made_from,
    merge_utterance_parts,
    require_current,
    reset_decode_dir,
    write_decode_record,
)
from espnet_speechclip.provenance import FileHashes, ProvenanceError

MODEL = {"weights": "a" * 64, "options": "b" * 64}


def fake_decode(folder, utts):
    """The files inference writes (contents do not matter here)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "utt_list").write_text("".join(f"{u}\n" for u in utts))
    np.save(folder / "speech_parallel.npy", np.zeros((len(utts), 4), np.float32))
    (folder / "scores.json").write_text(json.dumps({"parallel": {}}))


@pytest.fixture
def data(tmp_path):
    return make_tiny_corpus(tmp_path / "corpus", n_images=2, captions=2, split="test")


def test_a_finished_decode_is_current_until_model_or_data_change(data, tmp_path):
    dec = tmp_path / "decode"
    hashes = FileHashes()
    made_from = decode_made_from(MODEL, data, hashes=hashes)
    fake_decode(dec, ["u1", "u2"])
    write_decode_record(dec, made_from, hashes)
    require_current(dec, MODEL, data)
    require_current(dec, MODEL)  # a caller that does not know the data checks the model only

    with pytest.raises(ProvenanceError, match=r"other inputs.*model\.weights.*Rerun the inference stage"):
        require_current(dec, dict(MODEL, weights="c" * 64), data)

    # the audio of one test utterance is replaced (a regenerated corpus): the decode is stale
    wav = (data / "wav.scp").read_text().split()[1]
    with open(wav, "r+b") as f:
        f.seek(60)
        f.write(b"\x7f\x7f")
    with pytest.raises(ProvenanceError, match=r"data\.audio"):
        require_current(dec, MODEL, data)


def test_a_new_word_alignment_makes_the_decode_stale(data, tmp_path):
    """Keyword timing is scored against the data dir's words.ctm: adding or changing it is new data."""
    from espnet_speechclip.data.datadir import write_ctm

    utt = (data / "wav.scp").read_text().split()[0]
    dec = tmp_path / "decode"
    fake_decode(dec, [utt])
    write_decode_record(dec, decode_made_from(MODEL, data))
    require_current(dec, MODEL, data)
    write_ctm(data / "words.ctm", {utt: [("red", 0.1, 0.4)]})
    with pytest.raises(ProvenanceError, match=r"data\.words\.ctm"):
        require_current(dec, MODEL, data)
    write_decode_record(dec, decode_made_from(MODEL, data))
    require_current(dec, MODEL, data)
    write_ctm(data / "words.ctm", {utt: [("red", 0.1, 0.5)]})
    with pytest.raises(ProvenanceError, match=r"data\.words\.ctm"):
        require_current(dec, MODEL, data)


def test_an_interrupted_or_damaged_decode_is_refused(data, tmp_path):
    dec = tmp_path / "decode"
    made_from = decode_made_from(MODEL, data)
    fake_decode(dec, ["u1"])
    write_decode_record(dec, made_from)
    # a new inference starts: the old record goes first, so a kill leaves nothing that looks finished
    reset_decode_dir(dec)
    assert not (dec / "scores.json").exists() and not (dec / "speech_parallel.npy").exists()
    fake_decode(dec, ["u1"])  # ... outputs written, killed before the record
    with pytest.raises(ProvenanceError, match="no record of a finished run"):
        require_current(dec, MODEL, data)

    write_decode_record(dec, made_from)
    (dec / "speech_parallel.npy").write_bytes(b"\x93NUMPY")  # truncated afterwards
    with pytest.raises(ProvenanceError, match="damaged"):
        require_current(dec, MODEL, data)


def test_merge_refuses_parts_of_another_run_or_an_unfinished_job(data, tmp_path):
    dec = tmp_path / "decode"
    made_from = decode_made_from(MODEL, data)
    parts = [dec / "split2" / "1", dec / "split2" / "2"]
    for j, part in enumerate(parts, 1):
        fake_decode(part, [f"u{j}"])
        write_decode_record(part, made_from, part=(j, 2))
    merge_utterance_parts(parts, dec, made_from)
    assert (dec / "utt_list").read_text().split() == ["u1", "u2"]

    other = decode_made_from(dict(MODEL, weights="d" * 64), data)
    with pytest.raises(ProvenanceError, match=r"part .*split2/1 was made from other inputs.*--split 1"):
        merge_utterance_parts(parts, dec, other)
    reset_decode_dir(parts[1])  # job 2 restarted and was killed
    with pytest.raises(ProvenanceError, match=r"split2/2 has no record.*--split 2"):
        merge_utterance_parts(parts, dec, made_from)


def test_audio_that_does_not_open_is_named_before_a_model_is_needed(data, tmp_path):
    from espnet_speechclip.data.datadir import read_kv
    from espnet_speechclip.data.media import MediaError
    from espnet_speechclip.inference.decode_dir import check_utterance_audio

    wavs = read_kv(data / "wav.scp")
    utts = sorted(wavs)
    assert check_utterance_audio(data) == len(utts)
    assert check_utterance_audio(data, split=(2, 3)) == len(utts[1::3])
    with pytest.raises(InputError, match="split 4 of 3 does not exist"):
        check_utterance_audio(data, split=(4, 3))
    Path(wavs[utts[1]]).write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(
        MediaError, match=rf"^utterance {utts[1]} of .*wav.scp: audio file .* cannot be decoded"
    ):
        check_utterance_audio(data)
    assert check_utterance_audio(data, split=(1, 3)) == len(utts[0::3])  # not in that job's share
