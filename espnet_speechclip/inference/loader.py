"""Where a trained SpeechCLIP comes from: a packed archive or an experiment folder -> (config, weights).

:meth:`espnet_speechclip.inference.speech2image.Speech2Image.from_pretrained` resolves its source here;
nothing else needs to know the layouts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

PathLike = Union[str, Path]

# Weights an experiment folder is read from, best first: the checkpoint selected by dev mean R@10, else
# the last epoch's.
WEIGHT_FILES = ("valid.mean_r10.best.pth", "latest.pth")


def find_weights(exp_dir: PathLike) -> Path:
    """The weights of an experiment folder: ``valid.mean_r10.best.pth``, else ``latest.pth``."""
    for name in WEIGHT_FILES:
        if (Path(exp_dir) / name).is_file():
            return Path(exp_dir) / name
    raise FileNotFoundError(f"{exp_dir} holds none of {', '.join(WEIGHT_FILES)}: give model_file")


def resolve_model(
    source: PathLike, model_file: Optional[PathLike] = None, cache_dir: Optional[PathLike] = None
) -> Tuple[Path, Path]:
    """``(config.yaml, weights)`` of a packed archive (extracted once into the unpack cache, see
    :func:`espnet_speechclip.inference.packing.unpack_model`) or of an experiment folder (``model_file``,
    default :func:`find_weights`; relative paths in its config are relative to the current directory,
    as for training).

    Raises:
        FileNotFoundError: no such archive / folder / config / weights.
        PackError: a corrupt or tampered archive.
    """
    path = Path(source)
    if path.is_dir():
        config = path / "config.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"experiment folder {path} has no config.yaml")
        weights = Path(model_file) if model_file is not None else find_weights(path)
        if not weights.is_file():
            raise FileNotFoundError(f"model file {weights} does not exist")
        return config, weights
    if path.is_file():
        if model_file is not None:
            raise ValueError(f"{path} is a packed archive with its own weights: do not give model_file")
        from espnet_speechclip.inference.packing import unpack_model

        return unpack_model(path, cache_dir)
    raise FileNotFoundError(f"SpeechCLIP model {path} does not exist (a packed .zip or an exp folder)")


def model_identity(config_file: PathLike, model_file: PathLike, hashes=None) -> dict:
    """Which trained model ``(config, weights)`` is, by content: the weights' sha256 and a digest of the
    options the model is built from (local files such as the CLIP weights or the codebook by content,
    see :func:`espnet_speechclip.config.training_options`). The same model from an experiment folder or
    from its packed archive has the same identity. Decode folders and results record it."""
    from espnet_speechclip.config import read_config, training_options
    from espnet_speechclip.files import sha256_file
    from espnet_speechclip.provenance import digest

    options = training_options(read_config(config_file), hashes, model_only=True)
    return {"weights": sha256_file(model_file), "options": digest(options)}
