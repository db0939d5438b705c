"""SpeechCLIP's speech encoder outside the recipe: ESPnet ASR with ``frontend: speechclip`` (and the
``--init_param`` route), the Python API against the inference entry, and the query CLI.

One tiny hybrid SpeechCLIP (local tiny HuBERT, tiny CLIP) is trained in-process through the real
entry point and packed; everything else reuses it.
"""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from espnet_speechclip.bin import asr_inference, asr_train, query, speechclip_inference
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MediaError, write_wav
from espnet_speechclip.inference.speech2image import Hit, Speech2Image

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "conf" / "tiny"
ASR_CONF = ROOT / "conf" / "asr" / "speechclip_ctc.yaml"


@pytest.fixture(scope="module")
def sc(tmp_path_factory, tiny_clip, tiny_hubert):
    """A tiny hybrid SpeechCLIP trained 1 epoch (exp dir + packed archive) and its data."""
    from helpers import train_tiny_speechclip

    from espnet_speechclip.inference.packing import pack_model

    root = tmp_path_factory.mktemp("reuse")
    out = train_tiny_speechclip(
        root,
        tiny_clip,
        TINY / "hybrid.yaml",
        tiny_hubert,
        extra=[
            # HuBERT's 20 ms frames, so that CTC has a frame per character
            "--speech_encoder_conf",
            "subsampling=1",
            "--speech_encoder_conf",
            "positional=false",
        ],
    )
    exp, data = out["exp"], out["data"]
    weights = exp / "valid.mean_r10.best.pth"
    archive = pack_model(exp / "config.yaml", weights, root / "packed" / "model.zip")

    # ASR targets: the colour word of each caption, as characters
    text = {u: t.split()[1] for u, t in read_kv(data / "text").items()}
    (root / "asr_text").write_text("".join(f"{u} {t}\n" for u, t in sorted(text.items())))
    chars = sorted(set("".join(text.values())))
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", *chars, "<sos/eos>"]) + "\n")
    return dict(
        root=root,
        data=data,
        exp=exp,
        weights=weights,
        archive=archive,
        state=torch.load(weights, map_location="cpu", weights_only=True),
    )


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


def test_import_is_quiet_and_registers_later_imported_tasks():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, espnet_speechclip; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('espnet', 'espnet2', 'torch')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == "[]\n"
    import importlib

    import espnet_speechclip  # noqa: F401
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    for name in ("espnet2.tasks.asr", "espnet2.tasks.cls"):
        module = importlib.import_module(name)
        assert module.frontend_choices.classes["speechclip"] is SpeechCLIPFrontend, name


def test_import_hook_registers_a_task_module_imported_afterwards(tmp_path, monkeypatch):
    """The mechanism on a stand-in task module (ESPnet's own take seconds to import)."""
    from espnet_speechclip.frontend import registration
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    (tmp_path / "fake_espnet_task.py").write_text(
        "import types\nfrontend_choices = types.SimpleNamespace(classes={'default': object})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registration.SPEECH_FRONTEND_CHOICES, "fake_espnet_task", ("frontend_choices",))
    registration.install()  # idempotent: one hook only
    assert sum(isinstance(f, registration._TaskImportHook) for f in sys.meta_path) == 1
    import fake_espnet_task

    try:
        assert fake_espnet_task.frontend_choices.classes == {
            "default": object,
            "speechclip": SpeechCLIPFrontend,
        }
        assert "frontend_choices" in fake_espnet_task.__loader__.get_source("fake_espnet_task")
    finally:
        del sys.modules["fake_espnet_task"]


def test_frontend_equals_the_speechclip_speech_branch(sc):
    from espnet_speechclip.data.media import load_audio
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend
    from espnet_speechclip.inference.speech2image import pad_batch

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


@pytest.fixture(scope="module")
def decoded(sc, tmp_path_factory):
    """The inference entry's outputs for the exp dir and for the archive (images through the tower)."""
    out = {}
    for name, model_args in (
        ("exp", ["--config", str(sc["exp"] / "config.yaml"), "--model_file", str(sc["weights"])]),
        ("zip", ["--model", str(sc["archive"])]),
    ):
        dec = tmp_path_factory.mktemp(f"dec_{name}")
        speechclip_inference.main([*model_args, "--data_dir", str(sc["data"]), "--output_dir", str(dec)])
        out[name] = dec
    return out


@pytest.mark.parametrize("source", ["exp", "zip"])
def test_api_equals_inference_entry(sc, decoded, source):
    dec = decoded[source]
    # the inference entry's batch size: HuBERT's GroupNorm feature extractor sees the padding, so
    # features depend slightly on an utterance's batch-mates
    pipe = Speech2Image.from_pretrained(sc["exp"] if source == "exp" else sc["archive"], batch_size=16)
    assert pipe.branches == ["parallel", "cascaded"]
    utts = (dec / "utt_list").read_text().split()
    wav_scp, img_scp, text = (read_kv(sc["data"] / n) for n in ("wav.scp", "img.scp", "text"))
    out = pipe.embed_speech([wav_scp[u] for u in utts])
    for name in ("speech_parallel", "speech_cascaded", "keyword_scores"):
        np.testing.assert_allclose(
            out[name.replace("speech_", "")], np.load(dec / f"{name}.npy"), atol=1e-5, rtol=0, err_msg=name
        )
    np.testing.assert_array_equal(out["keyword_ids"], np.load(dec / "keyword_ids.npy"))
    images = (dec / "image_list").read_text().split()
    np.testing.assert_allclose(
        pipe.embed_images([img_scp[k] for k in images]), np.load(dec / "image.npy"), atol=1e-5, rtol=0
    )
    np.testing.assert_allclose(
        pipe.embed_texts([text[u] for u in utts]), np.load(dec / "text.npy"), atol=1e-5, rtol=0
    )

    keywords = pipe.keywords([wav_scp[u] for u in utts])
    lines = dict(line.split(maxsplit=1) for line in (dec / "keywords").read_text().splitlines())
    for u, kws in zip(utts, keywords):
        assert " ".join(k.token for k in kws) == lines[u]
    assert [k.id for k in keywords[0]] == list(np.load(dec / "keyword_ids.npy")[0])
    np.testing.assert_allclose(
        [k.score for k in keywords[0]], np.load(dec / "keyword_scores.npy")[0], atol=1e-5
    )
    one = pipe.keywords(wav_scp[utts[0]])  # one utterance: its keywords, not a list of lists
    assert len(one) == 4 and isinstance(one[0].token, str)

    # any sample rate: a file or an array at 8 kHz is resampled the same way
    wav, _ = sf.read(wav_scp[utts[0]], dtype="float32")
    from espnet_speechclip.data.media import resample

    low = resample(wav, 16000, 8000)
    write_wav(sc["root"] / f"low_{source}.wav", low, 8000)
    by_file = pipe.embed_speech(sc["root"] / f"low_{source}.wav")["parallel"]
    by_array = pipe.embed_speech((low, 8000))["parallel"]
    np.testing.assert_allclose(by_file, by_array, atol=1e-4, rtol=0)  # the file is 16-bit PCM

    # retrieval ranks by the cosine scores of the embeddings
    hits = pipe.retrieve_images(wav_scp[utts[0]], [img_scp[k] for k in images], topk=3)
    scores = np.load(dec / "image.npy") @ pipe.embed_speech(wav_scp[utts[0]])["parallel"][0]
    assert [h.index for h in hits] == list(np.argsort(-scores, kind="stable")[:3])
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:3], atol=1e-5)
    hits = pipe.retrieve_speech(img_scp[images[0]], [wav_scp[u] for u in utts], topk=None, branch="cascaded")
    assert len(hits) == len(utts) and hits == sorted(hits, key=lambda h: -h.score)
    assert pipe.retrieve_texts((wav, 16000), ["a red square", "a blue square"], topk=1)[0].item in (
        "a red square",
        "a blue square",
    )


@pytest.fixture(scope="module")
def parallel_exp(sc, tiny_clip, tmp_path_factory):
    """An exp folder of an untrained parallel model (config.yaml + latest.pth)."""

    exp = tmp_path_factory.mktemp("parallel_exp")
    config = yaml.safe_load((TINY / "parallel.yaml").read_text())
    config["clip_conf"] = dict(tiny_clip)
    config["image_input"] = "embedding"
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    model = Speech2Image(exp / "config.yaml").model
    torch.save(model.state_dict(), exp / "latest.pth")
    return exp


def test_api_wrong_inputs_raise_clear_errors(sc, parallel_exp, tmp_path):
    pipe = Speech2Image.from_pretrained(sc["archive"])
    img = next(iter(read_kv(sc["data"] / "img.scp").values()))
    wav = next(iter(read_kv(sc["data"] / "wav.scp").values()))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    not_image = tmp_path / "photo.png"
    not_image.write_text("not an image")
    cases = [
        (
            lambda: pipe.embed_speech(tmp_path / "nope.wav"),
            MediaError,
            f"audio file {tmp_path / 'nope.wav'} does not exist",
        ),
        (lambda: pipe.embed_speech(empty), MediaError, f"audio file {empty} is empty"),
        (lambda: pipe.embed_speech([wav, np.zeros(0)]), MediaError, "speech input #1 is empty"),
        (
            lambda: pipe.embed_speech([np.zeros(100)]),
            MediaError,
            "#0: 100 samples at 16 kHz, shorter than .*400-sample",
        ),
        (lambda: pipe.embed_speech((np.zeros(16000), 0)), ValueError, "#0: sample rate must be positive"),
        (
            lambda: pipe.embed_speech(np.zeros((2, 16000))),
            ValueError,
            r"mono waveform \(T,\), got shape \(2, 16000\)",
        ),
        (lambda: pipe.embed_speech([np.full(16000, np.nan)]), MediaError, "#0 contains NaN"),
        (lambda: pipe.embed_speech([42]), TypeError, "speech input #0: expected a file path"),
        (
            lambda: pipe.embed_images([img, not_image]),
            MediaError,
            f"image file {not_image} cannot be decoded",
        ),
        (lambda: pipe.embed_images(tmp_path / "nope.jpg"), MediaError, "nope.jpg does not exist"),
        (
            lambda: pipe.embed_images([np.zeros((4, 4, 3))]),
            TypeError,
            "image input #0: expected a file path or a PIL",
        ),
        (lambda: pipe.embed_texts(["ok", 3]), TypeError, "text input #1"),
        (lambda: pipe.retrieve_images([wav, wav], [img]), TypeError, "one utterance"),
        (lambda: pipe.retrieve_images(wav, [img], topk=0), ValueError, "topk must be at least 1"),
        (lambda: pipe.retrieve_texts(wav, ["x"], branch="nope"), ValueError, "not 'nope'"),
        (lambda: Speech2Image.from_pretrained(tmp_path / "nope"), FileNotFoundError, "nope does not exist"),
        (lambda: Speech2Image.from_pretrained(tmp_path), FileNotFoundError, "has no config.yaml"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match):
            call()
    (tmp_path / "config.yaml").write_text("")
    with pytest.raises(FileNotFoundError, match="valid.mean_r10.best.pth, latest.pth"):
        Speech2Image.from_pretrained(tmp_path)

    par = Speech2Image.from_pretrained(parallel_exp)  # latest.pth: no best checkpoint there
    assert par.branches == ["parallel"]
    with pytest.raises(ValueError, match="parallel model: keywords need a cascaded or hybrid"):
        par.keywords(wav)


# ------------------------------------------------------------------------------------- query CLI


def test_query_cli_prints_ranked_images_and_keywords(sc, capsys, tmp_path):
    img_scp = read_kv(sc["data"] / "img.scp")
    images_dir = Path(next(iter(img_scp.values()))).parent
    wav = next(iter(read_kv(sc["data"] / "wav.scp").values()))
    texts = tmp_path / "texts.txt"
    texts.write_text("a red square\na green square\n\na blue square\n")
    query.main(
        [
            "--model",
            str(sc["archive"]),
            "--speech",
            wav,
            "--images",
            str(images_dir),
            "--topk",
            "3",
            "--texts",
            str(texts),
        ]
    )
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"query: {wav}") and "parallel branch" in out[0]
    assert out[1] == "images (top 3 of 4):"
    rows = [re.match(r"^\s+(\d)\s+([+-]\d\.\d{4})\s+(\S+)$", line) for line in out[2:5]]
    assert all(rows) and [int(r[1]) for r in rows] == [1, 2, 3]
    pipe = Speech2Image.from_pretrained(sc["archive"])
    hits = pipe.retrieve_images(wav, sorted(str(p) for p in images_dir.iterdir()), topk=3)
    assert [r[3] for r in rows] == [h.item for h in hits]
    assert [float(r[2]) for r in rows] == pytest.approx([h.score for h in hits], abs=1e-4)
    assert out[5].startswith("keywords: ") and len(re.findall(r"\(\d\.\d{3}\)", out[5])) == 4
    assert out[6] == "texts (top 3 of 3):" and len(out) == 10
    assert isinstance(hits[0], Hit)

    # a bad input ends with a message naming it, not a traceback
    with pytest.raises(SystemExit) as exit_info:
        query.main(
            [
                "--model",
                str(sc["archive"]),
                "--speech",
                str(tmp_path / "nope.wav"),
                "--images",
                str(images_dir),
            ]
        )
    assert exit_info.value.code == 1
    assert f"audio file {tmp_path / 'nope.wav'} does not exist" in capsys.readouterr().err
