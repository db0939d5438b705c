"""files: content hashes and atomic text writes."""

import hashlib

import pytest

from espnet_speechclip import files


def test_sha256_file_is_the_hash_of_the_bytes_across_read_blocks(tmp_path):
    data = bytes(range(256)) * 5000  # over 1 MiB: several read blocks
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert files.sha256_file(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError):
        files.sha256_file(tmp_path / "missing")


def test_write_text_atomic_replaces_the_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "new" / "dir" / "notes.txt"
    assert files.write_text_atomic(path, "first ünïcode\n") == path  # parents are made
    assert path.read_text(encoding="utf-8") == "first ünïcode\n"
    files.write_text_atomic(str(path), "second\n")
    assert path.read_text() == "second\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["notes.txt"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.json"
    files.write_text_atomic(path, "old")

    def no_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", no_rename)
    with pytest.raises(OSError, match="disk full"):
        files.write_text_atomic(path, "new")
    assert path.read_text() == "old"
