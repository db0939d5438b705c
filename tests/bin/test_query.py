"""The query CLI over a packed model."""

import re
from pathlib import Path

import pytest

from espnet_speechclip.bin import query
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.result_types import Hit
from espnet_speechclip.inference.speech2image import Speech2Image


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
    # keywords: subword, score and where in the utterance it was heard, as the API says
    assert out[5] == "keywords (4; score, heard from-to seconds):"
    # (a tiny untrained model's attention is nearly even: such a keyword is printed as not localised)
    rows = [
        re.match(r"^\s+(\d)\s+(\S+)\s+(\d\.\d{3})\s+(?:(\d+\.\d{2})-(\d+\.\d{2})|not localised)$", line)
        for line in out[6:10]
    ]
    assert all(rows), out[6:10]
    keywords = pipe.keywords(wav, timing=True)
    assert [r[2] for r in rows] == [k.token for k in keywords]
    assert [float(r[3]) for r in rows] == pytest.approx([k.score for k in keywords], abs=1e-3)
    assert [None if r[4] is None else (float(r[4]), float(r[5])) for r in rows] == [
        None if k.start is None else (round(k.start, 2), round(k.end, 2)) for k in keywords
    ]
    assert out[10] == "texts (top 3 of 3):" and len(out) == 14
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


@pytest.mark.parametrize("bad", ["speech", "image", "model"])
def test_query_checks_its_inputs_before_loading_the_model(tmp_path, capsys, monkeypatch, bad):
    from helpers.corpora import make_garbage, make_jpg, make_wav

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the inputs were checked")

    monkeypatch.setattr(Speech2Image, "from_pretrained", no_loading)
    make_wav(tmp_path / "q.wav")
    make_jpg(tmp_path / "photos" / "a.jpg")
    make_garbage(tmp_path / "photos" / "b.jpg")
    model = tmp_path / "exp"
    model.mkdir()
    args = {
        "speech": [
            "--model",
            str(model),
            "--speech",
            str(tmp_path / "nope.wav"),
            "--images",
            str(tmp_path / "photos" / "a.jpg"),
        ],
        "image": [
            "--model",
            str(model),
            "--speech",
            str(tmp_path / "q.wav"),
            "--images",
            str(tmp_path / "photos"),
        ],
        "model": ["--model", str(tmp_path / "nope"), "--speech", str(tmp_path / "q.wav")],
    }[bad]
    with pytest.raises(SystemExit) as exit_info:
        query.main(args)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err
    expected = {
        "speech": "nope.wav does not exist",
        "image": "b.jpg cannot be decoded",
        "model": "nope does not exist",
    }
    assert expected[bad] in err


def test_truncated_weights_are_one_line_naming_the_file(tmp_path, capsys):
    import numpy as np
    import torch

    from espnet_speechclip.data.media import write_wav

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "config.yaml").write_text(
        "model: parallel\nclip_conf: {model_name: ViT-B-32, pretrained: openai}\n"
    )
    torch.save({"w": torch.zeros(1000)}, tmp_path / "full.pth")
    weights = exp / "valid.mean_r10.best.pth"
    weights.write_bytes((tmp_path / "full.pth").read_bytes()[:2000])
    write_wav(tmp_path / "u.wav", np.zeros(8000, np.float32))
    (tmp_path / "t.txt").write_text("a dog\n")
    with pytest.raises(SystemExit) as e:
        query.main(
            ["--model", str(exp), "--speech", str(tmp_path / "u.wav"), "--texts", str(tmp_path / "t.txt")]
        )
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        f"error: {weights}: not a complete PyTorch file, truncated or damaged (RuntimeError: "
        "PytorchStreamReader failed reading zip archive: failed finding central directory)"
    )
    assert len(err.splitlines()) == 1
