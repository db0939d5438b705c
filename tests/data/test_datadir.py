"""data/datadir: Kaldi-style data dirs written, read back and checked; word alignments (CTM)."""

import logging

import pytest

from espnet_speechclip.data.datadir import (
    DropLog,
    Utterance,
    read_ctm,
    read_datadir,
    read_kv,
    write_ctm,
    write_datadir,
)


def utt(i: int, image: str = "img0", text: str = "a red  square", **kw) -> Utterance:
    fields = dict(
        utt_id=f"u{i}",
        wav_path=f"/w/u{i}.wav",
        text=text,
        speaker="spk",
        image_key=image,
        image_path=f"/i/{image}.jpg",
        num_samples=1600 + i,
    )
    fields.update(kw)
    return Utterance(**fields)


def test_written_lists_are_sorted_and_read_back_as_written(tmp_path):
    utts = [utt(2, "img1"), utt(1), utt(3, "img1")]
    d = write_datadir(tmp_path / "set", utts)
    assert (d / "wav.scp").read_text() == "u1 /w/u1.wav\nu2 /w/u2.wav\nu3 /w/u3.wav\n"
    assert (d / "text").read_text().splitlines()[0] == "u1 a red square"  # white space collapsed
    assert (d / "img.scp").read_text() == "img0 /i/img0.jpg\nimg1 /i/img1.jpg\n"  # one line per image
    assert read_kv(d / "utt2num_samples") == {"u1": "1601", "u2": "1602", "u3": "1603"}
    back = read_datadir(d)
    assert [u.utt_id for u in back] == ["u1", "u2", "u3"]
    assert back[0] == utt(1, text="a red square")


@pytest.mark.parametrize(
    "utts, message",
    [
        ([], "refusing to write an empty data dir"),
        ([utt(1), utt(1)], "duplicate utterance id u1"),
        ([utt(1, text="  ")], "utterance u1 has an empty transcript"),
        (
            [utt(1), utt(2, image_path="/other.jpg")],
            "image key img0 names two files: /i/img0.jpg and /other.jpg",
        ),
        ([utt(1, speaker="two words")], "speaker 'two words' is empty or contains white space"),
        ([utt(1, utt_id="")], "utterance id '' is empty"),
    ],
)
def test_bad_utterances_are_refused_before_writing(tmp_path, utts, message):
    with pytest.raises(ValueError, match=message):
        write_datadir(tmp_path / "set", utts)
    assert not (tmp_path / "set").exists()


def test_read_kv_keeps_spaces_in_values_and_refuses_duplicates(tmp_path):
    path = tmp_path / "text"
    path.write_text("a one two  \n\nb x\n", encoding="utf-8")
    assert read_kv(path) == {"a": "one two", "b": "x"}
    path.write_text("a 1\nb 2\na 3\n")
    with pytest.raises(ValueError, match=r"text:3: duplicate key a"):
        read_kv(path)


def test_read_datadir_names_what_disagrees(tmp_path):
    d = write_datadir(tmp_path / "set", [utt(1), utt(2)])
    (d / "text").write_text("u1 a\n")
    with pytest.raises(ValueError, match=r"set/text and wav.scp disagree on utterances, e.g. \['u2'\]"):
        read_datadir(d)
    d = write_datadir(tmp_path / "set", [utt(1), utt(2)])
    (d / "img.scp").write_text("other /x.jpg\n")
    with pytest.raises(ValueError, match="utterance u1 names image img0, which img.scp lacks"):
        read_datadir(d)
    (d / "utt2spk").unlink()
    with pytest.raises(FileNotFoundError, match="has no utt2spk"):
        read_datadir(d)


def test_ctm_round_trip_in_time_order_to_the_millisecond(tmp_path):
    path = write_ctm(
        tmp_path / "words.ctm",
        {"u2": [("square", 0.5004, 0.9), ("red", 0.1, 0.5004)], "u1": [("a", 0.0, 0.25)]},
    )
    assert path.read_text().splitlines() == [
        "u1 1 0.000 0.250 a",
        "u2 1 0.100 0.400 red",
        "u2 1 0.500 0.400 square",
    ]
    back = read_ctm(path)
    assert list(back) == ["u1", "u2"]
    assert [w for w, _, _ in back["u2"]] == ["red", "square"]
    assert back["u2"][0][2] == pytest.approx(back["u2"][1][1])  # adjacent words still touch
    with pytest.raises(ValueError, match=r"word 'red' has a bad span \(0.5, 0.2\)"):
        write_ctm(tmp_path / "bad.ctm", {"u": [("red", 0.5, 0.2)]})


def test_read_ctm_skips_comments_and_names_a_bad_line(tmp_path):
    path = tmp_path / "words.ctm"
    path.write_text(";; NIST comment\n\nu1 1 0.5 0.2 b 0.9\nu1 1 0.1 0.2 a\n")
    assert read_ctm(path) == {"u1": [("a", 0.1, pytest.approx(0.3)), ("b", 0.5, pytest.approx(0.7))]}
    path.write_text("u1 1 0.1 a\n")
    with pytest.raises(ValueError, match=r"words.ctm:1: not a CTM line .*\(4 fields\)"):
        read_ctm(path)
    path.write_text("u1 1 -0.1 0.2 a\n")
    with pytest.raises(ValueError, match=r"\(negative time\)"):
        read_ctm(path)


def test_drop_log_counts_and_logs_each_drop(caplog):
    log = DropLog("flickr8k train")
    assert log.summary() == "flickr8k train: nothing dropped"
    with caplog.at_level(logging.WARNING):
        log.drop("missing audio", "u1")
        log.drop("missing audio", "u2", "no such file")
        log.drop("empty caption", "u3")
    assert log.summary() == "flickr8k train: dropped 3 (1 empty caption, 2 missing audio)"
    assert "flickr8k train: dropped u2 (missing audio): no such file" in caplog.text
