"""The authors' forward math, re-written from their code with plain tensor operations, and the helpers that
write a checkpoint in their layout around the tiny towers and import it (tests/authors/)."""

from __future__ import annotations

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
    SOT,
    K,
    authors_config,
    authors_state_dict,
    reduced_vocabulary,
    save_authors_checkpoint,
)

from espnet_speechclip.authors import AuthorsCheckpointError, import_checkpoint


def load_towers(tiny_clip, tiny_hubert) -> dict:
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


def authors_frames(n: int, batch_frames: int) -> int:
    """The authors' frame count of an n-sample utterance in a padded batch of ``batch_frames`` frames."""
    return min(round(n / 320), batch_frames)


def _exploit(marker: Path):
    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return Exploit()


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


# ==================================================================== SpeechCLIP+'s forward, re-written


def plus_attention_block(sd, x: torch.Tensor, pad: torch.Tensor, heads: int) -> torch.Tensor:
    """The branch's self_att: MultiheadAttentionAndNorm, or a post-norm TransformerEncoder layer (GELU)
    with a final LayerNorm (Large COCO hybrid). x (B, S, D), pad (B, S) True at padding."""
    a = "cascaded_branch.self_att."
    if a + "attentionBlock_Norm.weight" in sd:
        return layer_norm(
            attention(x, sd, a + "multihead_attn_layer.", heads, pad) + x,
            sd[a + "attentionBlock_Norm.weight"],
            sd[a + "attentionBlock_Norm.bias"],
        )
    layer = a + "model.layers.0."
    x = layer_norm(
        x + attention(x, sd, layer + "self_attn.", heads, pad),
        sd[layer + "norm1.weight"],
        sd[layer + "norm1.bias"],
    )
    h = x @ sd[layer + "linear1.weight"].t() + sd[layer + "linear1.bias"]
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    x = layer_norm(
        x + h @ sd[layer + "linear2.weight"].t() + sd[layer + "linear2.bias"],
        sd[layer + "norm2.weight"],
        sd[layer + "norm2.bias"],
    )
    return layer_norm(x, sd[a + "model.norm.weight"], sd[a + "model.norm.bias"])


def plus_linear(sd, prefix: str, x: torch.Tensor) -> torch.Tensor:
    """nn.Linear, or MLPLayers (Linear, ReLU, Dropout, Linear) at eval."""
    if prefix + "weight" in sd:
        return x @ sd[prefix + "weight"].t() + sd[prefix + "bias"]
    h = torch.relu(x @ sd[prefix + "sequential.0.weight"].t() + sd[prefix + "sequential.0.bias"])
    return h @ sd[prefix + "sequential.3.weight"].t() + sd[prefix + "sequential.3.bias"]


def plus_alphas(sd, x: torch.Tensor) -> torch.Tensor:
    """CIF weights of one utterance x (T, D): [Conv1d (zero padding W // 2), Dropout, ReLU] x n, then
    Dropout, Linear(D, 1), Sigmoid -> (T,)."""
    d = "cascaded_branch.downsampling."
    h = x.t().unsqueeze(0)  # (1, D, T)
    i = 0
    while f"{d}conv.{i}.weight" in sd:
        w = sd[f"{d}conv.{i}.weight"]
        h = torch.relu(torch.nn.functional.conv1d(h, w, sd[f"{d}conv.{i}.bias"], padding=w.shape[-1] // 2))
        i += 3
    logits = h[0].t() @ sd[d + "weight_proj.1.weight"].t() + sd[d + "weight_proj.1.bias"]
    return torch.sigmoid(logits)[:, 0]


def integrate_and_fire(
    alpha: torch.Tensor, x: torch.Tensor, beta: float = 1.0, tail: float = 0.5
) -> torch.Tensor:
    """Sequential CIF at inference, frame by frame: accumulate alpha_t x_t; when the weight reaches beta,
    the crossing frame's remaining weight starts the next unit. A remainder >= ``tail`` fires one more unit
    scaled to a full one; an utterance that fires nothing keeps its remainder as one unscaled unit; at
    most 75 units. alpha (T,), x (T, D) -> (N, D)."""
    units: List[torch.Tensor] = []
    acc, weight = torch.zeros(x.shape[1], dtype=torch.float64), 0.0
    for t in range(x.shape[0]):
        a = float(alpha[t])
        while weight + a >= beta:
            need = beta - weight
            units.append(acc + need * x[t].double())
            a -= need
            acc, weight = torch.zeros_like(acc), 0.0
        acc, weight = acc + a * x[t].double(), weight + a
    if not units:
        units.append(acc)
    elif weight >= tail:
        units.append(acc * beta / weight)
    return torch.stack(units[:75]).float()


def plus_keywords_to_clip(
    sd, kw: torch.Tensor, vocab_ids: np.ndarray, heads: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """keywords (N, D_t) after the BatchNorm -> (embedding (D_c,), CLIP ids (N,)): cosine to the reduced table
    with rows 0, 2, 3 masked, argmax, [SOT, kw_1..kw_N, EOT] through CLIP, read at EOT."""
    n = kw.shape[0]
    table = sd["clip.model.token_embedding.weight"]
    cos = (kw @ table.t()) / (kw.norm(dim=-1, keepdim=True) * table.norm(dim=-1)).clamp_min(1e-8)
    cos[:, [0, 2, 3]] = float("-inf")
    row = cos.argmax(-1)
    ids = vocab_ids[:, 0].tolist()
    text = torch.zeros(1, 77, dtype=torch.long)
    text[0, 0], text[0, n + 1] = ids.index(SOT), ids.index(EOT)
    emb = table[text]
    emb[0, 1 : n + 1] = table[row]
    out = clip_text(sd, emb, heads)[0, n + 1] @ sd["clip.model.text_projection"]
    return out / out.norm(), torch.from_numpy(vocab_ids[:, 0])[row]


def batch_norm(sd, z: torch.Tensor) -> torch.Tensor:
    bn = "cascaded_branch.bn_layer.bn_layer."
    return (z - sd[bn + "running_mean"]) / torch.sqrt(sd[bn + "running_var"] + 1e-5) * sd[bn + "weight"] + sd[
        bn + "bias"
    ]


def speechclip_plus(sd, feats: torch.Tensor, vocab_ids: np.ndarray, heads: int, clip_heads_: int) -> dict:
    """SpeechCLIP+'s branch on ONE utterance's features (T, D_a) -> dict(parallel (D_c,) for the hybrids,
    cascaded (D_c,), keyword_ids (N,))."""
    c = "cascaded_branch."
    x = feats.unsqueeze(0)
    out = {}
    if c + "cascaded_cls" in sd:  # hybrid: [P, CLS_1..CLS_K, frames] through one block
        k = sd[c + "cascaded_cls"].shape[1]
        x = torch.cat([sd[c + "parallel_cls"], sd[c + "cascaded_cls"], x], dim=1)
        x = plus_attention_block(sd, x, torch.zeros(1, x.shape[1], dtype=torch.bool), heads)[0]
        p = plus_linear(sd, c + "parallel_proj.", x[0])
        out["parallel"] = p / p.norm()
        kw = plus_linear(sd, c + "linear_proj.", x[1 : 1 + k])  # (K, D_t)
        d_t = kw.shape[-1]
        kw = batch_norm(sd, kw.t().reshape(-1)).reshape(d_t, k).t()  # dimension-major features
    else:
        if c + "cls" in sd:  # hybrid+: a CLS in front of the frames
            x = torch.cat([sd[c + "cls"], x], dim=1)
        x = plus_attention_block(sd, x, torch.zeros(1, x.shape[1], dtype=torch.bool), heads)[0]
        if c + "cls" in sd:
            p = plus_linear(sd, c + "parallel_proj.", x[0])
            out["parallel"] = p / p.norm()
            x = x[1:]
        units = integrate_and_fire(plus_alphas(sd, x), x)
        kw = batch_norm(sd, plus_linear(sd, c + "linear_proj.", units))
    out["cascaded"], out["keyword_ids"] = plus_keywords_to_clip(sd, kw, vocab_ids, clip_heads_)
    return out
