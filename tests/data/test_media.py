"""data/media: audio and image files read, resampled and checked; every failure names the file."""

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from espnet_speechclip.data.media import (
    MediaError,
    load_audio,
    load_image,
    probe_audio,
    probe_image,
    read_audio_header,
    resample,
    write_wav,
)


def tone(n: int, rate: int, freq: float = 440.0) -> np.ndarray:
    return 0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate)


def test_write_and_load_a_wav_at_16k(tmp_path):
    path = tmp_path / "sub" / "a.wav"
    write_wav(path, np.concatenate([tone(1600, 16000), [3.0, -3.0]]))  # out of range: clipped
    assert probe_audio(path) == (1602, 16000, 1)
    wav = load_audio(path)
    assert wav.dtype == np.float32 and wav.shape == (1602,)
    assert wav[-2] == pytest.approx(1.0, abs=1e-4) and wav[-1] == pytest.approx(-1.0, abs=1e-4)


def test_stereo_at_another_rate_is_mixed_down_and_resampled(tmp_path):
    path = tmp_path / "stereo.flac"
    left = tone(4410, 44100)
    sf.write(str(path), np.stack([left, left], axis=1), 44100)
    assert probe_audio(path) == (4410, 44100, 2)
    wav = load_audio(path)
    assert wav.shape == (1600,)  # 0.1 s at 16 kHz
    np.testing.assert_allclose(wav[100:-100], tone(1600, 16000)[100:-100], atol=0.02)


def test_resample_keeps_the_rate_and_converts_dtype():
    x = np.arange(8, dtype=np.float64)
    same = resample(x, 16000)
    assert same.dtype == np.float32 and np.array_equal(same, x)
    assert resample(np.zeros(8000), 8000).shape == (16000,)


def test_bad_audio_files_are_named(tmp_path):
    with pytest.raises(MediaError, match=r"audio file .*nope.wav does not exist"):
        probe_audio(tmp_path / "nope.wav")
    with pytest.raises(MediaError, match="does not exist"):
        load_audio(tmp_path / "nope.wav")
    garbage = tmp_path / "notes.wav"
    garbage.write_bytes(b"meeting notes" * 20)
    for fn in (probe_audio, load_audio, read_audio_header):
        with pytest.raises(MediaError, match=r"audio file .*notes.wav cannot be decoded"):
            fn(garbage)
    with pytest.raises(MediaError, match=r"audio file .*nope.wav does not exist"):
        read_audio_header(tmp_path / "nope.wav")
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0), 16000)
    for fn in (probe_audio, load_audio):
        with pytest.raises(MediaError, match=r"empty.wav is empty"):
            fn(empty)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, np.nan, 0.1], dtype=np.float32), 16000, subtype="FLOAT")
    with pytest.raises(MediaError, match="nan.wav contains NaN or infinite samples"):
        probe_audio(nan)
    assert issubclass(MediaError, ValueError)


def test_images_are_probed_and_loaded_as_rgb(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (6, 4), 100).save(path)
    assert probe_image(path) == (6, 4)
    im = load_image(path)
    assert im.mode == "RGB" and im.size == (6, 4) and im.getpixel((0, 0)) == (100, 100, 100)
    for fn in (probe_image, load_image):
        with pytest.raises(MediaError, match=r"image file .*missing.jpg does not exist"):
            fn(tmp_path / "missing.jpg")
    broken = tmp_path / "broken.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(broken, "JPEG")
    broken.write_bytes(broken.read_bytes()[:100])  # truncated
    for fn in (probe_image, load_image):
        with pytest.raises(MediaError, match=r"image file .*broken.jpg cannot be decoded"):
            fn(broken)


def test_audio_header_without_decoding(tmp_path):
    path = tmp_path / "stereo.wav"
    sf.write(str(path), np.stack([tone(4410, 44100)] * 2, axis=1), 44100)
    assert read_audio_header(path) == (4410, 44100, 2)
    # damaged data past the header: the header alone still reads (the decode is what catches that)
    path.write_bytes(path.read_bytes()[:100])
    assert read_audio_header(path)[1:] == (44100, 2)
