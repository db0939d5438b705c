"""SpeechCLIP's ESPnet data types: the reader ESPnet actually uses for each, and what it refuses."""

import numpy as np
import pytest
import soundfile as sf
from helpers.corpora import make_garbage, make_jpg, make_wav, write_lines

from espnet_speechclip.data.media import MediaError
from espnet_speechclip.training.readers import ImageReader, Sound16kReader, register_data_types


@pytest.fixture
def lists(tmp_path):
    """One list per data type, each with a good entry."""
    make_wav(tmp_path / "a.wav")
    make_jpg(tmp_path / "a.jpg")
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    write_lines(tmp_path / "wav.scp", [f"a {tmp_path / 'a.wav'}"])
    write_lines(tmp_path / "img.scp", [f"a {tmp_path / 'a.jpg'}"])
    write_lines(tmp_path / "emb.scp", [f"a {tmp_path / 'a.npy'}"])
    return tmp_path


def test_espnet_dataset_uses_our_reader_for_each_of_our_types(lists):
    """ESPnet takes the first DATA_TYPES key that re.match-es a type name, and "sound" matches "sound_16k":
    the type must reach Sound16kReader, not ESPnet's plain sound reader."""
    from espnet2.fileio.npy_scp import NpyScpReader
    from espnet2.train.dataset import AdapterForSoundScpReader, ESPnetDataset

    register_data_types()
    register_data_types()  # idempotent
    dataset = ESPnetDataset(
        [
            (str(lists / "wav.scp"), "speech", "sound_16k"),
            (str(lists / "img.scp"), "image", "image"),
            (str(lists / "emb.scp"), "image_emb", "npy"),
            (str(lists / "wav.scp"), "plain", "sound"),
        ]
    )
    loaders = dataset.loader_dict
    assert type(loaders["speech"]) is Sound16kReader
    assert type(loaders["image"]) is ImageReader
    assert type(loaders["image_emb"]) is NpyScpReader
    assert type(loaders["plain"]) is AdapterForSoundScpReader  # ESPnet's own "sound" is left alone
    _, data = dataset["a"]
    assert data["speech"].shape == (1600,) and data["image"].shape == (8, 8, 3)


@pytest.mark.parametrize(
    "kind,message",
    [
        ("8k", "is 8000 Hz; SpeechCLIP needs 16000 Hz"),
        ("stereo", "has 2 channels; SpeechCLIP needs mono"),
        ("nan", "contains NaN or infinite samples"),
        ("corrupt", "cannot read"),
        ("empty", "is empty"),
    ],
)
def test_sound_16k_refuses_unusable_files_naming_them(tmp_path, kind, message):
    path = tmp_path / f"{kind}.wav"
    if kind == "8k":
        make_wav(path, rate=8000)
    elif kind == "stereo":
        sf.write(str(path), np.zeros((1600, 2), np.float32), 16000)
    elif kind == "nan":
        sf.write(str(path), np.full(1600, np.nan, np.float32), 16000, subtype="FLOAT")
    elif kind == "corrupt":
        make_garbage(path)
    else:
        sf.write(str(path), np.zeros(0, np.float32), 16000)
    write_lines(tmp_path / "wav.scp", [f"utt1 {path}"])
    reader = Sound16kReader(str(tmp_path / "wav.scp"))
    with pytest.raises(MediaError) as err:
        reader["utt1"]
    assert message in str(err.value) and str(path) in str(err.value) and "utt1" in str(err.value)
    assert "str() failed" not in str(err.value)
