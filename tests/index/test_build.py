"""Building an index folder: clip-retrieval's layout, resumable after a kill, shardable, growable,
unreadable files counted and listed."""

import json
import shutil

import numpy as np
import pytest
from helpers.corpora import make_photos

from espnet_speechclip.index import build, layout
from espnet_speechclip.index.collection import IMAGE, read_collection
from espnet_speechclip.index.embed import embed_items
from espnet_speechclip.index.identity import made_from_of


class Killed(BaseException):
    """Stands for a kill -9: nothing after it runs."""


def _embedder(s2i, calls=None, kill_after=None):
    """The build's embed callback; ``kill_after``: die while writing the shard after that many."""

    def embed(items, bar):
        if calls is not None:
            calls.append([it.key for it in items])
        if kill_after is not None and len(calls) > kill_after:
            raise Killed()
        return embed_items(s2i, items, IMAGE, bar=bar)

    return embed


def _build(s2i, source, out, **kw):
    items = read_collection(source, IMAGE)
    return build.build(
        out, made_from_of(s2i, IMAGE), items, kw.pop("embed", _embedder(s2i)), progress=False, **kw
    )


def _files(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.parts[-2] in ("img_emb", "metadata", "index")
    }


def test_layout_is_clip_retrievals_and_lists_every_path(s2i, photos, tmp_path):
    result = _build(s2i, photos, tmp_path / "idx", shard_size=5)
    root = tmp_path / "idx"
    assert sorted(p.name for p in (root / "img_emb").iterdir()) == [f"img_emb_{j:05d}.npy" for j in range(3)]
    emb = np.concatenate([np.load(root / "img_emb" / f"img_emb_{j:05d}.npy") for j in range(3)])
    assert emb.dtype == np.float16 and emb.shape[0] == 12
    paths = sum((layout.read_metadata(root, IMAGE, j)["path"] for j in range(3)), [])
    assert paths == sorted(str(p) for p in photos.iterdir())
    np.testing.assert_allclose(emb, s2i.embed_images(paths), atol=2e-3)
    assert result.manifest["count"] == 12 and result.manifest["factory"] == "Flat"
    assert json.loads((root / "index.json").read_text())["made_from"]["model"]["weights"]


def test_a_killed_build_continues_from_the_last_finished_shard(s2i, photos, tmp_path):
    whole, idx = tmp_path / "whole", tmp_path / "idx"
    _build(s2i, photos, whole, shard_size=4)
    calls = []
    with pytest.raises(Killed):  # killed while embedding shard 2, after shards 0 and 1 were finished
        _build(s2i, photos, idx, shard_size=4, embed=_embedder(s2i, calls, kill_after=2))
    assert not (idx / "index.json").exists()  # not an index yet
    again = []
    result = _build(s2i, photos, idx, shard_size=4, embed=_embedder(s2i, again))
    assert result.reused == [0, 1] and result.embedded == [2] and again == calls[2:]
    assert _files(idx) == _files(whole)
    # killed after a shard's files were written, before its record: that shard (only) is redone
    layout.record_file(idx, 1).unlink()
    again = []
    result = _build(s2i, photos, idx, shard_size=4, embed=_embedder(s2i, again))
    assert result.embedded == [1] and again == calls[1:2]
    assert _files(idx) == _files(whole)


def test_a_damaged_shard_is_embedded_again(s2i, photos, tmp_path):
    _build(s2i, photos, tmp_path / "idx", shard_size=5)
    f = layout.emb_file(tmp_path / "idx", IMAGE, 1)
    f.write_bytes(f.read_bytes()[:100])
    calls = []
    result = _build(s2i, photos, tmp_path / "idx", shard_size=5, embed=_embedder(s2i, calls))
    assert result.embedded == [1] and len(calls) == 1
    assert layout.read_embeddings(tmp_path / "idx", IMAGE, 1).shape[0] == 5


def test_parts_merge_to_the_index_one_process_builds(s2i, photos, tmp_path):
    _build(s2i, photos, tmp_path / "one", shard_size=3)
    for i in (1, 2, 3):
        result = _build(s2i, photos, tmp_path / "parts", shard_size=3, part=(i, 3))
        assert result.manifest is None and result.embedded == [j for j in range(4) if j % 3 == i - 1]
    calls = []
    merged = _build(s2i, photos, tmp_path / "parts", shard_size=3, embed=_embedder(s2i, calls))
    assert calls == [] and merged.reused == [0, 1, 2, 3]
    assert _files(tmp_path / "parts") == _files(tmp_path / "one")


def test_unreadable_files_are_counted_listed_and_left_out(s2i, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "photo_004.jpg").write_bytes(b"not a jpeg")
    result = _build(s2i, folder, tmp_path / "idx", shard_size=5)
    assert result.manifest["count"] == 11 and result.manifest["unreadable"] == 1
    listed = (tmp_path / "idx" / "unreadable.tsv").read_text().splitlines()
    assert len(listed) == 1 and listed[0].startswith(f"{folder / 'photo_004.jpg'}\t")
    assert str(folder / "photo_004.jpg") not in layout.read_metadata(tmp_path / "idx", IMAGE, 0)["path"]


def test_adding_files_embeds_only_the_new_ones(s2i, photos, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    _build(s2i, folder, tmp_path / "idx", shard_size=5)
    make_photos(folder / "more", 3, seed=9)
    calls = []
    items = read_collection(folder, IMAGE)
    result = build.add_items(tmp_path / "idx", made_from_of(s2i, IMAGE), items, _embedder(s2i, calls), False)
    assert [len(c) for c in calls] == [3] and result.manifest["count"] == 15
    assert result.manifest["shards"][-1] == [3, 3]


def test_another_model_may_not_build_into_an_index(s2i, photos, tmp_path):
    _build(s2i, photos, tmp_path / "idx", shard_size=5)
    other = dict(made_from_of(s2i, IMAGE), clip="another-clip")
    with pytest.raises(layout.IndexFolderError, match="made otherwise.*clip"):
        build.build(tmp_path / "idx", other, read_collection(photos, IMAGE), None, progress=False)
