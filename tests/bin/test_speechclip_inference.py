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
