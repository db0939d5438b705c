"""The inference entry point's options."""

import pytest

from espnet_speechclip.bin import speechclip_inference


def test_inference_needs_exactly_one_way_to_give_the_model(tmp_path, capsys):
    base = ["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "o")]
    for extra in (
        [],
        ["--config", "c.yaml"],
        ["--model", "m.zip", "--config", "c.yaml", "--model_file", "m.pth"],
        ["--model", "m.zip", "--model_file", "m.pth"],
    ):
        with pytest.raises(SystemExit):
            speechclip_inference.main(base + extra)
        assert "--model" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="m.zip"):
        speechclip_inference.main(base + ["--model", str(tmp_path / "m.zip")])


def test_truncated_weights_are_one_line_naming_the_file(tmp_path, capsys):
    """Recipe stage 6 on a checkpoint cut short (e.g. a copy interrupted): one line, no torch traceback."""
    import numpy as np
    import torch

    from espnet_speechclip.data.media import write_wav
    from espnet_speechclip.errors import run_cli

    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "u1.wav", np.zeros(8000, np.float32))
    (data / "wav.scp").write_text(f"u1 {data / 'u1.wav'}\n")
    (data / "utt2img").write_text("u1 i1\n")
    config = tmp_path / "config.yaml"
    config.write_text("model: parallel\nclip_conf: {model_name: ViT-B-32, pretrained: openai}\n")
    torch.save({"w": torch.zeros(1000)}, tmp_path / "full.pth")
    weights = tmp_path / "1epoch.pth"
    weights.write_bytes((tmp_path / "full.pth").read_bytes()[:2000])
    args = ["--config", str(config), "--model_file", str(weights), "--data_dir", str(data)]
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: speechclip_inference.main(args + ["--output_dir", str(tmp_path / "o")]), prog="inf")
    assert e.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"inf: error: {weights}: not a complete PyTorch file, truncated or damaged")
    assert len(err.splitlines()) == 1


def test_audio_that_does_not_open_stops_the_job_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """Recipe stage 6 on a set with a damaged file: one line naming the utterance, and no model loaded."""
    import numpy as np

    from espnet_speechclip.data.media import write_wav
    from espnet_speechclip.errors import run_cli
    from espnet_speechclip.inference import speech2image

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(speech2image.Speech2Image, "__init__", no_model)
    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "u1.wav", np.zeros(8000, np.float32))
    (data / "u2.wav").write_bytes(b"RIFF" + bytes(40))
    (data / "wav.scp").write_text(f"u1 {data / 'u1.wav'}\nu2 {data / 'u2.wav'}\n")
    (data / "utt2img").write_text("u1 i1\nu2 i1\n")
    config = tmp_path / "config.yaml"
    config.write_text("model: parallel\nclip_conf: {model_name: ViT-B-32, pretrained: openai}\n")
    (tmp_path / "m.pth").write_bytes(b"weights")
    args = ["--config", str(config), "--model_file", str(tmp_path / "m.pth"), "--data_dir", str(data)]
    for job in ([], ["--num_splits", "2", "--split", "2"]):
        with pytest.raises(SystemExit) as e:
            run_cli(
                lambda job=job: speechclip_inference.main(args + ["--output_dir", str(tmp_path / "o")] + job),
                prog="inf",
            )
        assert e.value.code == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith(
            f"inf: error: utterance u2 of {data}/wav.scp: audio file {data / 'u2.wav'} cannot be"
        )
        assert len(err.splitlines()) == 1
