"""The query CLI over a packed model."""

import re
from pathlib import Path

import pytest

from espnet_speechclip.bin import query
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.speech2image import Hit, Speech2Image


def test_query_cli_prints_ranked_images_and_keywords(sc, capsys, tmp_path):
    img_scp = read_kv(sc["data"] / "img.scp")
    images_dir = Path(next(iter(img_scp.values()))).parent
    wav = next(iter(read_kv(sc["data"] / "wav.scp").values()))
    texts = tmp_path / "texts.txt"
    texts.write_text("a red square\na green square\n\na blue square\n")
    query.main(
        [
            "--model",
            str(sc["archive"]),
            "--speech",
            wav,
            "--images",
            str(images_dir),
            "--topk",
            "3",
            "--texts",
            str(texts),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"query: {wav}") and "parallel branch" in out[0]
    assert out[1] == "images (top 3 of 4):"
    rows = [re.match(r"^\s+(\d)\s+([+-]\d\.\d{4})\s+(\S+)$", line) for line in out[2:5]]
    assert all(rows) and [int(r[1]) for r in rows] == [1, 2, 3]
    pipe = Speech2Image.from_pretrained(sc["archive"])
    hits = pipe.retrieve_images(wav, sorted(str(p) for p in images_dir.iterdir()), topk=3)
    assert [r[3] for r in rows] == [h.item for h in hits]
    assert [float(r[2]) for r in rows] == pytest.approx([h.score for h in hits], abs=1e-4)
    # each keyword with its cosine score and the seconds of the utterance it came from
    assert (
        out[5].startswith("keywords: ")
        and len(re.findall(r"\(\d\.\d{3}\) \d+\.\d\d-\d+\.\d\ds", out[5])) == 4
    )
    assert out[6] == "texts (top 3 of 3):" and len(out) == 10
    assert isinstance(hits[0], Hit)

    # a bad input ends with a message naming it, not a traceback
    with pytest.raises(SystemExit) as exit_info:
        query.main(
            [
                "--model",
                str(sc["archive"]),
                "--speech",
                str(tmp_path / "nope.wav"),
                "--images",
                str(images_dir),
            ]
        )
    assert exit_info.value.code == 1
    assert f"audio file {tmp_path / 'nope.wav'} does not exist" in capsys.readouterr().err
