"""The one loader of weight files (``torch.save``'d state dicts and checkpoints).

Every model file SpeechCLIP reads (a trained ``*.pth`` given to inference, ``query`` or the recipe, the
``model.pth`` of a packed model, an experiment's ``checkpoint.pth`` on resume) is read here, so that each
way a file can be unusable is one line naming it (see :mod:`espnet_speechclip.errors`) instead of a
traceback from deep inside torch: a missing file, a truncated or damaged one, a file that is no PyTorch
file, a pickle that would run code (refused: weights are tensors), or something other than a state dict.
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Union

import torch

from espnet_speechclip.errors import InputError, MissingFileError

PathLike = Union[str, Path]


class WeightsError(InputError):
    """A weights file that cannot be used; the message starts with the file's path."""


def _first_line(error: BaseException) -> str:
    """The error's first sentence (torch's go on with advice about saving that fits no SpeechCLIP file)."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0].split('. ')[0].rstrip('.')}"


def load_file(
    path: PathLike, what: str = "weights file", trusted_pickle: bool = False, mmap: bool = False
) -> Any:
    """Whatever ``torch.save`` wrote to ``path``, on the CPU.

    Only tensors and plain containers are unpickled, unless ``trusted_pickle`` (for the files training
    itself wrote into an experiment folder, such as ``checkpoint.pth`` with its optimizer states: those
    are read as ESPnet reads them). ``mmap``: map a zip-format file's tensors instead of reading them
    (a GB upstream checkpoint of which only shapes are needed).

    Raises:
        FileNotFoundError: no such file (the message says ``what`` it is).
        WeightsError: a truncated, damaged or non-PyTorch file, or (not ``trusted_pickle``) one that
            holds Python objects other than tensors, which loading would run as code.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} {path} does not exist")
    try:
        mapped = mmap and zipfile.is_zipfile(path)  # torch maps only its zip format
        return torch.load(path, map_location="cpu", weights_only=not trusted_pickle, mmap=mapped)
    except pickle.UnpicklingError as e:
        if "Weights only load failed" in str(e):
            # torch's own text suggests weights_only=False, i.e. running the file's code: never that
            raise WeightsError(
                f"{path}: refused: it holds Python objects other than tensors, which loading would run "
                f"as code; a {what} holds only tensors (a state dict)"
            ) from None
        raise WeightsError(
            f"{path}: not a complete PyTorch file, truncated or damaged ({_first_line(e)})"
        ) from e
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, AttributeError, ImportError) as e:
        raise WeightsError(
            f"{path}: not a complete PyTorch file, truncated or damaged ({_first_line(e)})"
        ) from e


def load_weights(path: PathLike, what: str = "weights file") -> Dict[str, torch.Tensor]:
    """The state dict (parameter name -> tensor) in ``path``, read without running any code.

    Raises:
        FileNotFoundError: no such file.
        WeightsError: see :func:`load_file`; or the file holds something other than a state dict.
    """
    state = load_file(path, what)
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise WeightsError(
            f"{path}: not a state dict (parameter names mapped to tensors) but a {type(state).__name__}"
        )
    return dict(state)
