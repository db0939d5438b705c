"""Recipe stage 2: audio format, 16 kHz mono, converting only what needs it."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from espnet_speechclip.bin import format_audio
from espnet_speechclip.data import format as fmt
from espnet_speechclip.data.datadir import Utterance, read_datadir, read_kv, write_datadir
from espnet_speechclip.data.media import MediaError, write_wav


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


def test_word_alignment_travels_with_the_data_dir(mixed_datadir, tmp_path):
    from espnet_speechclip.data.datadir import read_ctm, write_ctm

    words = {"a": [("caption", 0.0, 0.2), ("a", 0.2, 0.5)], "c": [("caption", 0.012, 0.25)]}
    write_ctm(mixed_datadir / "words.ctm", words)
    out = tmp_path / "dump" / "set"
    fmt.format_datadir(mixed_datadir, out, tmp_path / "audio")
    assert read_ctm(out / "words.ctm") == words  # times do not move with the sample rate
    assert fmt.format_datadir(mixed_datadir, out, tmp_path / "audio")["up_to_date"]
    # a new alignment is a new input; a data dir without one leaves none behind
    write_ctm(mixed_datadir / "words.ctm", {"a": [("caption", 0.0, 0.3)]})
    assert not fmt.format_datadir(mixed_datadir, out, tmp_path / "audio")["up_to_date"]
    assert read_ctm(out / "words.ctm") == {"a": [("caption", 0.0, 0.3)]}
    (mixed_datadir / "words.ctm").unlink()
    fmt.format_datadir(mixed_datadir, out, tmp_path / "audio")
    assert not (out / "words.ctm").exists()


def test_ctm_files(tmp_path):
    from espnet_speechclip.data.datadir import read_ctm, write_ctm

    f = tmp_path / "x.ctm"
    f.write_text(";; a NIST comment\nu2 1 0.50 0.25 b 0.9\nu1 A 0.0 0.1 a\n\nu2 1 0.0 0.5 a\n")
    assert read_ctm(f) == {"u1": [("a", 0.0, 0.1)], "u2": [("a", 0.0, 0.5), ("b", 0.5, 0.75)]}
    # written to the millisecond; adjacent words still touch when read back
    write_ctm(f, {"u": [("x", 0.10049, 0.30051), ("y", 0.30051, 0.7)]})
    assert f.read_text() == "u 1 0.100 0.201 x\nu 1 0.301 0.399 y\n"
    got = read_ctm(f)["u"]
    assert got[0][2] == pytest.approx(got[1][1], abs=1e-12)
    for bad in ("u 1 0.1 b\n", "u 1 x 0.1 b\n", "u 1 0.5 -0.1 b\n"):
        f.write_text(bad)
        with pytest.raises(ValueError, match=r"x.ctm:1: not a CTM line"):
            read_ctm(f)
    with pytest.raises(ValueError, match="bad span"):
        write_ctm(f, {"u": [("x", 0.5, 0.4)]})
