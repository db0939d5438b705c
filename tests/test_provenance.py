"""Provenance records: what an artifact was made from, checked before reuse."""

import json
import os

from espnet_speechclip import provenance as prov


def settle(entries, seconds=10):
    """Make recorded entries look hashed ``seconds`` after their files were written (not racy)."""
    return {k: dict(e, hashed_ns=e["stat"][1] + int(seconds * 1e9)) for k, e in entries.items()}


def test_file_hashes_reuse_unchanged_files_and_see_every_change(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a" * 100)
    b.write_bytes(b"b" * 100)
    first = prov.FileHashes()
    digests = first.sha256_many([a, b], threads=2)
    assert first.hashed == 2 and set(digests) == {str(a), str(b)}

    again = prov.FileHashes(settle(first.entries))
    assert again.sha256(a) == digests[str(a)] and again.hashed == 0  # one stat, no read

    # same size, new bytes: the stat differs (mtime/ctime), so the file is read again
    b.write_bytes(b"c" * 100)
    assert again.sha256(b) != digests[str(b)] and again.hashed == 1

    # a file hashed right after it was written is "racy": its entry is not trusted next time
    racy = prov.FileHashes(first.entries)
    racy.sha256(a)
    assert racy.hashed == 1


def test_record_is_written_last_and_names_what_changed(tmp_path):
    out = tmp_path / "artifact"
    out.mkdir()
    (out / "data.npy").write_bytes(b"x" * 64)
    record = prov.record_path(out)
    assert record == out / ".made_from.json"
    assert "no record" in prov.check_record(record, "thing", {"steps": 100})

    prov.write_record(record, "thing", {"steps": 100, "data": "abc"}, outputs={"data.npy": out / "data.npy"})
    assert prov.check_record(record, "thing", {"steps": 100, "data": "abc"}) is None
    why = prov.check_record(record, "thing", {"steps": 400, "data": "abc"})
    assert "steps: 100 -> 400" in why
    assert "not other" in prov.check_record(record, "other", {"steps": 100, "data": "abc"})
    # a comparison restricted to the keys a checker knows
    assert prov.check_record(record, "thing", {"steps": 100, "data": "new"}, keys=["steps"]) is None

    # a truncated output is damaged, not trusted
    (out / "data.npy").write_bytes(b"x" * 10)
    assert "damaged" in prov.check_record(record, "thing", {"steps": 100, "data": "abc"})
    os.remove(out / "data.npy")
    assert "missing" in prov.check_record(record, "thing", {"steps": 100, "data": "abc"})

    # a half-written (unparsable) record is no record
    record.write_text(json.dumps({"format": 1})[:-3])
    assert prov.read_record(record) is None
    prov.clear_record(record)
    assert not record.exists()


def test_record_path_of_a_file_is_hidden_beside_it(tmp_path):
    assert prov.record_path(tmp_path / "synth-clip.pt") == tmp_path / ".synth-clip.pt.made_from.json"


def test_content_digest_is_order_free_and_explain_is_short():
    assert prov.content_digest([("b", "2"), ("a", "1")]) == prov.content_digest([("a", "1"), ("b", "2")])
    diffs = prov.explain({f"k{i}": i for i in range(9)}, {f"k{i}": -i for i in range(9)}, limit=3)
    assert len(diffs) == 4 and diffs[-1] == "... (5 more)"
