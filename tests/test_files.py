"""Atomic writes: the final name holds a whole file or nothing."""

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
