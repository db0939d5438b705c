"""Reading released checkpoints without running their code (espnet_speechclip.authors.unpickling)."""

from __future__ import annotations

import os

import pytest
import torch
from authors_reference import _exploit, make_checkpoint

from espnet_speechclip.authors.unpickling import (
    AuthorsCheckpointError,
    UnsafeCheckpointError,
    load_authors_checkpoint,
    to_plain,
)


@pytest.mark.parametrize("zip_format", [True, False])
def test_pickle_with_foreign_global_is_refused_without_running(tmp_path, zip_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"x": _exploit(marker)}},
        path,
        _use_new_zipfile_serialization=zip_format,
    )
    with pytest.raises(UnsafeCheckpointError, match=r"references (posix|os|nt)\.system"):
        load_authors_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    ["builtins.eval", "builtins.getattr", "subprocess.Popen", "torch.load", "torch.storage._load_from_bytes"],
)
def test_other_globals_are_refused_by_name(tmp_path, name):
    module, attr = name.rsplit(".", 1)
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"\x80\x02c" + f"{module}\n{attr}\n".encode() + b")R.")  # GLOBAL, EMPTY_TUPLE, REDUCE
    with pytest.raises(UnsafeCheckpointError, match=name.replace(".", r"\.")):
        load_authors_checkpoint(path)


def test_stand_ins_become_plain_config(towers, tmp_path):
    """Both torch serialisations load; the OrderedNamespace / Namespace stand-ins become dicts, numpy scalars
    numbers, and the pickled WandbLogger an inert record naming its class."""
    for zip_format in (True, False):
        ckpt, _, _ = make_checkpoint(
            towers,
            tmp_path / f"a{zip_format}.ckpt",
            "parallel",
            False,
            _use_new_zipfile_serialization=zip_format,
        )
        loaded = load_authors_checkpoint(ckpt)
        config = to_plain(loaded["hyper_parameters"])["config"]
        assert config["audio_encoder"]["name"] == "hubert"
        assert config["data"]["split_ratio"] == 0.9 and isinstance(config["data"]["split_ratio"], float)
        assert config["parsed_args"] == {"config": "spchclp.yaml", "gpus": 4}
        logger = config["trainer"]["logger"]
        assert logger["__class__"] == "pytorch_lightning.loggers.wandb.WandbLogger"
        assert logger["_agg_default_func"] == {"__global__": "numpy.mean"}
        assert loaded["state_dict"]["audio_encoder.weightedsum_layer.weights"].shape == (3,)


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(AuthorsCheckpointError, match="not a readable PyTorch checkpoint"):
        load_authors_checkpoint(junk)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(AuthorsCheckpointError, match="not a Lightning checkpoint"):
        load_authors_checkpoint(tmp_path / "tensor.pt")
    with pytest.raises(FileNotFoundError):
        load_authors_checkpoint(tmp_path / "missing.ckpt")
