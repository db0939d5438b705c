"""sentencepiece's ``spm_train`` command as a Python entry point: the pip package ``sentencepiece`` (an
ESPnet dependency) has the trainer but not the command that ESPnet's ASR recipes call for BPE units.

    python -m espnet_speechclip.bin.spm_train --input=train.txt --vocab_size=100 --model_type=bpe \
        --model_prefix=dump/token_list/bpe_unigram100/bpe --character_coverage=1.0

writes ``<model_prefix>.model`` and ``.vocab`` (creating the folder); then, as in ESPnet's asr.sh,
``python -m espnet2.bin.tokenize_text --token_type bpe --bpemodel <model_prefix>.model ...`` writes the
token list. The options are spm_train's own (``--name=value`` or ``--name value``; see sentencepiece's
documentation). ``--minloglevel`` defaults to 1 here, which keeps the trainer's progress lines out of
the log; warnings and errors still show.
"""

import sys
from pathlib import Path
from typing import Dict, List, Optional

from espnet_speechclip.errors import InputError


def parse_flags(argv: List[str]) -> Dict[str, str]:
    """``["--a=1", "--b", "2"]`` -> ``{"a": "1", "b": "2"}``, the way spm_train reads its flags."""
    flags: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise InputError(f"spm_train takes --name=value options, got {arg!r}")
        if "=" in arg:
            name, value = arg[2:].split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            name, value = arg[2:], argv[i + 1]
            i += 2
        else:  # a bare boolean flag
            name, value = arg[2:], "true"
            i += 1
        flags[name] = value
    return flags


def main(cmd: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if cmd is None else list(cmd)
    if not argv or "-h" in argv or "--help" in argv:
        print(__doc__.strip())
        return
    try:
        flags = parse_flags(argv)
    except ValueError as e:
        sys.exit(f"spm_train: error: {e}")
    for required in ("input", "model_prefix"):
        if required not in flags:
            sys.exit(f"spm_train: error: --{required} is required")
    flags.setdefault("minloglevel", "1")
    Path(flags["model_prefix"]).parent.mkdir(parents=True, exist_ok=True)
    import sentencepiece as spm

    try:
        spm.SentencePieceTrainer.train(**flags)
    except (RuntimeError, ValueError, OSError) as e:  # bad flag or unreadable input: sentencepiece says which
        sys.exit(f"spm_train: error: {e}")


if __name__ == "__main__":
    main()
