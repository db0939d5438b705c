"""training/preprocessor: one loaded example -> the model's arrays, each failure naming the utterance."""

import numpy as np
import pytest
import torch

from espnet_speechclip.data.media import MediaError
from espnet_speechclip.models.clip import EOT_ID, SOT_ID
from espnet_speechclip.training.preprocessor import SpeechCLIPPreprocessor, image_id_to_int


def test_image_ids_are_stable_63_bit_integers():
    a = image_id_to_int("1000_train0")
    assert a == image_id_to_int("1000_train0") != image_id_to_int("1000_train1")
    assert 0 <= a < 2**63
    # fixed by the key alone (not Python's salted hash()): the same in every process and worker
    assert (
        image_id_to_int("img")
        == int.from_bytes(__import__("hashlib").blake2b(b"img", digest_size=8).digest(), "little") >> 1
    )


def test_an_example_becomes_arrays():
    pre = SpeechCLIPPreprocessor(min_samples=400, text_context=8)
    out = pre(
        "u1",
        dict(
            speech=np.zeros(400, dtype=np.float64),
            image_id=" img7 ",
            image_emb=np.ones((1, 4)),
            text="a red square",
            other="kept as is",
        ),
    )
    assert out["speech"].dtype == np.float32 and out["speech"].shape == (400,)
    assert out["image_id"].tolist() == [image_id_to_int("img7")] and out["image_id"].dtype == np.int64
    assert out["image_emb"].shape == (4,) and out["image_emb"].dtype == np.float32
    ids = out["text"]
    assert ids.dtype == np.int64 and ids[0] == SOT_ID and ids[-1] == EOT_ID and (ids == EOT_ID).sum() == 1
    assert len(ids) == 5  # SOT, 3 words, EOT: no padding
    long = pre("u2", dict(text=" ".join(["red"] * 20)))["text"]
    assert len(long) == 8 and long[-1] == EOT_ID  # truncated to the context, EOT kept
    assert out["other"] == "kept as is"


def test_pixels_go_through_the_image_transform():
    seen = []

    def transform(pil):
        seen.append((pil.mode, pil.size, pil.getpixel((0, 0))))
        return torch.zeros(3, 2, 2, dtype=torch.float64)

    pre = SpeechCLIPPreprocessor(min_samples=1, image_transform=transform)
    out = pre("u1", dict(image=np.full((3, 5, 3), 300.0)))  # out-of-range values are clipped
    assert seen == [("RGB", (5, 3), (255, 255, 255))]
    assert out["image"].shape == (3, 2, 2) and out["image"].dtype == np.float32
    with pytest.raises(ValueError, match="image pixels given but the task was configured with image_input"):
        SpeechCLIPPreprocessor(min_samples=1)("u1", dict(image=np.zeros((3, 5, 3))))


@pytest.mark.parametrize(
    "data, error, message",
    [
        (
            dict(speech=np.zeros((2, 800))),
            ValueError,
            r"utterance u9: speech must be mono, got shape \(2, 800\)",
        ),
        (dict(speech=np.zeros(399)), MediaError, "utterance u9: 399 samples at 16 kHz, shorter than"),
        (dict(image_id="  "), ValueError, "utterance u9: empty image id"),
        (dict(image_emb=np.array([0.0, np.nan])), ValueError, "utterance u9: cached image embedding has NaN"),
        (dict(text=" "), ValueError, "utterance u9: empty transcript"),
    ],
)
def test_bad_examples_name_the_utterance(data, error, message):
    with pytest.raises(error, match=message):
        SpeechCLIPPreprocessor(min_samples=400)("u9", data)
