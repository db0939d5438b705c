"""index/collection: a folder, an scp or a list file as sorted items; the shard cut and who embeds what."""

import os

import pytest

from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.index.collection import (
    IMAGE,
    SPEECH,
    Item,
    chunks,
    folders,
    mine,
    parse_part,
    read_collection,
)


def test_a_folder_is_its_files_of_the_modality_recursively_sorted(tmp_path):
    for name in ["b.PNG", "a/c.jpg", "a/d.wav", "notes.txt", "z.flac"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    images = read_collection(tmp_path, IMAGE)
    assert [os.path.relpath(it.path, tmp_path) for it in images] == ["a/c.jpg", "b.PNG"]
    assert all(it.key == it.path for it in images)
    speech = read_collection(tmp_path, SPEECH)
    assert [os.path.relpath(it.path, tmp_path) for it in speech] == ["a/d.wav", "z.flac"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        read_collection(tmp_path / "empty", IMAGE)


def test_an_scp_is_keyed_and_a_list_is_by_path(tmp_path):
    scp = tmp_path / "wav.scp"
    scp.write_text("u2 /data/two.wav\n\nu1  /data/one file.wav\n")
    assert read_collection(scp, SPEECH) == [Item("u1", "/data/one file.wav"), Item("u2", "/data/two.wav")]
    listing = tmp_path / "list.txt"
    listing.write_text("/p/b.jpg\n/p/a.jpg\n")
    assert read_collection(listing, IMAGE) == [Item("/p/a.jpg", "/p/a.jpg"), Item("/p/b.jpg", "/p/b.jpg")]


@pytest.mark.parametrize(
    "text, message",
    [
        ("u1\n", r"wav.scp:1: expected 'key path', got 'u1'"),
        ("u1 /a.wav\nu1 /b.wav\n", r"wav.scp:2: u1 is listed twice"),
        ("u1 sox /a.wav -t wav - |\n", r"wav.scp:1: u1 is a command, not a file"),
        ("\n\n", r"holds no speech files"),
    ],
)
def test_a_bad_scp_is_one_line_naming_the_line(tmp_path, text, message):
    scp = tmp_path / "wav.scp"
    scp.write_text(text)
    with pytest.raises(InputError, match=message):
        read_collection(scp, SPEECH)


def test_a_missing_source_is_said(tmp_path):
    with pytest.raises(MissingFileError, match="neither a folder nor a list file"):
        read_collection(tmp_path / "nope", IMAGE)


def test_shards_cut_the_list_and_the_processes_share_them_all_once():
    items = [Item(str(i), str(i)) for i in range(10)]
    cut = chunks(items, 4, first=3)
    assert [(j, [it.key for it in part]) for j, part in cut] == [
        (3, ["0", "1", "2", "3"]),
        (4, ["4", "5", "6", "7"]),
        (5, ["8", "9"]),
    ]
    with pytest.raises(InputError, match="at least 1"):
        chunks(items, 0)
    # N processes embed every shard exactly once
    for n in (1, 2, 3, 7):
        owners = {j: [i for i in range(1, n + 1) if mine(j, (i, n))] for j in range(10)}
        assert all(len(o) == 1 for o in owners.values()), (n, owners)


@pytest.mark.parametrize("text", ["0/2", "3/2", "1", "a/b", "1/2/3"])
def test_a_bad_part_is_refused(text):
    with pytest.raises(InputError, match="--shard"):
        parse_part(text)


def test_parse_part():
    assert parse_part("2/8") == (2, 8) and parse_part("1/1") == (1, 1)


def test_folders_are_the_fewest_that_hold_every_path(tmp_path):
    paths = [tmp_path / "a" / "x.jpg", tmp_path / "a" / "b" / "y.jpg", tmp_path / "ab" / "z.jpg"]
    # "ab" is not inside "a" although its name starts with it
    assert folders([str(p) for p in paths]) == [str(tmp_path / "a"), str(tmp_path / "ab")]
