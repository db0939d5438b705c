"""The image-embedding cache: keyed by image content, damaged entries rebuilt, interrupted runs resumed."""

import logging
import os
import re

import numpy as np
import pytest
from helpers.corpora import make_tiny_corpus

from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.decode_dir import read_image_cache
from espnet_speechclip.training.image_cache import cache_image_embeddings


def embedded(caplog) -> int:
    return int(re.findall(r"(\d+) to embed", caplog.text)[-1])


@pytest.fixture
def corpus(tmp_path):
    return make_tiny_corpus(tmp_path / "corpus", n_images=4, captions=1, split="train")


def test_cache_follows_image_content_not_names(corpus, tiny_clip, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    root = tmp_path / "cache"
    folder = cache_image_embeddings(corpus / "img.scp", tiny_clip, root, progress=False)
    assert embedded(caplog) == 4
    first = read_kv(folder / "img_emb.scp")

    cache_image_embeddings(corpus / "img.scp", tiny_clip, root, progress=False)
    assert embedded(caplog) == 0 and read_kv(folder / "img_emb.scp") == first

    # a regenerated corpus: same keys and paths, new pictures -> new embeddings, not the old ones
    from PIL import Image

    img = read_kv(corpus / "img.scp")["trainimg001"]
    Image.new("RGB", (40, 40), (0, 255, 255)).save(img)
    cache_image_embeddings(corpus / "img.scp", tiny_clip, root, progress=False)
    assert embedded(caplog) == 1
    now = read_kv(folder / "img_emb.scp")
    assert now["trainimg001"] != first["trainimg001"]
    assert {k: v for k, v in now.items() if k != "trainimg001"} == {
        k: v for k, v in first.items() if k != "trainimg001"
    }
    old, new = np.load(first["trainimg001"]), np.load(now["trainimg001"])
    assert not np.allclose(old, new)


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_entries_are_recomputed_not_trusted(corpus, tiny_clip, tmp_path, caplog, damage):
    caplog.set_level(logging.INFO)
    folder = cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    path = read_kv(folder / "img_emb.scp")["trainimg002"]
    good = np.load(path)
    data = open(path, "rb").read()
    if damage == "truncate":
        open(path, "wb").write(data[:-10])
    elif damage == "flip":
        open(path, "wb").write(data[:-4] + bytes(b ^ 0xFF for b in data[-4:]))
    else:
        os.remove(path)
    if damage == "truncate":  # a reader names the file instead of failing deep in numpy
        with pytest.raises(ValueError, match=re.escape(path)):
            read_image_cache(["trainimg002"], folder / "img_emb.scp")
    cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    assert embedded(caplog) == 1
    np.testing.assert_allclose(np.load(path), good, atol=1e-6)  # alone, not in a batch of 4
    # the rebuilt entry is recorded as it is now: the next run trusts it
    caplog.clear()
    cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    assert embedded(caplog) == 0


def test_an_interrupted_run_resumes_from_its_journal(corpus, tiny_clip, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    calls = []
    from espnet_speechclip.models import clip

    original = clip.CLIPImageEncoder.embed_images

    def killed_after_first_batch(self, images, device):
        calls.append(len(images))
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for kill -9 between two batches
        return original(self, images, device)

    monkeypatch.setattr(clip.CLIPImageEncoder, "embed_images", killed_after_first_batch)
    with pytest.raises(KeyboardInterrupt):
        cache_image_embeddings(
            corpus / "img.scp", tiny_clip, tmp_path / "cache", batch_size=2, progress=False
        )
    folder = next((tmp_path / "cache").iterdir())
    assert not (folder / "index.json").exists() and (folder / "journal.tsv").is_file()
    # a cut-short last line, as a kill in the middle of a write leaves it
    with open(folder / "journal.tsv", "a") as f:
        f.write('deadbeef\t{"sha2')
    monkeypatch.setattr(clip.CLIPImageEncoder, "embed_images", original)
    cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", batch_size=2, progress=False)
    assert embedded(caplog) == 2  # the first batch of 2 was kept
    assert not (folder / "journal.tsv").exists()
    resumed = {k: np.load(v) for k, v in read_kv(folder / "img_emb.scp").items()}
    # byte-identical to an uninterrupted run with the same batches
    whole = cache_image_embeddings(
        corpus / "img.scp", tiny_clip, tmp_path / "whole", batch_size=2, progress=False
    )
    assert len(resumed) == 4
    for k, v in read_kv(whole / "img_emb.scp").items():
        assert np.load(v).tobytes() == resumed[k].tobytes()


def test_a_repaired_entry_leaves_the_data_identity_as_it_was(
    corpus, tiny_clip, tmp_path, monkeypatch, caplog
):
    """A truncated embedding recomputed alone (not in its first batch) matches the original within float
    rounding only; the experiment's data identity does not change, so training resumes after a repair."""
    from espnet_speechclip.models import clip
    from espnet_speechclip.provenance import FileHashes
    from espnet_speechclip.training.data_check import scan_embedding_list
    from espnet_speechclip.training.image_cache import write_utt_emb_scp

    original = clip.CLIPImageEncoder.embed_images

    def batch_dependent(self, images, device):  # as CPU kernels round differently for other batch sizes
        return original(self, images, device) * (1 + 1e-7 * len(images))

    monkeypatch.setattr(clip.CLIPImageEncoder, "embed_images", batch_dependent)
    folder = cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    scp = write_utt_emb_scp(corpus / "utt2img", folder / "img_emb.scp", tmp_path / "train.scp")
    before = scan_embedding_list(str(scp), FileHashes())
    path = read_kv(folder / "img_emb.scp")["trainimg002"]
    good = np.load(path)
    open(path, "r+b").truncate(os.path.getsize(path) - 10)
    cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    repaired = np.load(path)
    assert repaired.tobytes() != good.tobytes()
    np.testing.assert_allclose(repaired, good, atol=1e-6)
    assert scan_embedding_list(str(scp), FileHashes()) == before
    caplog.set_level(logging.INFO)
    cache_image_embeddings(corpus / "img.scp", tiny_clip, tmp_path / "cache", progress=False)
    assert embedded(caplog) == 0  # the repair is recorded: not recomputed again

    np.save(path, good)  # a file the cache did not write (its index vouches for other bytes)
    assert scan_embedding_list(str(scp), FileHashes()) != before
