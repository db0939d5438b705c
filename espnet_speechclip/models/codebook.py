"""The cascaded model's codebook: which CLIP subwords a keyword may become.

Either the full CLIP vocabulary (49405 ids after removing pad/SOT/EOT) or the subwords that occur in the
TRAINING transcripts (the authors computed theirs from all captions, test included; we do not).
A codebook file has one ``<id> <subword>`` line per entry; the subword column makes the file readable and
lets a load check that the file was made with the same BPE vocabulary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, List

from espnet_speechclip.errors import InputError, MissingFileError
from espnet_speechclip.models.clip import SPECIAL_IDS, decode_token, text_token_ids


def codebook_from_texts(texts: Iterable[str]) -> List[int]:
    """Sorted ids of every CLIP subword in ``texts`` (special tokens excluded)."""
    ids = set()
    for text in texts:
        ids.update(text_token_ids(text))
    return sorted(ids - set(SPECIAL_IDS))


def full_codebook(vocab_size: int) -> List[int]:
    return [i for i in range(vocab_size) if i not in SPECIAL_IDS]


def write_codebook(path: str | Path, ids: Iterable[int]) -> None:
    ids = list(ids)
    if not ids:
        raise InputError(f"refusing to write an empty codebook {path}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for i in ids:
            f.write(f"{i} {decode_token(i)}\n")


def read_codebook(path: str | Path, vocab_size: int) -> List[int]:
    """Read and validate a codebook file against a CLIP vocabulary of ``vocab_size`` ids."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"codebook file {path} does not exist")
    ids: List[int] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                token_id = int(fields[0])
            except ValueError:
                raise InputError(
                    f"{path}:{lineno}: expected '<id> <subword>', got {line.strip()!r}"
                ) from None
            if not 0 <= token_id < vocab_size:
                raise InputError(
                    f"{path}:{lineno}: id {token_id} is outside the CLIP vocabulary (size {vocab_size})"
                )
            if token_id in SPECIAL_IDS:
                raise InputError(f"{path}:{lineno}: id {token_id} is a special token and cannot be a keyword")
            if len(fields) > 1 and fields[1] != decode_token(token_id):
                raise InputError(
                    f"{path}:{lineno}: id {token_id} is {decode_token(token_id)!r} in CLIP's BPE vocabulary, "
                    f"but the file says {fields[1]!r}: it was made with another vocabulary"
                )
            ids.append(token_id)
    if not ids:
        raise InputError(f"codebook file {path} is empty")
    if len(set(ids)) != len(ids):
        raise InputError(f"codebook file {path} repeats ids")
    return ids
