"""The authors' released-checkpoint layout, written around tiny towers (the tests' stand-in HuBERT and CLIP).

Lightning 1.5's top-level keys, the authors' state-dict key names and shapes (tiny widths), random trainable
weights, and a stored config whose classes live in modules named like the authors' (``avssl...``,
``pytorch_lightning...``). Those modules exist in ``sys.modules`` only while the file is saved, so loading it
exercises the importer's restricted unpickler.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List

import numpy as np
import torch

SOT, EOT = 49406, 49407
K = 8  # keywords, as released
FF = 128  # parallel feed-forward width (tiny; released: 3072 / 4096)


# ================================================================ classes pickled under the authors' names


class OrderedNamespace:
    """Pickles like avssl.base.ordered_namespace.OrderedNamespace: NEWOBJ, then an OrderedDict state."""

    def __init__(self, data: dict):
        object.__setattr__(
            self,
            "_odict",
            OrderedDict((k, OrderedNamespace(v) if isinstance(v, dict) else v) for k, v in data.items()),
        )

    def __getstate__(self):
        return self._odict

    def __setstate__(self, state):
        object.__setattr__(self, "_odict", OrderedDict(state))


class WandbLogger:
    """Pickles like Lightning 1.5's WandbLogger (its __getstate__ drops the live run)."""

    def __init__(self, project: str, name: str, save_dir: str):
        self._wandb_init = dict(name=name, project=project, dir=save_dir, resume="allow")
        self._save_dir, self._experiment, self._checkpoint_callback = save_dir, None, None
        self._agg_default_func = np.mean  # LightningLoggerBase's default aggregation: a numpy function
        self._metrics_to_agg: List = []

    def __getstate__(self):
        return dict(self.__dict__, _experiment=None)


OrderedNamespace.__module__, OrderedNamespace.__qualname__ = (
    "avssl.base.ordered_namespace",
    "OrderedNamespace",
)
WandbLogger.__module__, WandbLogger.__qualname__ = "pytorch_lightning.loggers.wandb", "WandbLogger"
_FAKE_MODULES = {
    "avssl": {},
    "avssl.base": {},
    "avssl.base.ordered_namespace": {"OrderedNamespace": OrderedNamespace},
    "pytorch_lightning": {},
    "pytorch_lightning.loggers": {},
    "pytorch_lightning.loggers.wandb": {"WandbLogger": WandbLogger},
}


@contextlib.contextmanager
def authors_modules() -> Iterator[None]:
    """Modules named like the authors' (and Lightning's) in sys.modules, for pickle to save the classes above;
    whatever was there before (a real pytorch_lightning, say) is put back on exit."""
    saved = {name: sys.modules.get(name) for name in _FAKE_MODULES}
    try:
        for name, attrs in _FAKE_MODULES.items():
            module = types.ModuleType(name)
            module.__dict__.update(attrs)
            sys.modules[name] = module
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


# ======================================================================== the authors' checkpoint layout


def authors_config(kind: str, large: bool, d_model: int) -> dict:
    """The authors' released yaml (config/speechCLIP/model_{base,large}/...), tiny widths; plus the argparse
    arguments their task merges into it and the WandbLogger it stores under trainer.logger."""
    transformer = dict(
        n_layers=1,
        d_model=d_model,
        nhead=8,
        dim_feedforward=FF,
        dropout=0.1,
        activation="gelu",
        layer_norm_eps=1.0e-5,
        batch_first=True,
        norm_first=False,
    )
    return {
        "config": "config/speechCLIP/model_large/flickr/spchclp_p.yaml",
        "save_path": "",
        "train": True,
        "eval": False,
        "test": False,
        "ckpt": "",
        "resume": "",
        "njobs": 8,
        "gpus": 4,
        "seed": 7122,
        "log_level": "info",
        "data": {
            "dataset": {"name": "flickr", "dataset_root": "data/flickr", "load_audio": True},
            "batch_size": 256,
            "dev_batch_size": 8,
            "split_ratio": np.float64(0.9),
        },
        "model_settings": {
            "cascaded_objective_weight": 1.0 if kind != "parallel" else 0.0,
            "parallel_objective_weight": 1.0 if kind != "cascaded" else 0.0,
            "parallel_branch": {
                "transformer_type": "TransformerEncoder",
                "transformer_args": dict(transformer),
                "need_projection": True,
            },
            "cascaded_branch": {
                "type": "KW_CascadedBranch",
                "transformer_type": "MultiheadAttentionAndNorm",
                "transformer_args": dict(transformer, nhead=1),
                "keyword": {
                    "number": K,
                    "detokenized_K_neighbors": 5,
                    "retrieve_method": "cosine",
                    "batchnorms": {"type": "eachKw", "std_scale": 1.0, "learnable": True, "parallel": True},
                },
                "vq": {
                    "bn_before_vq": True,
                    "activation": "gelu",
                    "type": "SimpleVectorQuantizer",
                    "args": {"temp": "fixed=0.1", "time_first": True, "use_gumbel": False, "hard": True},
                },
            },
        },
        "cl_loss": {
            "type": "MaskedContrastiveLoss",
            "args": {
                "temperature": 0.07,
                "temperature_trainable": large,
                "margin": 0.0,
                "dcl": False,
                "a2b": True,
                "b2a": True,
            },
        },
        "retrieval": {
            "audio_feat_src": "cascaded" if kind == "cascaded" else "parallel",
            "recall_at": [1, 5, 10],
        },
        "clip": {
            "name": "ViT-L/14" if large else "ViT-B/32",
            "image_encoder_trainable": False,
            "text_encoder_trainable": False,
            "reduce_subword_embbedding": "./avssl/data/flickr_stat/text_clip_vocab_usage_byfreq.npy",
        },
        "audio_encoder": {
            "type": "FairseqHubert",
            "name": "hubert_large_ll60k" if large else "hubert",
            "pretrained": True,
            "trainable": False,
            "feat_select_idx": "weighted_sum",
            "layer_drop": 0.0,
            "max_audio_len": 102400,
            "normalize_hiddenstates": large,
            "optim": {"name": "Adam", "args": {"lr": 1.0e-4, "weight_decay": 1.0e-6}},
        },
        "trainer": {
            "max_steps": 50000,
            "gradient_clip_val": 4,
            "precision": 16,
            "strategy": "dp",
            "default_root_dir": "exp/sphclip",
            "logger": WandbLogger("sphclip", "sphclip", "exp/sphclip"),
        },
        "logger": {"project": "sphclip"},
        "parsed_args": argparse.Namespace(config="spchclp.yaml", gpus=4),
    }


def reduced_vocabulary(seed: int = 0, size: int = 300) -> np.ndarray:
    """(V, 2) int64 rows (id, count) laid out like text_clip_vocab_usage_byfreq.npy: pad, 'a</w>', SOT, EOT
    first (the rows the authors' VQ masks are 0, 2, 3), then other subwords by falling count."""
    rng = np.random.RandomState(seed)
    others = rng.choice(np.setdiff1d(np.arange(1, 49406), [320]), size - 4, replace=False)
    ids = np.concatenate([[0, 320, SOT, EOT], others])
    counts = np.concatenate([[2581899, 62996, 40460, 40460], np.sort(rng.randint(1, 20000, size - 4))[::-1]])
    return np.stack([ids, counts], axis=1).astype(np.int64)


def authors_state_dict(
    kind: str,
    large: bool,
    hubert_weights: Dict[str, torch.Tensor],
    clip_weights: Dict[str, torch.Tensor],
    vocab: np.ndarray,
    eye: int,
    seed: int = 0,
) -> OrderedDict[str, torch.Tensor]:
    """The authors' KWClip_GeneralTransformer state dict: exact key names, tiny shapes, random trainables."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    d_a = hubert_weights["encoder.layers.0.fc2.weight"].shape[0]
    n_hidden = 1 + len({k.split(".")[2] for k in hubert_weights if k.startswith("encoder.layers.")})
    full = clip_weights["token_embedding.weight"]
    d_t = full.shape[1]
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    for k, v in hubert_weights.items():
        sd[f"audio_encoder.encoder.{k}"] = v.clone()
    sd["audio_encoder.weightedsum_layer.weights"] = rand(n_hidden, scale=1.0)
    clip = OrderedDict((f"clip.model.{k}", v.clone()) for k, v in clip_weights.items())
    clip["clip.model.token_embedding.weight"] = full[
        torch.from_numpy(vocab[:, 0])
    ].clone()  # the reduced table
    clip["clip.original_text_emb_weight"] = full.clone()
    sd.update(clip)
    if kind != "parallel":
        att = "cascaded_branch.self_att."
        sd["cascaded_branch.cls"] = rand(1, K, d_a, scale=1.0)
        sd[att + "multihead_attn_layer.in_proj_weight"] = rand(3 * d_a, d_a)
        sd[att + "multihead_attn_layer.in_proj_bias"] = rand(3 * d_a)
        sd[att + "multihead_attn_layer.out_proj.weight"] = rand(d_a, d_a)
        sd[att + "multihead_attn_layer.out_proj.bias"] = rand(d_a)
        sd[att + "attentionBlock_Norm.weight"] = 1 + rand(d_a)
        sd[att + "attentionBlock_Norm.bias"] = rand(d_a)
        sd["cascaded_branch.linear_proj.weight"] = rand(d_t, d_a)
        sd["cascaded_branch.linear_proj.bias"] = rand(d_t)
        sd["cascaded_branch.vector_quantizer.curr_temp"] = torch.tensor([0.1])
        bn = "cascaded_branch.bn_layer.bn_layer."
        sd[bn + "weight"] = 1 + rand(K * d_t)
        sd[bn + "bias"] = rand(K * d_t)
        sd[bn + "running_mean"] = rand(K * d_t)
        sd[bn + "running_var"] = 0.5 + torch.rand(K * d_t, generator=g)
        sd[bn + "num_batches_tracked"] = torch.tensor(6902)
        for k, v in clip.items():  # the cascaded branch holds the model's CLIP: same tensors, saved again
            sd["cascaded_branch." + k] = v
    if kind != "cascaded":
        p = "parallel_branch."
        layer = p + "self_att.model.layers.0."
        sd[p + "cls"] = rand(1, 1, d_a, scale=1.0)
        sd[layer + "self_attn.in_proj_weight"] = rand(3 * d_a, d_a)
        sd[layer + "self_attn.in_proj_bias"] = rand(3 * d_a)
        sd[layer + "self_attn.out_proj.weight"] = rand(d_a, d_a)
        sd[layer + "self_attn.out_proj.bias"] = rand(d_a)
        sd[layer + "linear1.weight"] = rand(FF, d_a)
        sd[layer + "linear1.bias"] = rand(FF)
        sd[layer + "linear2.weight"] = rand(d_a, FF)
        sd[layer + "linear2.bias"] = rand(d_a)
        for norm in ("norm1", "norm2"):
            sd[layer + norm + ".weight"] = 1 + rand(d_a)
            sd[layer + norm + ".bias"] = rand(d_a)
        sd[p + "self_att.model.norm.weight"] = 1 + rand(d_a)
        sd[p + "self_att.model.norm.bias"] = rand(d_a)
        sd[p + "linear_proj.weight"] = rand(d_t, d_a)
        sd[p + "linear_proj.bias"] = rand(d_t)
    if large:  # MaskedContrastiveLoss(temperature_trainable=True): log(1 / temperature), trained
        sd["criterion.temperature"] = torch.tensor(math.log(1 / 0.07) + 0.3)
    eye_mat = torch.eye(eye, dtype=torch.bool)
    sd["criterion.eye_mat"], sd["criterion.neg_eye_mat"], sd["criterion.eye_mat_fl"] = (
        eye_mat,
        ~eye_mat,
        eye_mat.float(),
    )
    return sd


def save_authors_checkpoint(path: Path, state: Dict[str, torch.Tensor], config: dict, **save_kwargs) -> Path:
    """Lightning 1.5's top level around ``state``; the config pickled through the authors' module names."""
    ckpt = {
        "epoch": 56,
        "global_step": 6668,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": state,
        "callbacks": {
            "ModelCheckpoint{'monitor': 'val_recall_mean_10', 'mode': 'max'}": {
                "monitor": "val_recall_mean_10",
                "best_model_score": torch.tensor(89.0),
                "best_model_path": "x.ckpt",
                "current_score": torch.tensor(89.0),
                "dirpath": "exp/sphclip",
                "best_k_models": {"x.ckpt": torch.tensor(89.0)},
                "kth_best_model_path": "x.ckpt",
                "kth_value": torch.tensor(89.0),
                "last_model_path": "",
            }
        },
        "optimizer_states": [
            {
                "state": {0: {"step": 6668, "exp_avg": torch.zeros(3), "exp_avg_sq": torch.zeros(3)}},
                "param_groups": [
                    {
                        "lr": 1e-4,
                        "betas": (0.9, 0.999),
                        "eps": 1e-8,
                        "weight_decay": 1e-6,
                        "amsgrad": False,
                        "params": [0],
                    }
                ],
            }
        ],
        "lr_schedulers": [
            {
                "base_lrs": [1e-4],
                "last_epoch": 6668,
                "_step_count": 6669,
                "_last_lr": [5e-5],
                "lr_lambdas": [None],
            }
        ],
        "native_amp_scaling_state": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 12,
        },
        "hparams_name": "kwargs",
    }
    with authors_modules():
        ckpt["hyper_parameters"] = {"config": OrderedNamespace(config)}
        torch.save(ckpt, path, **save_kwargs)
    assert "avssl" not in sys.modules  # loading must work without the authors' package
    return path


# ===================================================================== SpeechCLIP+'s checkpoint layout

PLUS_KINDS = ("cascaded+", "hybrid", "hybrid+")
# their branch classes, as the released yamls spell them
PLUS_TYPES = {
    "cascaded+": "CascadedBranch_dynamic",
    "hybrid": "HybridBranch",
    "hybrid+": "HybridBranch_dynamic",
}


def plus_variant(kind: str, size: str, corpus: str) -> dict:
    """What differs between the nine releases (see ShampooWang/SpeechCLIP_plus's model_{base,large} yamls):
    MLP projections in Large, two width-5 convolutions in Large COCO cascaded+, a TransformerEncoder in
    Large COCO hybrid, an MLP parallel projection in Large Flickr hybrid, no learned temperature in Large
    COCO hybrid, eight heads except in Base cascaded+ and the hybrids."""
    large, coco = size == "large", corpus == "coco"
    return dict(
        mlp=large,
        convs=2 if (kind == "cascaded+" and large and coco) else 1,
        width=5 if (kind == "cascaded+" and large and coco) else 3,
        encoder=kind == "hybrid" and large and coco,
        parallel_mlp=kind == "hybrid" and large and not coco,
        learnable=not (kind == "hybrid" and large and coco),
        nhead=1 if kind == "hybrid" or (kind == "cascaded+" and not large) else 8,
        layer_norm=kind == "hybrid" and large,
    )


def plus_config(kind: str, size: str, corpus: str, d_model: int) -> dict:
    """A SpeechCLIP+ yaml as stored in its checkpoint (config/speechCLIP+/model_*/...), tiny widths."""
    v = plus_variant(kind, size, corpus)
    config = authors_config("hybrid", size == "large", d_model)
    config["data"]["dataset"].update(name=corpus, normalize_waveform=size == "base")
    config["dataset_root"] = ""
    config["audio_encoder"].update(
        name="hubert_large_ll60k" if size == "large" else "hubert_base",
        normalize_hiddenstates=v["layer_norm"],
    )
    config["cl_loss"]["args"]["temperature_trainable"] = v["learnable"]
    config["retrieval"]["audio_feat_src"] = "cascaded"  # what four of the six hybrid yamls say
    branch = config["model_settings"]["cascaded_branch"]
    del branch["transformer_type"]
    branch["type"] = PLUS_TYPES[kind]
    branch["transformer_args"] = dict(
        branch["transformer_args"],
        type="TransformerEncoder" if v["encoder"] else "MultiheadAttentionAndNorm",
        nhead=v["nhead"],
        dim_feedforward=FF,
    )
    branch["downsampling"] = {
        "type": "cif",
        "cif": {
            "quantity_loss_weight": 0.25 if kind != "hybrid" else 0.025,
            "using_gt_len": False,
            "cif_output_dim": d_model,
            "encoder_embed_dim": d_model,
            "produce_weight_type": "conv",
            "cif_threshold": 1.0,
            "num_layer": v["convs"],
            "conv_cif_width": v["width"],
            "conv_cif_dropout": 0.1,
            "apply_scaling": True,
            "scaling_step": 5000,
            "apply_tail_handling": True,
            "tail_handling_firing_threshold": 0.5,
        },
    }
    config["model_settings"]["parallel_branch"]["transformer_args"]["type"] = "TransformerEncoder"
    del config["model_settings"]["parallel_branch"]["transformer_type"]
    if kind == "cascaded+":
        config["model_settings"]["parallel_objective_weight"] = 0.0
    return config


def plus_state_dict(
    kind: str,
    size: str,
    corpus: str,
    hubert_weights: Dict[str, torch.Tensor],
    clip_weights: Dict[str, torch.Tensor],
    vocab: np.ndarray,
    seed: int = 0,
    ff: int = FF,
) -> OrderedDict[str, torch.Tensor]:
    """SpeechCLIP+'s KWClip_GeneralTransformer state dict: one cascaded_branch module, exact key names
    (``ff``: the feed-forward width of Large COCO hybrid's TransformerEncoder, 4096 released)."""
    v = plus_variant(kind, size, corpus)
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int, scale: float = 0.2) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * scale

    sd = authors_state_dict("parallel", False, hubert_weights, clip_weights, vocab, 256, seed)
    for key in [k for k in sd if k.startswith("parallel_branch.") or k.startswith("criterion.")]:
        del sd[key]
    clip = OrderedDict((k, v_) for k, v_ in sd.items() if k.startswith("clip."))
    d_a = hubert_weights["encoder.layers.0.fc2.weight"].shape[0]
    d_t = clip_weights["token_embedding.weight"].shape[1]
    d_c = clip_weights["text_projection"].shape[1]
    c = "cascaded_branch."

    def linear(prefix: str, d_in: int, d_out: int, mlp: bool) -> None:
        if not mlp:
            sd[prefix + "weight"], sd[prefix + "bias"] = rand(d_out, d_in), rand(d_out)
            return
        # MLPLayers: Linear, ReLU, Dropout, Linear (hidden width = the input width)
        sd[prefix + "sequential.0.weight"], sd[prefix + "sequential.0.bias"] = rand(d_in, d_in), rand(d_in)
        sd[prefix + "sequential.3.weight"], sd[prefix + "sequential.3.bias"] = rand(d_out, d_in), rand(d_out)

    if kind == "hybrid":
        sd[c + "parallel_cls"] = rand(1, 1, d_a, scale=1.0)
        sd[c + "cascaded_cls"] = rand(1, K, d_a, scale=1.0)
    elif kind == "hybrid+":
        sd[c + "cls"] = rand(1, 1, d_a, scale=1.0)
    att = c + "self_att."
    if v["encoder"]:
        layer = att + "model.layers.0."
        for name, shape in (
            ("self_attn.in_proj_weight", (3 * d_a, d_a)),
            ("self_attn.in_proj_bias", (3 * d_a,)),
            ("self_attn.out_proj.weight", (d_a, d_a)),
            ("self_attn.out_proj.bias", (d_a,)),
            ("linear1.weight", (ff, d_a)),
            ("linear1.bias", (ff,)),
            ("linear2.weight", (d_a, ff)),
            ("linear2.bias", (d_a,)),
        ):
            sd[layer + name] = rand(*shape)
        for norm in ("norm1", "norm2"):
            sd[layer + norm + ".weight"], sd[layer + norm + ".bias"] = 1 + rand(d_a), rand(d_a)
        sd[att + "model.norm.weight"], sd[att + "model.norm.bias"] = 1 + rand(d_a), rand(d_a)
    else:
        sd[att + "multihead_attn_layer.in_proj_weight"] = rand(3 * d_a, d_a)
        sd[att + "multihead_attn_layer.in_proj_bias"] = rand(3 * d_a)
        sd[att + "multihead_attn_layer.out_proj.weight"] = rand(d_a, d_a)
        sd[att + "multihead_attn_layer.out_proj.bias"] = rand(d_a)
        sd[att + "attentionBlock_Norm.weight"] = 1 + rand(d_a)
        sd[att + "attentionBlock_Norm.bias"] = rand(d_a)
    linear(c + "linear_proj.", d_a, d_t, v["mlp"])
    sd[c + "vector_quantizer.curr_temp"] = torch.tensor([0.1])
    n_bn = K * d_t if kind == "hybrid" else d_t
    bn = c + "bn_layer.bn_layer."
    sd[bn + "weight"], sd[bn + "bias"] = 1 + rand(n_bn), rand(n_bn)
    sd[bn + "running_mean"], sd[bn + "running_var"] = rand(n_bn), 0.5 + torch.rand(n_bn, generator=g)
    sd[bn + "num_batches_tracked"] = torch.tensor(48729)
    if kind != "cascaded+":
        linear(c + "parallel_proj.", d_a, d_c, v["parallel_mlp"])
    if kind != "hybrid":
        for i in range(v["convs"]):  # Conv1d, Dropout, ReLU per layer
            sd[f"{c}downsampling.conv.{3 * i}.weight"] = rand(d_a, d_a, v["width"], scale=0.1)
            sd[f"{c}downsampling.conv.{3 * i}.bias"] = rand(d_a)
        sd[c + "downsampling.weight_proj.1.weight"] = rand(1, d_a)
        sd[c + "downsampling.weight_proj.1.bias"] = torch.tensor([0.5])
    for k, v_ in clip.items():  # the branch holds the model's CLIP: same tensors, saved again
        sd[c + k] = v_
    if v["learnable"]:
        sd["criterion.temperature"] = torch.tensor(math.log(1 / 0.07) + 0.2)
    eye_mat = torch.eye(256, dtype=torch.bool)
    sd["criterion.eye_mat"], sd["criterion.neg_eye_mat"], sd["criterion.eye_mat_fl"] = (
        eye_mat,
        ~eye_mat,
        eye_mat.float(),
    )
    return sd
