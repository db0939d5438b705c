"""The cascaded codebook: from training texts, files, and refusals."""

import pytest

from espnet_speechclip.models.clip import (
    decode_token,
)
from espnet_speechclip.models.codebook import (
    codebook_from_texts,
    read_codebook,
    write_codebook,
)


def test_codebook_from_training_texts_and_file_round_trip(tmp_path, text_encoder):
    ids = codebook_from_texts(["a red star", "A RED Circle"])
    words = {decode_token(i) for i in ids}
    assert {"a", "red", "star", "circle"} <= words
    write_codebook(tmp_path / "cb.txt", ids)
    assert read_codebook(tmp_path / "cb.txt", text_encoder.vocab_size) == ids


@pytest.mark.parametrize(
    "content,match",
    [
        ("736 red\n99999 foo\n", "outside the CLIP vocabulary"),
        ("320 blue\n", "made with another vocabulary"),
        ("49406 <start_of_text>\n", "special token"),
        ("", "is empty"),
        ("red 320\n", "expected '<id> <subword>'"),
    ],
)
def test_bad_codebook_files_are_refused(tmp_path, content, match):
    f = tmp_path / "cb.txt"
    f.write_text(content)
    with pytest.raises(ValueError, match=match):
        read_codebook(f, 49408)
