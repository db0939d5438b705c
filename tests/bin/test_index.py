"""python -m espnet_speechclip.bin.index and query --index: a collection of recordings, built with a part
left unreadable, searched by text and by image; errors as one line."""

import json

import numpy as np
import pytest
import soundfile as sf
from helpers.corpora import make_photos

from espnet_speechclip.bin import index as index_cli
from espnet_speechclip.bin import query as query_cli
from espnet_speechclip.errors import run_cli


@pytest.fixture()
def recordings(tmp_path):
    folder = tmp_path / "talks"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        sf.write(str(folder / f"talk_{i}.wav"), (0.1 * rng.standard_normal(4000 + 800 * i)), 16000)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nothing")
    return folder


def _build(model, recordings, out, *extra):
    index_cli.main(["build", "--model", str(model), "--speech", str(recordings), "--out", str(out), *extra])


def test_build_a_speech_index_and_query_it_by_text_and_image(parallel_exp, recordings, tmp_path, capsys):
    out = tmp_path / "talks.idx"
    _build(parallel_exp, recordings, out, "--shard_size", "2", "--no_progress")
    printed = capsys.readouterr().out
    assert "3 shard(s) embedded" in printed and "1 file(s) could not be read" in printed
    manifest = json.loads((out / "index.json").read_text())
    assert manifest["count"] == 5 and manifest["made_from"]["branch"] is None  # the model's first branch
    assert sorted(p.name for p in (out / "speech_emb").iterdir())[0] == "speech_emb_00000.npy"
    assert (out / "unreadable.tsv").read_text().startswith(str(recordings / "broken.wav"))

    query_cli.main(
        ["--model", str(parallel_exp), "--index", str(out), "--text", "a red circle", "--topk", "3"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("speech files (top 3 of 5)") and lines[2].split()[-1].endswith(".wav")
    photo = make_photos(tmp_path / "p", 1)[0]
    query_cli.main(["--model", str(parallel_exp), "--index", str(out), "--image", str(photo)])
    assert "speech files (top 5 of 5)" in capsys.readouterr().out


def test_a_damaged_index_is_one_line_naming_the_file(parallel_exp, recordings, tmp_path, capsys):
    out = tmp_path / "talks.idx"
    _build(parallel_exp, recordings, out, "--no_progress")
    capsys.readouterr()
    f = out / "index" / "speech.index"
    f.write_bytes(f.read_bytes()[:40])
    with pytest.raises(SystemExit):
        run_cli(
            lambda: query_cli.main(["--model", str(parallel_exp), "--index", str(out), "--text", "x"]),
            "query",
        )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"query: error: {f} is not a readable FAISS index")
