"""files: atomic writes (the final name holds a whole file or nothing) and content hashes."""

import os

import pytest

from espnet_speechclip.files import atomic_path, write_text_atomic


def test_atomic_path_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "a.wav"
    with atomic_path(target, keep_suffix=True) as tmp:
        assert tmp.parent == tmp_path and tmp.name == ".a.partial.wav"
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing under the final name before the block ends
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        assert tmp.name == ".a.wav.partial"
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
    with atomic_path(target, unique=True) as tmp:
        assert tmp.name == f".a.wav.partial.{os.getpid()}"
        tmp.write_bytes(b"mine")
    assert target.read_bytes() == b"mine"


def test_write_text_atomic_creates_the_folder(tmp_path):
    path = write_text_atomic(tmp_path / "d" / "x.txt", "hello\n")
    assert path.read_text() == "hello\n" and os.listdir(tmp_path / "d") == ["x.txt"]


def test_write_text_atomic_replaces_the_file_and_leaves_no_partial(tmp_path):
    path = tmp_path / "notes.txt"
    write_text_atomic(path, "first ünïcode\n")
    assert path.read_text(encoding="utf-8") == "first ünïcode\n"
    write_text_atomic(str(path), "second\n")
    assert path.read_text() == "second\n" and os.listdir(tmp_path) == ["notes.txt"]


def test_sha256_file_is_the_hash_of_the_bytes_across_read_blocks(tmp_path):
    import hashlib

    from espnet_speechclip.files import sha256_file

    data = bytes(range(256)) * 5000  # over 1 MiB: several read blocks
    (tmp_path / "blob.bin").write_bytes(data)
    assert sha256_file(tmp_path / "blob.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert sha256_file(str(tmp_path / "empty")) == hashlib.sha256(b"").hexdigest()
    with pytest.raises(FileNotFoundError):
        sha256_file(tmp_path / "missing")
