"""The packed model format's checks: bounded, link-free extraction, checked before anything is written.

The archives are made here, member by member, in the format pack_model writes (no model is built).
"""

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest

from espnet_speechclip.inference.archive import (
    FORMAT,
    MAX_BYTES_ENV,
    MAX_MEMBERS_ENV,
    PackError,
    extract_archive,
    packed_meta,
    unpack_limits,
    unpack_model,
)

CONFIG = b"model: parallel\nclip_conf: {model_name: x, pretrained: y}\n"


def make_archive(
    path: Path, members: dict, sized: bool = True, links: dict = None, meta: dict = None
) -> Path:
    """A packed archive of ``members`` ({name: bytes}) with meta.json hashing (and sizing) them;
    ``links`` ({name: target}) are added as symlink entries; ``meta`` overrides meta.json's fields."""
    members = {"config.yaml": CONFIG, "model.pth": b"weights", **members}
    info = dict(
        format=FORMAT,
        format_version=1,
        paths={},
        sha256={k: hashlib.sha256(v).hexdigest() for k, v in members.items()},
    )
    if sized:
        info["size"] = {k: len(v) for k, v in members.items()}
    info.update(meta or {})
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            entry = zipfile.ZipInfo(name)
            entry.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(entry, target)
        zf.writestr("meta.json", json.dumps(info))
    return path


def written(folder: Path) -> list:
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_a_packed_archive_unpacks_and_is_reused(tmp_path):
    archive = make_archive(tmp_path / "m.zip", {"files/codebook/c.txt": b"a b c\n"})
    config, weights = unpack_model(archive, tmp_path / "cache")
    assert weights.read_bytes() == b"weights" and config.is_file()
    assert unpack_model(archive, tmp_path / "cache") == (config, weights)


def test_packed_meta_of_an_archive_and_of_its_folder(tmp_path):
    archive = make_archive(tmp_path / "m.zip", {}, meta=dict(card={"license": "mit"}))
    folder = tmp_path / "folder"
    zipfile.ZipFile(archive).extractall(folder)
    assert packed_meta(archive)["card"] == packed_meta(folder)["card"] == {"license": "mit"}
    (tmp_path / "exp").mkdir()
    assert packed_meta(tmp_path / "exp") is None and packed_meta(tmp_path / "absent") is None
    (folder / "meta.json").write_text("{")
    with pytest.raises(PackError, match="meta.json is not valid JSON"):
        packed_meta(folder)


def test_a_member_larger_than_declared_is_refused_before_writing(tmp_path):
    # the repacked member hashes right (meta.json's sha256 updated) but is not the declared size
    archive = make_archive(
        tmp_path / "m.zip",
        {"model.pth": b"\0" * 100_000},
        meta={"size": {"config.yaml": len(CONFIG), "model.pth": 7}},
    )
    with pytest.raises(
        PackError, match="model.pth of .* is 100000 bytes in the zip, but meta.json declares 7"
    ):
        extract_archive(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_totals_over_the_limit_are_refused_before_writing(tmp_path, monkeypatch):
    # a matching sha256 is no licence to fill the disk: the total is bounded, and the bound adjustable
    archive = make_archive(tmp_path / "m.zip", {"model.pth": b"\0" * 100_000})
    with pytest.raises(
        PackError, match=f"unpacks to {100_000 + len(CONFIG)} bytes, more than the limit of 50000"
    ):
        unpack_model(archive, tmp_path / "cache", max_bytes=50_000)
    monkeypatch.setenv(MAX_BYTES_ENV, "50000")
    with pytest.raises(PackError, match=f"set \\${MAX_BYTES_ENV} to allow more"):
        unpack_model(archive, tmp_path / "cache")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    monkeypatch.setenv(MAX_BYTES_ENV, "200000")
    assert unpack_model(archive, tmp_path / "cache")[1].stat().st_size == 100_000
    monkeypatch.setenv(MAX_BYTES_ENV, "lots")
    with pytest.raises(PackError, match="must be a positive whole number"):
        unpack_limits()


def test_too_many_members_are_refused_before_writing(tmp_path, monkeypatch):
    archive = make_archive(tmp_path / "m.zip", {f"files/x/{i}.txt": b"x" for i in range(20)})
    monkeypatch.setenv(MAX_MEMBERS_ENV, "10")
    with pytest.raises(PackError, match=f"holds 23 members, more than the 10 .*{MAX_MEMBERS_ENV}"):
        extract_archive(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []
    assert extract_archive(archive, tmp_path / "out", max_members=30)["sha256"]


def test_links_and_members_under_a_file_are_refused(tmp_path):
    # a symlink entry and a member under it (extracting that raised FileExistsError)
    archive = make_archive(tmp_path / "l.zip", {"files/up/x.txt": b"x"}, links={"files/up": "/etc"})
    with pytest.raises(PackError, match="holds links \\(files/up\\)"):
        unpack_model(archive, tmp_path / "cache")
    archive = make_archive(tmp_path / "n.zip", {"files/a": b"file", "files/a/b": b"under it"})
    with pytest.raises(PackError, match="member files/a/b lies under member files/a"):
        extract_archive(archive, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_an_archive_without_sizes_has_each_member_hashed_before_it_is_written(tmp_path):
    # archives packed before meta.json recorded sizes: a wrong member never reaches the disk
    good = make_archive(tmp_path / "good.zip", {}, sized=False)
    assert extract_archive(good, tmp_path / "good")["sha256"]
    archive = make_archive(
        tmp_path / "m.zip",
        {"model.pth": b"\0" * 50_000},
        sized=False,
        meta={"sha256": json.loads(zipfile.ZipFile(good).read("meta.json"))["sha256"]},
    )
    with pytest.raises(PackError, match="member model.pth of .* fails its sha256 check"):
        extract_archive(archive, tmp_path / "out")
    assert "model.pth" not in written(tmp_path / "out")


def test_a_bad_size_table_is_refused(tmp_path):
    archive = make_archive(tmp_path / "m.zip", {}, meta={"size": {"model.pth": 7}})
    with pytest.raises(PackError, match="meta.json's size must give a byte count for each member"):
        unpack_model(archive, tmp_path / "cache")


def test_a_packed_model_pth_that_runs_code_is_refused_in_one_line(tmp_path):
    from espnet_speechclip.inference import Speech2Image
    from espnet_speechclip.weights import WeightsError

    # a protocol-0 pickle whose loading calls os.mkdir(<tmp>/ran)
    evil = f"cos\nmkdir\n(V{tmp_path / 'ran'}\ntR.".encode()
    archive = make_archive(tmp_path / "m.zip", {"model.pth": evil})
    with pytest.raises(
        WeightsError, match=r"model\.pth: refused: it holds Python objects other than tensors"
    ) as e:
        Speech2Image.from_pretrained(archive, cache_dir=tmp_path / "cache")
    assert "weights_only" not in str(e.value) and not (tmp_path / "ran").exists()
