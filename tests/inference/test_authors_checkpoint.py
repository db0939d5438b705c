"""Importer of the authors' released checkpoints (espnet_speechclip.inference.authors_checkpoint).

The real files cannot be downloaded here, so each test writes a checkpoint in the authors' exact layout:
Lightning 1.5's top-level keys, the authors' state-dict key names and shapes (tiny widths: the tiny HuBERT and
tiny CLIP of helpers.stand_ins stand in for HuBERT and CLIP), random trainable weights, and a stored config
whose classes live in modules named like the authors' (``avssl...``, ``pytorch_lightning...``). Those modules
exist in ``sys.modules`` only while the file is saved, so loading it exercises the restricted unpickler.

The authors' branch forward is re-written below from their math (weighted sum, post-norm transformer layer,
attention + LayerNorm block, dimension-major keyword BatchNorm, cosine VQ over the reduced table with its
masked rows, keywords through CLIP's text transformer) with plain tensor operations, and the imported model
must reproduce it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest
import torch
from authors_layout import (
    EOT,
    FF,
    SOT,
    K,
    authors_config,
    authors_state_dict,
    reduced_vocabulary,
    save_authors_checkpoint,
)

from espnet_speechclip.inference.authors_checkpoint import (
    AuthorsCheckpointError,
    UnsafeCheckpointError,
    import_checkpoint,
    load_authors_checkpoint,
    to_plain,
)


@pytest.fixture(scope="module")
def towers(tiny_clip, tiny_hubert):
    """The tiny HuBERT (s3prl converted file) and tiny CLIP weights standing in for the public ones."""
    hubert = torch.load(tiny_hubert, map_location="cpu", weights_only=True)["model_weight"]
    clip = torch.load(tiny_clip["pretrained"], map_location="cpu", weights_only=True)
    return dict(hubert=hubert, clip=clip, hubert_path=tiny_hubert, clip_conf=tiny_clip)


def make_checkpoint(
    towers,
    path: Path,
    kind: str,
    large: bool,
    eye: int = 256,
    seed: int = 0,
    edit=None,
    config_edit=None,
    **save_kwargs,
) -> Tuple[Path, OrderedDict, np.ndarray]:
    vocab = reduced_vocabulary(seed)
    state = authors_state_dict(kind, large, towers["hubert"], towers["clip"], vocab, eye, seed)
    if edit is not None:
        edit(state)
    d_a = towers["hubert"]["encoder.layers.0.fc2.weight"].shape[0]
    config = authors_config(kind, large, d_a)
    if config_edit is not None:
        config_edit(config)
    return save_authors_checkpoint(path, state, config, **save_kwargs), state, vocab


def run_import(towers, ckpt: Path, out: Path, **kwargs) -> Path:
    clip = towers["clip_conf"]
    return import_checkpoint(
        ckpt,
        out,
        upstream_path=towers["hubert_path"],
        clip_pretrained=clip["pretrained"],
        clip_model_name=clip["model_name"],
        clip_config_file=clip["config_file"],
        **kwargs,
    )


# ====================================================================== the authors' forward, re-written


def layer_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def attention(
    x: torch.Tensor,
    sd: Dict[str, torch.Tensor],
    prefix: str,
    heads: int,
    key_padding=None,
    causal: bool = False,
) -> torch.Tensor:
    """Multi-head self-attention from packed in_proj weights: x (B, T, D) -> (B, T, D)."""
    b, t, d = x.shape
    q, k, v = (x @ sd[prefix + "in_proj_weight"].t() + sd[prefix + "in_proj_bias"]).split(d, dim=-1)
    q, k, v = (z.reshape(b, t, heads, d // heads).transpose(1, 2) for z in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(d // heads)  # (B, heads, T, T)
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None, None, :], float("-inf"))
    if causal:
        scores = scores.masked_fill(torch.ones(t, t, dtype=torch.bool).triu(1), float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    return out @ sd[prefix + "out_proj.weight"].t() + sd[prefix + "out_proj.bias"]


def authors_features(sd, hidden_states: List[torch.Tensor], normalize: bool) -> torch.Tensor:
    """WeightedSumLayer: softmax weights over all hidden states, each layer-normed (no affine) for Large."""
    x = torch.stack(hidden_states)  # (L, B, T, D)
    if normalize:
        x = layer_norm(x, 1.0, 0.0)
    w = sd["audio_encoder.weightedsum_layer.weights"].softmax(0)
    return (w.view(-1, 1, 1, 1) * x).sum(0)


def authors_parallel(sd, feats: torch.Tensor, lengths: torch.Tensor, nhead: int = 8) -> torch.Tensor:
    """KW_ParallelBranch: [CLS; feats] -> post-norm nn.TransformerEncoderLayer (GELU) -> final LayerNorm ->
    CLS -> linear_proj, L2-normalised. feats (B, T, D_a), lengths (B,) -> (B, D_c)."""
    p, layer = "parallel_branch.", "parallel_branch.self_att.model.layers.0."
    b, t, d = feats.shape
    x = torch.cat([sd[p + "cls"].expand(b, 1, d), feats], dim=1)
    pad = torch.arange(t + 1)[None] >= (lengths + 1)[:, None]
    x = layer_norm(
        x + attention(x, sd, layer + "self_attn.", nhead, pad),
        sd[layer + "norm1.weight"],
        sd[layer + "norm1.bias"],
    )
    hidden = x @ sd[layer + "linear1.weight"].t() + sd[layer + "linear1.bias"]
    hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
    x = layer_norm(
        x + hidden @ sd[layer + "linear2.weight"].t() + sd[layer + "linear2.bias"],
        sd[layer + "norm2.weight"],
        sd[layer + "norm2.bias"],
    )
    x = layer_norm(x, sd[p + "self_att.model.norm.weight"], sd[p + "self_att.model.norm.bias"])
    out = x[:, 0] @ sd[p + "linear_proj.weight"].t() + sd[p + "linear_proj.bias"]
    return out / out.norm(dim=-1, keepdim=True)


def clip_text(sd, x: torch.Tensor, heads: int) -> torch.Tensor:
    """OpenAI CLIP's text transformer over (B, 77, D_t) token embeddings: pre-norm residual blocks, causal
    attention, QuickGELU MLP; then ln_final."""
    x = x + sd["clip.model.positional_embedding"]
    n_layers = 1 + max(int(k.split(".")[4]) for k in sd if k.startswith("clip.model.transformer.resblocks."))
    for i in range(n_layers):
        r = f"clip.model.transformer.resblocks.{i}."
        x = x + attention(
            layer_norm(x, sd[r + "ln_1.weight"], sd[r + "ln_1.bias"]), sd, r + "attn.", heads, causal=True
        )
        h = (
            layer_norm(x, sd[r + "ln_2.weight"], sd[r + "ln_2.bias"]) @ sd[r + "mlp.c_fc.weight"].t()
            + sd[r + "mlp.c_fc.bias"]
        )
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ sd[r + "mlp.c_proj.weight"].t() + sd[r + "mlp.c_proj.bias"]
    return layer_norm(x, sd["clip.model.ln_final.weight"], sd["clip.model.ln_final.bias"])


def authors_cascaded(
    sd, feats: torch.Tensor, lengths: torch.Tensor, vocab_ids: np.ndarray, heads: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """KW_CascadedBranch -> (embedding (B, D_c), keyword CLIP ids (B, K)).

    K CLS; LayerNorm(attention(x) + x); first K -> linear_proj; Kw_BatchNorm(parallel=True): features laid out
    (B, D_t, K) flattened, i.e. feature d*K + k; cosine to every row of the REDUCED table, rows 0, 2, 3
    masked; argmax row; [SOT, kw_1..kw_K, EOT, row 0 ...] (77 reduced ids) through CLIP; EOT position
    @ text_projection."""
    c = "cascaded_branch."
    b, t, d = feats.shape
    x = torch.cat([sd[c + "cls"].expand(b, K, d), feats], dim=1)
    pad = torch.arange(t + K)[None] >= (lengths + K)[:, None]
    x = layer_norm(
        attention(x, sd, c + "self_att.multihead_attn_layer.", 1, pad) + x,
        sd[c + "self_att.attentionBlock_Norm.weight"],
        sd[c + "self_att.attentionBlock_Norm.bias"],
    )
    kw = x[:, :K] @ sd[c + "linear_proj.weight"].t() + sd[c + "linear_proj.bias"]  # (B, K, D_t)
    d_t = kw.shape[-1]
    bn = c + "bn_layer.bn_layer."
    z = kw.permute(0, 2, 1).reshape(b, d_t * K)
    z = (z - sd[bn + "running_mean"]) / torch.sqrt(sd[bn + "running_var"] + 1e-5) * sd[bn + "weight"] + sd[
        bn + "bias"
    ]
    kw = z.reshape(b, d_t, K).permute(0, 2, 1)
    table = sd["clip.model.token_embedding.weight"]  # reduced
    cos = (kw @ table.t()) / (kw.norm(dim=-1, keepdim=True) * table.norm(dim=-1)).clamp_min(1e-8)
    cos[..., [0, 2, 3]] = float("-inf")
    row = cos.argmax(-1)  # (B, K) reduced rows
    ids = vocab_ids[:, 0].tolist()
    text = torch.zeros(b, 77, dtype=torch.long)
    text[:, 0], text[:, K + 1] = ids.index(SOT), ids.index(EOT)
    emb = table[text]
    emb[:, 1 : K + 1] = table[row]
    out = clip_text(sd, emb, heads)[:, K + 1] @ sd["clip.model.text_projection"]
    return out / out.norm(dim=-1, keepdim=True), torch.from_numpy(vocab_ids[:, 0])[row]


def waveforms(seed: int = 0, lengths=(16000, 9700, 12345)) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    speech = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        speech[i, :n] = 0.1 * torch.randn(n, generator=g)
    return speech, torch.tensor(lengths)


def clip_heads(clip_conf) -> int:
    return json.loads(Path(clip_conf["config_file"]).read_text())["text_cfg"]["heads"]


# ================================================================================= imported models


@pytest.fixture(scope="module")
def imported(towers, tmp_path_factory):
    """Base parallel (fixed temperature, 256 eye buffers) and Large cascaded (learnable temperature,
    layer-normed hidden states, 1024 eye buffers), imported and loaded back with Speech2Image."""
    from espnet_speechclip.inference import Speech2Image

    out = {}
    for name, kind, large, eye in (
        ("base_parallel", "parallel", False, 256),
        ("large_cascaded", "cascaded", True, 1024),
    ):
        root = tmp_path_factory.mktemp(name)
        ckpt, state, vocab = make_checkpoint(towers, root / "authors.ckpt", kind, large, eye=eye, seed=1)
        exp = run_import(towers, ckpt, root / "exp")
        model = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth").model
        out[name] = dict(exp=exp, state=state, vocab=vocab, model=model, large=large, ckpt=ckpt)
    return out


@torch.no_grad()
def test_parallel_base_equals_authors_math(imported):
    case = imported["base_parallel"]
    model, sd = case["model"], case["state"]
    speech, lengths = waveforms(0)
    ours = model.encode_speech(speech, lengths).parallel
    # Same frames as ours (see test_known_mismatch_frame_lengths for the authors' framing).
    hidden, frames = model.speech_encoder.upstream(speech, lengths)
    theirs = authors_parallel(sd, authors_features(sd, hidden, normalize=False), frames)
    assert ours.shape == theirs.shape == (3, 32)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_cascaded_large_equals_authors_math(imported, towers):
    case = imported["large_cascaded"]
    model, sd, vocab = case["model"], case["state"], case["vocab"]
    for seed in (0, 1):
        speech, lengths = waveforms(seed, (15000, 8800, 11111, 16000))
        out = model.encode_speech(speech, lengths)
        hidden, frames = model.speech_encoder.upstream(speech, lengths)
        emb, ids = authors_cascaded(
            sd, authors_features(sd, hidden, normalize=True), frames, vocab, clip_heads(towers["clip_conf"])
        )
        assert torch.equal(out.keyword_ids, ids), (out.keyword_ids, ids)
        torch.testing.assert_close(out.cascaded, emb, atol=1e-5, rtol=0)
        assert not set(ids.flatten().tolist()) & {0, SOT, EOT}


@torch.no_grad()
def test_hybrid_maps_both_branches(towers, tmp_path):
    """Both objective weights > 0: our hybrid model, each branch equal to the authors' math."""
    from espnet_speechclip.inference import Speech2Image

    ckpt, sd, vocab = make_checkpoint(towers, tmp_path / "authors.ckpt", "hybrid", False, seed=4)
    exp = run_import(towers, ckpt, tmp_path / "exp")
    s2i = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth")
    model, config = s2i.model, s2i.config
    assert (
        config["model"] == "hybrid"
        and config["model_conf"]["parallel_weight"] == config["model_conf"]["cascaded_weight"] == 1
    )
    speech, lengths = waveforms(4)
    out = model.encode_speech(speech, lengths)
    hidden, frames = model.speech_encoder.upstream(speech, lengths)
    feats = authors_features(sd, hidden, normalize=False)
    torch.testing.assert_close(out.parallel, authors_parallel(sd, feats, frames), atol=1e-5, rtol=0)
    emb, ids = authors_cascaded(sd, feats, frames, vocab, clip_heads(towers["clip_conf"]))
    assert torch.equal(out.keyword_ids, ids)
    torch.testing.assert_close(out.cascaded, emb, atol=1e-5, rtol=0)


def test_written_experiment(imported):
    """config.yaml in our format, the temperature mapped, the eye buffers ignored, import.json complete."""
    import yaml

    base, large = imported["base_parallel"], imported["large_cascaded"]
    conf = yaml.safe_load((base["exp"] / "config.yaml").read_text())
    assert conf["model"] == "parallel" and conf["speech_encoder_conf"]["upstream"] == "hubert_local"
    assert conf["speech_encoder_conf"]["layer_norm"] is False
    assert conf["model_conf"]["parallel_conf"] == dict(num_layers=1, nhead=8, dim_feedforward=FF, dropout=0.1)
    assert conf["model_conf"]["learnable_temperature"] is False
    assert float(base["model"].loss.scale()) == pytest.approx(1 / 0.07)
    # the authors' precision (trainer.precision 16) and their raw last HuBERT layer
    assert conf["use_amp"] is True and conf["amp_dtype"] == "float16"
    assert conf["speech_encoder_conf"]["raw_last_layer"] is True
    conf = yaml.safe_load((large["exp"] / "config.yaml").read_text())
    assert conf["model"] == "cascaded" and conf["speech_encoder_conf"]["layer_norm"] is True
    assert conf["model_conf"]["cascaded_conf"]["vq_temperature"] == 0.1
    assert conf["model_conf"]["learnable_temperature"] is True
    # the authors' criterion.temperature is log(1/T), as our log_scale: the same logit scale
    assert float(large["model"].loss.log_scale.detach()) == float(large["state"]["criterion.temperature"])
    for case, eye in ((base, 256), (large, 1024)):
        record = json.loads((case["exp"] / "import.json").read_text())
        ignored = {e["key"]: e.get("shape") for e in record["ignored"]}
        assert ignored["criterion.eye_mat"] == [eye, eye] and ignored["criterion.eye_mat_fl"] == [eye, eye]
        assert "criterion.neg_eye_mat" in ignored
        assert record["source"]["sha256"] == hashlib.sha256(case["ckpt"].read_bytes()).hexdigest()
        assert record["frozen"]["clip"]["checked"] > 0
        assert record["frozen"]["hubert"]["checked"] == len(
            [k for k in case["state"] if k.startswith("audio_encoder.encoder.")]
        )
        # the stored config was read through the stand-ins, not guessed
        assert (
            record["architecture"]["sources"]["layer_norm"] == "config audio_encoder.normalize_hiddenstates"
        )
        assert record["authors_config"]["audio_encoder"]["type"] == "FairseqHubert"


def test_vocabulary_recovered_in_the_authors_order(imported, towers, tmp_path):
    """The codebook is the reduced vocabulary in the authors' order minus the rows their VQ masks; the same
    from the usage file; a usage file of another vocabulary is refused."""
    from espnet_speechclip.models.codebook import read_codebook

    case = imported["large_cascaded"]
    vocab = case["vocab"]
    expected = [int(i) for r, i in enumerate(vocab[:, 0]) if r not in (0, 2, 3)]
    assert read_codebook(case["exp"] / "codebook.txt", 49408) == expected
    assert case["model"].cascaded.codebook_ids.tolist() == expected
    record = json.loads((case["exp"] / "import.json").read_text())
    assert record["vocabulary"]["vq_masked_ids"] == [0, SOT, EOT]
    assert record["vocabulary"]["source"].startswith("matched each row")

    usage = tmp_path / "text_clip_vocab_usage_byfreq.npy"
    np.save(usage, vocab)
    exp = run_import(towers, case["ckpt"], tmp_path / "from_usage", vocab_usage=usage, verify=False)
    assert read_codebook(exp / "codebook.txt", 49408) == expected

    swapped = vocab.copy()
    swapped[[10, 11]] = swapped[[11, 10]]
    np.save(usage, swapped)
    with pytest.raises(AuthorsCheckpointError, match="row 10"):
        run_import(towers, case["ckpt"], tmp_path / "bad", vocab_usage=usage, verify=False)
    np.save(usage, vocab[:-1])
    with pytest.raises(
        AuthorsCheckpointError, match="lists 299 ids but clip.model.token_embedding.weight has 300"
    ):
        run_import(towers, case["ckpt"], tmp_path / "bad", vocab_usage=usage, verify=False)
    assert not (tmp_path / "bad").exists()


# ============================================================ framing and the last layer, as the authors'


def authors_frames(n: int, batch_frames: int) -> int:
    """The authors' frame count of an n-sample utterance in a padded batch of ``batch_frames`` frames."""
    return min(round(n / 320), batch_frames)


@torch.no_grad()
def test_frame_lengths_equal_the_authors_per_utterance(imported):
    """Each utterance alone, and the longest of a batch, attend exactly the authors' frames."""
    case = imported["base_parallel"]
    model, sd = case["model"], case["state"]
    speech, lengths = waveforms(0)
    batched = model.encode_speech(speech, lengths).parallel
    expert = model.speech_encoder.upstream.expert
    for i, n in enumerate(lengths.tolist()):
        hidden = list(expert([speech[i, :n]])["hidden_states"])  # HuBERT's own frames, no extension
        frames = torch.tensor([authors_frames(n, hidden[0].shape[1])])
        theirs = authors_parallel(sd, authors_features(sd, hidden, normalize=False), frames)
        alone = model.encode_speech(speech[i : i + 1, :n], lengths[i : i + 1]).parallel
        torch.testing.assert_close(alone, theirs, atol=1e-5, rtol=0)
        if n == int(lengths.max()):  # the longest needs no padding: the same in the batch
            torch.testing.assert_close(batched[i : i + 1], theirs, atol=1e-5, rtol=0)


@torch.no_grad()
def test_large_weights_the_raw_last_layer(towers, tmp_path):
    """A tiny HuBERT with HuBERT Large's pre-norm layout (layer_norm_first, a trained final LayerNorm): the
    imported model weights the raw output of the last layer, as the authors' hooked forward does."""
    from helpers.stand_ins import make_pre_norm_hubert

    from espnet_speechclip.inference import Speech2Image

    path = make_pre_norm_hubert(tmp_path / "tiny_hubert_large.pt")
    hubert = torch.load(path, map_location="cpu", weights_only=True)["model_weight"]
    large = dict(towers, hubert=hubert, hubert_path=path)
    ckpt, sd, _ = make_checkpoint(large, tmp_path / "authors.ckpt", "parallel", True)
    exp = run_import(large, ckpt, tmp_path / "exp")
    s2i = Speech2Image(exp / "config.yaml", exp / "valid.mean_r10.best.pth")
    assert s2i.config["speech_encoder_conf"]["raw_last_layer"] is True
    model = s2i.model
    speech, lengths = waveforms(2)
    expert = model.speech_encoder.upstream.expert
    layers = expert.model.encoder.layers
    # The authors' hidden states: s3prl's (inputs of every layer) but the raw output of the last layer.
    raw: Dict[str, torch.Tensor] = {}

    def keep_raw_output(module, inputs, output) -> None:  # returns None: the output is left as it is
        raw["x"] = output[0].transpose(0, 1)

    for i, n in enumerate(lengths.tolist()):
        handle = layers[-1].register_forward_hook(keep_raw_output)
        hidden = list(expert([speech[i, :n]])["hidden_states"])
        handle.remove()
        last = raw["x"][:, : hidden[-1].shape[1]]
        assert not torch.allclose(last, hidden[-1], atol=1e-3)  # s3prl's last state is LayerNorm'd
        frames = torch.tensor([authors_frames(n, hidden[0].shape[1])])
        theirs = authors_parallel(sd, authors_features(sd, hidden[:-1] + [last], normalize=True), frames)
        ours = model.encode_speech(speech[i : i + 1, :n], lengths[i : i + 1]).parallel
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


# =========================================================================================== errors


def _exploit(marker: Path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Exploit()


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


def _import_error(
    towers,
    tmp_path,
    match: str,
    kind: str = "parallel",
    large: bool = False,
    edit=None,
    config_edit=None,
    **kwargs,
) -> None:
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", kind, large, edit=edit, config_edit=config_edit)
    with pytest.raises(AuthorsCheckpointError, match=match):
        run_import(towers, ckpt, tmp_path / "exp", **kwargs)
    assert not (tmp_path / "exp").exists()


def test_unknown_key_is_named(towers, tmp_path):
    def edit(sd):
        sd["parallel_branch.extra_proj.weight"] = torch.zeros(2, 2)

    _import_error(towers, tmp_path, r"unknown key parallel_branch\.extra_proj\.weight", edit=edit)


def test_shape_mismatch_is_named(towers, tmp_path):
    def edit(sd):
        sd["parallel_branch.linear_proj.weight"] = torch.zeros(32, 60)

    _import_error(
        towers,
        tmp_path,
        r"shape mismatch for parallel_branch\.linear_proj\.weight: the checkpoint "
        r"has \[32, 60\]",
        edit=edit,
    )


def test_layer_weight_count_must_match_the_upstream(towers, tmp_path):
    def edit(sd):
        sd["audio_encoder.weightedsum_layer.weights"] = torch.zeros(
            25
        )  # HuBERT Large's 25 for a 2-layer HuBERT

    _import_error(
        towers,
        tmp_path,
        r"shape mismatch for audio_encoder\.weightedsum_layer\.weights: the checkpoint "
        r"has \[25\], the architecture derived from it needs \[3\]",
        edit=edit,
    )


def test_wrong_clip_width_is_named(towers, tmp_path):
    """Without the test CLIP override the checkpoint's config asks for ViT-L/14, whose text width is 768."""
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", "cascaded", True)
    with pytest.raises(
        AuthorsCheckpointError,
        match=r"clip\.model\.token_embedding\.weight has shape \[300, 32\]"
        r".*ViT-L-14-quickgelu \(768\)",
    ):
        import_checkpoint(ckpt, tmp_path / "exp", upstream_path=towers["hubert_path"], verify=False)


def test_another_clip_is_refused(towers, tmp_path):
    """Same architecture, other weights (as another open_clip tag would be): the frozen copy in the file
    tells, and the error names the first differing key."""
    from helpers.stand_ins import make_tiny_clip

    other = make_tiny_clip(tmp_path / "other-clip.pt", seed=1)
    ckpt, _, _ = make_checkpoint(towers, tmp_path / "a.ckpt", "parallel", False)
    with pytest.raises(AuthorsCheckpointError, match=r"clip\.model\.\S+ differs from the CLIP we build"):
        import_checkpoint(
            ckpt,
            tmp_path / "exp",
            upstream_path=towers["hubert_path"],
            clip_pretrained=other["pretrained"],
            clip_model_name="tiny-clip",
            clip_config_file=other["config_file"],
        )
    assert not (tmp_path / "exp").exists()


def test_config_contradicting_the_weights_is_refused(towers, tmp_path):
    def config_edit(config):
        config["model_settings"]["parallel_branch"]["transformer_args"]["dim_feedforward"] = 3072

    _import_error(
        towers,
        tmp_path,
        r"transformer_args\.dim_feedforward = 3072, but parallel_branch\.self_att\.model"
        r"\.layers\.0\.linear1\.weight implies 128",
        config_edit=config_edit,
    )


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


# ============================================================================================== CLI


def _cli(args: List[str], capsys) -> Tuple[int, str]:
    from espnet_speechclip.bin.import_authors_ckpt import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


def test_cli_one_line_errors(towers, tmp_path, capsys):
    evil = tmp_path / "evil.ckpt"
    torch.save({"x": _exploit(tmp_path / "pwned")}, evil)
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    ckpt, _, _ = make_checkpoint(
        towers, tmp_path / "a.ckpt", "parallel", False, edit=lambda sd: sd.update({"foo.bar": torch.zeros(1)})
    )
    clip = towers["clip_conf"]
    for path, what in (
        (tmp_path / "missing.ckpt", "does not exist"),
        (junk, "not a readable PyTorch checkpoint"),
        (evil, "system"),
        (ckpt, "unknown key foo.bar"),
    ):
        code, err = _cli(
            [
                "--ckpt",
                str(path),
                "--out_dir",
                str(tmp_path / "exp"),
                "--upstream_path",
                str(towers["hubert_path"]),
                "--clip_pretrained",
                clip["pretrained"],
                "--clip_model_name",
                clip["model_name"],
                "--clip_config_file",
                clip["config_file"],
            ],
            capsys,
        )
        lines = [line for line in err.splitlines() if "error" in line]
        assert code == 1 and len(lines) == 1 and what in lines[0], err
        assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


def test_cli_imports_and_packs_for_the_python_api(towers, tmp_path, monkeypatch):
    """The CLI's folder and its packed archive serve the Python API unchanged."""
    from espnet_speechclip.bin.import_authors_ckpt import main
    from espnet_speechclip.inference.speech2image import Speech2Image

    monkeypatch.setenv("ESPNET_SPEECHCLIP_CACHE", str(tmp_path / "cache"))
    ckpt, sd, vocab = make_checkpoint(
        towers, tmp_path / "epoch_58-step_6902-val_recall_mean_1_7.7700.ckpt", "cascaded", False, seed=2
    )
    clip = towers["clip_conf"]
    main(
        [
            "--ckpt",
            str(ckpt),
            "--out_dir",
            str(tmp_path / "exp"),
            "--upstream_path",
            str(towers["hubert_path"]),
            "--clip_pretrained",
            clip["pretrained"],
            "--clip_model_name",
            clip["model_name"],
            "--clip_config_file",
            clip["config_file"],
            "--pack",
        ]
    )
    record = json.loads((tmp_path / "exp" / "import.json").read_text())
    assert record["source"]["release"]["dev_value"] == 7.77
    speech, lengths = waveforms(3, (12000,))
    for source in (tmp_path / "exp", tmp_path / "exp" / "packed" / "model.zip"):
        s2i = Speech2Image.from_pretrained(source)
        words = s2i.keywords(speech[0].numpy())
        with torch.no_grad():
            hidden, frames = s2i.model.speech_encoder.upstream(speech, lengths)
            _, ids = authors_cascaded(
                sd, authors_features(sd, hidden, normalize=False), frames, vocab, clip_heads(clip)
            )
        assert [w.id for w in words] == ids[0].tolist()
