"""The speechclip frontend in ESPnet ASR: equal to the SpeechCLIP speech branch, frozen and
fine-tuned, and the ``--init_param`` route."""

from pathlib import Path

import pytest
import torch
from helpers import ROOT

from espnet_speechclip.bin import asr_inference, asr_train
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.inference.speech2image import Speech2Image

ASR_CONF = ROOT / "conf" / "asr" / "speechclip_ctc.yaml"


def run_asr_train(sc, out: Path, *extra: str) -> dict:
    """A tiny CTC ASR (1 transformer block, width 16) for one epoch; returns the epoch's weights."""
    d, root = sc["data"], sc["root"]
    data = []
    for mode in ("train", "valid"):
        data += [
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/wav.scp,speech,sound",
            f"--{mode}_data_path_and_name_and_type",
            f"{root}/asr_text,text,text",
            f"--{mode}_shape_file",
            f"{d}/utt2num_samples",
        ]
    asr_train.main(
        [
            "--config",
            str(ASR_CONF),
            "--output_dir",
            str(out),
            "--ngpu",
            "0",
            "--token_type",
            "char",  # the fixture's targets: colour words as characters
            "--token_list",
            str(root / "tokens.txt"),
            "--max_epoch",
            "1",
            "--batch_size",
            "4",
            "--num_workers",
            "0",
            "--encoder_conf",
            "output_size=16",
            "--encoder_conf",
            "attention_heads=2",
            "--encoder_conf",
            "linear_units=16",
            "--encoder_conf",
            "num_blocks=1",
            "--optim_conf",
            "lr=0.01",
            "--scheduler_conf",
            "warmup_steps=1",
            *data,
            *extra,
        ]
    )
    return torch.load(out / "1epoch.pth", map_location="cpu", weights_only=True)


def frontend_keys(asr_state: dict, sc_state: dict, branch: str = "parallel") -> dict:
    """ASR checkpoint key -> SpeechCLIP checkpoint key, for every frontend weight."""
    out = {}
    for key in asr_state:
        if key.startswith("frontend.speech_encoder."):
            out[key] = key[len("frontend.") :]
        elif key.startswith("frontend.branch."):
            out[key] = f"{branch}." + key[len("frontend.branch.") :]
    return out


# ------------------------------------------------------------------------------ ESPnet frontend


def test_frontend_equals_the_speechclip_speech_branch(sc, caplog):
    from espnet_speechclip.data.media import load_audio
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend
    from espnet_speechclip.inference.result_types import pad_batch

    model = Speech2Image(sc["exp"] / "config.yaml", sc["weights"]).model
    wavs = [load_audio(p) for p in list(read_kv(sc["data"] / "wav.scp").values())[:3]]
    speech, lengths = pad_batch(wavs)
    captured = {}
    model.parallel.layers[-1].register_forward_hook(lambda m, i, o: captured.update(x=o))
    with torch.no_grad():
        feats, flen = model.speech_encoder(speech, lengths)
        model.parallel(feats, flen)
    for archive in (False, True):
        src = (
            dict(packed_model=str(sc["archive"]))
            if archive
            else dict(config_file=str(sc["exp"] / "config.yaml"), model_file=str(sc["weights"]))
        )
        fe = SpeechCLIPFrontend(**src, branch_layers=True)
        state = fe.state_dict()
        assert not [k for k in state if k.startswith("speech_encoder.upstream.")]
        for key, value in state.items():
            ref = sc["state"][key.replace("branch.", "parallel.")]
            assert torch.equal(value, ref), key
        assert fe.output_size() == 32 and not fe.training
        fe.train()
        assert not fe.training and not any(p.requires_grad for p in fe.parameters())
        with torch.no_grad():
            out, out_len = fe(speech, lengths)
        assert torch.equal(out_len, flen)
        torch.testing.assert_close(out, captured["x"][:, 1:], rtol=0, atol=1e-6)
    plain = SpeechCLIPFrontend(config_file=str(sc["exp"] / "config.yaml"), model_file=str(sc["weights"]))
    # the frontend builds CLIP without weights on purpose (it never uses it): no warning says otherwise
    assert not [r for r in caplog.records if "initialized randomly" in r.getMessage()]
    with torch.no_grad():
        torch.testing.assert_close(plain(speech, lengths)[0], feats, rtol=0, atol=1e-6)

    # ESPnet's --init re-initialises every parameter, then asks the frontend to restore its own
    from espnet2.torch_utils.initialize import initialize

    before = {k: v.clone() for k, v in plain.speech_encoder.state_dict().items()}
    holder = torch.nn.Module()
    holder.frontend = plain
    initialize(holder, "xavier_uniform")
    after = plain.speech_encoder.state_dict()
    assert any(k.startswith("upstream.") for k in after)
    for key, value in before.items():
        assert torch.equal(after[key], value), key

    with pytest.raises(ValueError, match="16 kHz"):
        SpeechCLIPFrontend(packed_model=str(sc["archive"]), fs="8k")
    with pytest.raises(ValueError, match="not both"):
        SpeechCLIPFrontend(packed_model=str(sc["archive"]), config_file=str(sc["exp"] / "config.yaml"))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        SpeechCLIPFrontend(config_file=str(sc["root"] / "nope.yaml"))


@pytest.mark.parametrize("model", ["cascaded_plus", "hybrid_plus"])
def test_frontend_branch_layers_of_speechclip_plus(model, tiny_clip, tmp_path):
    """SpeechCLIP+'s attention layer as frame encoder: over the frames alone (cascaded+), or with the
    CLS in front whose position is dropped (hybrid+), exactly as inside the model."""
    import yaml

    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    config = yaml.safe_load((ROOT / "conf" / "tiny" / f"{model}.yaml").read_text())
    config["clip_conf"] = dict(tiny_clip)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    trained = Speech2Image(tmp_path / "config.yaml").model
    torch.save(trained.state_dict(), tmp_path / "model.pth")
    fe = SpeechCLIPFrontend(
        config_file=str(tmp_path / "config.yaml"), model_file=str(tmp_path / "model.pth"), branch_layers=True
    )
    captured = {}
    trained.cascaded.layers[-1].register_forward_hook(lambda m, i, o: captured.update(x=o))
    speech, lengths = torch.randn(2, 12000), torch.tensor([12000, 7000])
    with torch.no_grad():
        trained.eval().encode_speech(speech, lengths)
        out, _ = fe(speech, lengths)
    prefix = 1 if model == "hybrid_plus" else 0
    torch.testing.assert_close(out, captured["x"][:, prefix:], rtol=0, atol=1e-6)


def test_asr_frozen_and_finetuned_frontend(sc, tmp_path):
    conf = [
        "--frontend_conf",
        f"config_file={sc['exp'] / 'config.yaml'}",
        "--frontend_conf",
        f"model_file={sc['weights']}",
    ]
    frozen = run_asr_train(
        sc, tmp_path / "frozen", *conf, "--frontend_conf", "freeze=true", "--init", "xavier_uniform"
    )
    assert not [k for k in frozen if k.startswith("frontend.speech_encoder.upstream.")]
    keys = frontend_keys(frozen, sc["state"])
    assert (
        "frontend.speech_encoder.layer_sum.weights" in keys
        and "frontend.speech_encoder.projection.weight" in keys
    )
    for key, ref in keys.items():
        assert torch.equal(frozen[key], sc["state"][ref]), key

    tuned = run_asr_train(
        sc,
        tmp_path / "tuned",
        "--frontend_conf",
        f"packed_model={sc['archive']}",
        "--frontend_conf",
        "freeze=false",
        "--frontend_conf",
        "branch_layers=true",
    )
    keys = frontend_keys(tuned, sc["state"])
    assert "frontend.branch.cls" in keys and "frontend.branch.layers.0.linear1.weight" in keys
    for key, ref in keys.items():
        assert not torch.equal(tuned[key], sc["state"][ref]), f"{key} did not train"

    # ESPnet's own ASR inference rebuilds the frontend from the config and loads the checkpoint strictly
    dec = tmp_path / "decode"
    asr_inference.main(
        [
            "--asr_train_config",
            str(tmp_path / "tuned" / "config.yaml"),
            "--asr_model_file",
            str(tmp_path / "tuned" / "1epoch.pth"),
            "--ngpu",
            "0",
            "--data_path_and_name_and_type",
            f"{sc['data']}/wav.scp,speech,sound",
            "--output_dir",
            str(dec),
            "--ctc_weight",
            "1.0",
            "--beam_size",
            "2",
        ]
    )
    assert len((dec / "1best_recog" / "text").read_text().splitlines()) == 8


def test_asr_init_param_route(sc, tmp_path):
    ckpt = sc["weights"]
    state = run_asr_train(
        sc,
        tmp_path / "asr",
        "--frontend_conf",
        f"config_file={sc['exp'] / 'config.yaml'}",
        "--frontend_conf",
        "branch_layers=true",
        # one --init_param with both (a second --init_param would replace the first)
        "--init_param",
        f"{ckpt}:speech_encoder:frontend.speech_encoder",
        f"{ckpt}:parallel:frontend.branch:parallel.final_norm,parallel.projection",
    )
    keys = frontend_keys(state, sc["state"])
    assert len(keys) == len(
        [k for k in sc["state"] if k.startswith(("speech_encoder.", "parallel.layers.", "parallel.cls"))]
    )
    for key, ref in keys.items():
        assert torch.equal(state[key], sc["state"][ref]), key


# ------------------------------------------------------------------------------------ Python API
