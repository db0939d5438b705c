"""RetrievalTrainer: one mixed precision (the config's amp_dtype) in training steps and validation."""

import pytest
import torch
from helpers import TINY


@pytest.fixture(scope="module")
def parser():
    from espnet_speechclip.training.task import SpeechCLIPTask

    return SpeechCLIPTask.get_parser()


def recording_model(tiny_clip, seen):
    """A tiny parallel SpeechCLIP whose speech pass records the CUDA autocast state it runs under (on a
    machine without CUDA, autocast is disabled but keeps the dtype it was asked for)."""
    from espnet_speechclip.config import read_config
    from espnet_speechclip.models.builder import build_model

    config = read_config(TINY / "parallel.yaml")
    config["clip_conf"] = dict(tiny_clip)
    model = build_model(config)
    encode = model.forward_speech

    def forward_speech(*args, **kwargs):
        seen.append(torch.get_autocast_dtype("cuda"))
        return encode(*args, **kwargs)

    model.forward_speech = forward_speech
    return model


def batch(model, n: int = 4):
    torch.manual_seed(0)
    return {
        "speech": torch.randn(n, 4000),
        "speech_lengths": torch.tensor([4000, 3500, 3000, 2500][:n]),
        "image_id": torch.arange(n),
        "image_emb": torch.randn(n, model.text_encoder.embed_dim),
    }


@pytest.mark.parametrize("amp_dtype,expected", [(None, torch.float16), ("bfloat16", torch.bfloat16)])
def test_training_and_validation_run_in_the_configured_precision(
    parser, tiny_clip, monkeypatch, amp_dtype, expected
):
    """ESPnet's Trainer autocasts training steps to bf16 wherever the GPU supports it, and fp16 elsewhere;
    validation used plain autocast (fp16). The config's amp_dtype (default and paper: float16, as the
    paper trained) now decides both."""
    from espnet2.train import trainer as espnet_trainer
    from espnet2.train.distributed_utils import DistributedOption
    from espnet2.train.reporter import Reporter

    from espnet_speechclip.training.trainer import RetrievalTrainer

    # what ESPnet's Trainer picks on a bf16-capable GPU (H100/H200)
    monkeypatch.setattr(espnet_trainer, "autocast_args", {"dtype": torch.bfloat16})
    argv = ["--config", str(TINY / "parallel.yaml"), "--use_amp", "true"]
    args = parser.parse_args(argv + (["--amp_dtype", amp_dtype] if amp_dtype else []))
    options = RetrievalTrainer.build_options(args)
    assert options.amp_dtype == (amp_dtype or "float16")
    seen = []
    model = recording_model(tiny_clip, seen)
    reporter = Reporter()
    reporter.set_epoch(1)
    data = [([f"u{i}" for i in range(4)], batch(model))]
    with reporter.observe("train") as sub:
        RetrievalTrainer.train_one_epoch(
            model=model,
            iterator=data,
            optimizers=[torch.optim.Adam(model.parameters(), lr=1e-3)],
            schedulers=[None],
            scaler=None,
            reporter=sub,
            summary_writer=None,
            options=options,
            distributed_option=DistributedOption(distributed=False),
        )
    trained = list(seen)
    with reporter.observe("valid") as sub:
        RetrievalTrainer.validate_one_epoch(
            model=model,
            iterator=data,
            reporter=sub,
            options=options,
            distributed_option=DistributedOption(distributed=False),
        )
    assert trained == [expected]
    assert seen[1:] == [expected]
    assert espnet_trainer.autocast_args == {"dtype": torch.bfloat16}  # put back after the epoch


def test_unknown_amp_dtype_is_refused(parser):
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", str(TINY / "parallel.yaml"), "--amp_dtype", "float8"])
