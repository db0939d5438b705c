"""Local MTEB tasks from a data dir: MTEB's data layout and qrels, checked inputs."""

from __future__ import annotations

import pytest

pytest.importorskip("mteb", reason="mteb is not installed (pip install -e '.[mteb]')")

from espnet_speechclip.benchmark.mteb_task import datadir_tasks  # noqa: E402


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from helpers.corpora import make_tiny_corpus

    return make_tiny_corpus(tmp_path_factory.mktemp("mteb_task"), n_images=3, captions=2, split="test")


def test_tasks_hold_mteb_audio_image_retrieval_data(corpus, tmp_path):
    a2i, i2a = datadir_tasks(corpus, cache_dir=tmp_path)
    assert (a2i.metadata.name, i2a.metadata.name) == ("TinyTestA2IRetrieval", "TinyTestI2ARetrieval")
    assert (a2i.metadata.category, i2a.metadata.category) == ("a2i", "i2a")
    assert a2i.metadata.type == "Any2AnyRetrieval" and a2i.metadata.main_score == "ndcg_at_10"
    assert a2i.metadata.dataset["revision"] == i2a.metadata.dataset["revision"]
    a2i.load_data()
    i2a.load_data()
    split = a2i.dataset["default"]["test"]
    assert split["queries"].column_names == ["id", "audio"]
    assert split["corpus"].column_names == ["id", "image"]
    row = split["queries"][0]
    assert row["audio"]["sampling_rate"] == 16000 and len(row["audio"]["array"]) > 1000
    assert split["relevant_docs"][row["id"]] == {"testimg000": 1}
    # I2A: every caption of an image is relevant, and the audio is the same dataset (read once)
    i2a_split = i2a.dataset["default"]["test"]
    assert i2a_split["corpus"] is split["queries"]
    assert i2a_split["relevant_docs"]["testimg001"] == {"spk0-testimg001_0": 1, "spk1-testimg001_1": 1}
    assert sorted(i2a_split["queries"]["id"]) == ["testimg000", "testimg001", "testimg002"]


def test_bad_data_dirs_fail_before_evaluation_naming_the_problem(corpus, tmp_path):
    import shutil

    bad = tmp_path / "bad_test"
    shutil.copytree(corpus, bad)
    first = (bad / "wav.scp").read_text().splitlines()[0]
    utt, wav = first.split()
    (bad / "wav.scp").write_text((bad / "wav.scp").read_text().replace(wav, str(tmp_path / "gone.wav")))
    with pytest.raises(FileNotFoundError, match="gone.wav does not exist"):
        datadir_tasks(bad)
    (bad / "wav.scp").write_text(f"{first}\n")
    (bad / "utt2img").write_text(f"{utt} nosuchimage\n")
    with pytest.raises(ValueError, match="img.scp lacks image nosuchimage"):
        datadir_tasks(bad)
    with pytest.raises(ValueError, match="direction must be one of"):
        datadir_tasks(corpus, directions=("A2T",))
