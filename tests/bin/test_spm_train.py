"""spm_train as a Python entry point: sentencepiece's flags, a BPE model ESPnet's tokenizer reads."""

import pytest

from espnet_speechclip.bin import spm_train


def test_parse_flags_reads_spm_train_style_options():
    assert spm_train.parse_flags(["--input=a.txt", "--vocab_size", "30", "--split_digits"]) == {
        "input": "a.txt",
        "vocab_size": "30",
        "split_digits": "true",
    }
    with pytest.raises(ValueError, match="--name=value"):
        spm_train.parse_flags(["a.txt"])


def test_trains_a_bpe_model_that_espnets_tokenizer_uses(tmp_path, capfd):
    from espnet2.text.sentencepiece_tokenizer import SentencepiecesTokenizer

    text = tmp_path / "train.txt"
    words = ["a red square", "a blue circle", "there is a big green star", "a small yellow cross"]
    text.write_text("".join(f"{w}\n" for w in words * 20))
    prefix = tmp_path / "bpe" / "bpe"  # the folder is created
    spm_train.main([f"--input={text}", "--vocab_size=60", "--model_type=bpe", f"--model_prefix={prefix}"])
    tokenizer = SentencepiecesTokenizer(f"{prefix}.model")
    tokens = tokenizer.text2tokens("a red star")
    assert tokenizer.tokens2text(tokens) == "a red star" and len(tokens) < len("a red star")
    assert capfd.readouterr().err == ""  # the trainer's progress lines are off by default

    with pytest.raises(SystemExit, match="model_prefix is required"):
        spm_train.main([f"--input={text}"])
    with pytest.raises(SystemExit, match="nope.txt"):
        spm_train.main([f"--input={tmp_path / 'nope.txt'}", f"--model_prefix={prefix}"])
