"""index/embed: a collection's files embedded batch by batch; an unreadable one is left out with why."""

import numpy as np
import soundfile as sf

from espnet_speechclip.index.collection import IMAGE, SPEECH, Item
from espnet_speechclip.index.embed import embed_items


class Bar:
    def __init__(self):
        self.n = 0

    def update(self, n):
        self.n += n


def test_speech_is_embedded_in_the_branch_space_and_bad_files_are_left_out(s2i, tmp_path):
    rng = np.random.default_rng(0)
    good = {}
    for name, seconds in [("a", 1.0), ("b", 0.6), ("c", 0.8)]:
        good[name] = (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
        sf.write(tmp_path / f"{name}.wav", good[name], 16000)
    short = s2i.model.speech_encoder.min_samples - 1
    sf.write(tmp_path / "short.wav", np.zeros(short, np.float32), 16000)
    sf.write(tmp_path / "nan.wav", np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    names = ["a", "short", "b", "missing", "nan", "c"]
    items = [Item(n, str(tmp_path / f"{n}.wav")) for n in names]
    bar = Bar()
    emb, ok, failed = embed_items(s2i, items, SPEECH, bar=bar)
    assert [it.key for it in ok] == ["a", "b", "c"] and bar.n == len(items)
    reasons = dict(failed)
    assert set(reasons) == {str(tmp_path / f"{n}.wav") for n in ("short", "missing", "nan")}
    assert f"shorter than the speech encoder's minimum of {short + 1}" in reasons[str(tmp_path / "short.wav")]
    assert "NaN or infinite" in reasons[str(tmp_path / "nan.wav")]
    # the files left out change nothing for the others: the embeddings of the good files alone
    branch = s2i.branches[0]
    np.testing.assert_allclose(emb, s2i([good[n] for n in ("a", "b", "c")])[branch], atol=1e-5)
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_nothing_readable_is_an_empty_array_not_an_error(s2i, tmp_path):
    emb, ok, failed = embed_items(s2i, [Item("x", str(tmp_path / "x.jpg"))], IMAGE)
    assert emb.shape[0] == 0 and ok == [] and len(failed) == 1
