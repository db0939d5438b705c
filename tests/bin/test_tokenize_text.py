"""bin/tokenize_text: ESPnet's tokenize_text, run as the reuse example runs it."""

from espnet_speechclip.bin import tokenize_text


def test_character_vocabulary_with_added_symbols(tmp_path):
    text = tmp_path / "text"
    text.write_text("u1 aab\nu2 abc\n")  # a 3 times, b twice, c once
    out = tmp_path / "tokens.txt"
    tokenize_text.main(
        [
            *("--token_type", "char", "--field", "2-", "--input", str(text), "--output", str(out)),
            *("--write_vocabulary", "true", "--add_symbol", "<blank>:0", "--add_symbol", "<sos/eos>:-1"),
        ]
    )
    # most frequent first, the added symbols where they were asked for
    assert out.read_text().split() == ["<blank>", "a", "b", "c", "<sos/eos>"]
