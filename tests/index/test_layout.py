"""index/layout: clip-retrieval's shard files, the manifest, and the embeddings read back by FAISS id."""

import json

import numpy as np
import pytest

from espnet_speechclip.errors import InputError
from espnet_speechclip.index import layout


def _shard(root, shard, rows, dim=4, modality="speech"):
    emb = np.arange(rows * dim, dtype=np.float16).reshape(rows, dim) + 100 * shard
    keys = [f"s{shard}_{r}" for r in range(rows)]
    layout.write_shard(root, modality, shard, emb, keys, [f"/a/{k}.wav" for k in keys])
    return emb


def test_a_shard_is_written_where_clip_retrieval_reads_it_and_read_back(tmp_path):
    emb = _shard(tmp_path, 7, 3)
    npy, meta = layout.emb_file(tmp_path, "speech", 7), layout.metadata_file(tmp_path, 7)
    assert npy == tmp_path / "speech_emb" / "speech_emb_00007.npy"
    assert meta == tmp_path / "metadata" / "metadata_00007.parquet"
    assert layout.emb_file(tmp_path, "image", 7).name == "img_emb_00007.npy"
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == [meta, npy]  # no temporary file left
    back = layout.read_embeddings(tmp_path, "speech", 7)
    assert back.dtype == np.float16 and np.array_equal(back, emb)
    import pyarrow.parquet as pq

    assert pq.read_table(meta).column_names == ["key", "audio_path"]  # clip-retrieval's column
    assert layout.read_metadata(tmp_path, "speech", 7) == {
        "key": ["s7_0", "s7_1", "s7_2"],
        "path": ["/a/s7_0.wav", "/a/s7_1.wav", "/a/s7_2.wav"],
    }


def test_rows_that_do_not_match_their_keys_are_refused(tmp_path):
    with pytest.raises(InputError, match="shard 0: 2 embeddings for 3 keys and 3 paths"):
        layout.write_shard(tmp_path, "image", 0, np.zeros((2, 4)), ["a", "b", "c"], ["1", "2", "3"])


def test_damaged_shard_files_name_the_file(tmp_path):
    _shard(tmp_path, 0, 2)
    npy = layout.emb_file(tmp_path, "speech", 0)
    npy.write_bytes(npy.read_bytes()[:40])
    with pytest.raises(layout.IndexFolderError, match=f"{npy} is missing or damaged"):
        layout.read_embeddings(tmp_path, "speech", 0)
    np.save(npy, np.zeros(3))
    with pytest.raises(layout.IndexFolderError, match=r"shape \(3,\), not \(n, D\)"):
        layout.read_embeddings(tmp_path, "speech", 0)
    with pytest.raises(layout.IndexFolderError, match="metadata_00001.parquet is missing or damaged"):
        layout.read_metadata(tmp_path, "speech", 1)


def test_the_manifest_round_trips_and_a_foreign_one_is_refused(tmp_path):
    assert layout.read_manifest(tmp_path) is None
    manifest = {"format": layout.MANIFEST_FORMAT, "shards": [[0, 2]], "kind": "flat"}
    layout.write_manifest(tmp_path, manifest)
    assert layout.read_manifest(tmp_path) == manifest
    (tmp_path / layout.MANIFEST).write_text(json.dumps({"format": 99}))
    with pytest.raises(layout.IndexFolderError, match="not an index manifest of this version"):
        layout.read_manifest(tmp_path)


def test_shard_vectors_are_the_stored_rows_by_faiss_id(tmp_path):
    """FAISS id = rows of the shards before + row: shards 2 (3 rows) and 5 (2 rows) give ids 0..4."""
    a, b = _shard(tmp_path, 2, 3), _shard(tmp_path, 5, 2)
    vectors = layout.ShardVectors(tmp_path, "speech", [(2, 3), (5, 2)])
    assert [vectors.locate(i) for i in range(5)] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert vectors.shard_number(1) == 5
    got = vectors[np.array([4, 0, 3])]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.stack([b[1], a[0], b[0]]).astype(np.float32))
