"""What model a released checkpoint is: its architecture, from the stored config checked against the tensors.

:func:`derive_architecture` runs a fixed list of steps: which branches the state
dict holds, the speech side (HuBERT and its layer weights), CLIP, each branch, the loss temperature, the
precision and corpus. Settings our modules cannot express are tables of :class:`Requirement`; a value the
config lacks is derived from a tensor shape, then from the paper's default, and ``Architecture.sources``
records which. The SpeechCLIP+ branches (one ``cascaded_branch`` module for cascaded+, hybrid and hybrid+)
are derived in :mod:`.plus`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Tuple

import torch

from espnet_speechclip.authors.plus import derive_plus_branch, plus_model
from espnet_speechclip.authors.spec import (
    CASCADED_CLIP_PREFIX,
    FULL_TABLE,
    HUBERT_PREFIX,
    OUR_LAYER_NORM_EPS,
    QUANTIZER_REQUIREMENTS,
    REDUCED_TABLE,
    Architecture,
    Requirement,
    Source,
    attention_settings,
    check_requirements,
    config_value,
    require_key,
    shape_of,
    vq_temperature,
)
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError, one_line
from espnet_speechclip.config import dotted_get
from espnet_speechclip.errors import MissingFileError
from espnet_speechclip.models.clip import clip_model_config
from espnet_speechclip.weights import load_file

# The authors' names of the frozen towers -> ours (s3prl hub entry, open_clip config with QuickGELU).
AUTHORS_UPSTREAMS = {"hubert": "hubert", "hubert_base": "hubert", "hubert_large_ll60k": "hubert_large_ll60k"}
PUBLIC_UPSTREAM_SHAPES = {
    "hubert": (12, 768),
    "hubert_large_ll60k": (24, 1024),
}  # (transformer layers, width)
LOCAL_UPSTREAM = "hubert_local"  # s3prl's entry for a local converted HuBERT file
AUTHORS_CLIPS = {
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
}

_HUBERT_LAYER = re.compile(r"^audio_encoder\.encoder\.encoder\.layers\.(\d+)\.")
_PARALLEL_LAYER = re.compile(r"^parallel_branch\.self_att\.model\.layers\.(\d+)\.")


SPEECH_REQUIREMENTS = (
    Requirement(
        "audio_encoder.type",
        ("FairseqHubert",),
        "only the fairseq HuBERT encoder of the releases is supported",
    ),
    Requirement(
        "audio_encoder.feat_select_idx",
        ("weighted_sum",),
        "our speech encoder is a weighted sum of all hidden states",
    ),
    Requirement(
        "audio_encoder.normalize_type", ("s3prl",), "only the plain layer norm of hidden states is supported"
    ),
    Requirement("audio_encoder.trainable", (False,), "a fine-tuned HuBERT is not supported"),
)
LOSS_REQUIREMENTS = (
    Requirement(
        "cl_loss.type", ("MaskedContrastiveLoss",), "our loss is the authors' masked contrastive loss"
    ),
)
PARALLEL_REQUIREMENTS = (  # under model_settings.parallel_branch.
    Requirement(
        "transformer_type", ("TransformerEncoder",), "our parallel branch is a torch TransformerEncoder"
    ),
    Requirement("need_projection", (True,), "our parallel branch ends in a linear projection"),
    Requirement("transformer_args.activation", ("gelu",), "our parallel layer uses GELU"),
    Requirement("transformer_args.norm_first", (False,), "our parallel layer is post-norm"),
    Requirement("transformer_args.layer_norm_eps", (OUR_LAYER_NORM_EPS,), "our layer norms use eps 1e-5"),
    Requirement("transformer_args.batch_first", (True,), "the authors' released layout is batch-first"),
)
CASCADED_REQUIREMENTS = QUANTIZER_REQUIREMENTS + (  # under model_settings.cascaded_branch.
    Requirement("type", ("KW_CascadedBranch",), "our cascaded branch is the released KW_CascadedBranch"),
    Requirement(
        "transformer_type",
        ("MultiheadAttentionAndNorm",),
        "our cascaded branch is one attention layer with residual and LayerNorm",
    ),
    Requirement(
        "keyword.batchnorms.type",
        ("eachKw",),
        "our keyword BatchNorm has statistics per keyword and dimension",
    ),
    # Released: one BatchNorm1d over all K * D_t features (eachKw, parallel). The per-keyword variant
    # (bn_layers.{k}) would be a keyword-major concatenation, but no released model has it: refused, untested.
    Requirement(
        "keyword.batchnorms.parallel",
        (True,),
        "the released keyword BatchNorm is one layer over all K * D_t features",
    ),
)
# Projection networks SpeechCLIP never released (SpeechCLIP+'s kw_projection is handled in .plus).
SPEECHCLIP_UNSUPPORTED = (
    "model_settings.image_encoder_projection",
    "model_settings.parallel_branch_projection",
    "model_settings.cascaded_branch_projection",
    "model_settings.cascaded_branch.keyword.kw_projection",
)


def hubert_shape_in_checkpoint(state: Mapping[str, torch.Tensor]) -> Optional[Tuple[int, int]]:
    """(transformer layers, width) of the frozen HuBERT stored in the checkpoint, or None if absent."""
    layers = {int(m.group(1)) for k in state if (m := _HUBERT_LAYER.match(k))}
    if not layers:
        return None
    n = max(layers) + 1
    if sorted(layers) != list(range(n)):
        raise AuthorsCheckpointError(
            f"the checkpoint's HuBERT layers are not numbered 0..{n - 1}: {sorted(layers)}"
        )
    key = HUBERT_PREFIX + "encoder.layers.0.fc2.weight"
    if key not in state:
        raise AuthorsCheckpointError(f"the checkpoint's HuBERT lacks {key}")
    return n, int(state[key].shape[0])


def local_upstream_shape(path: Path) -> Tuple[int, int]:
    """(transformer layers, width) of an s3prl converted HuBERT checkpoint (``hubert_local``)."""
    if not path.is_file():
        raise MissingFileError(f"upstream checkpoint {path} does not exist")
    try:
        ckpt = load_file(path, "upstream checkpoint", mmap=True)
    except Exception as e:  # the loader's one line, or anything else torch raises on such a file
        raise AuthorsCheckpointError(
            f"cannot read the upstream checkpoint {path} as an s3prl converted HuBERT "
            f"({type(e).__name__}: {one_line(str(e))})"
        ) from None
    weights = ckpt.get("model_weight") if isinstance(ckpt, Mapping) else None
    if not isinstance(weights, Mapping):
        raise AuthorsCheckpointError(f"{path} is not an s3prl converted HuBERT checkpoint (no model_weight)")
    shape = hubert_shape_in_checkpoint({HUBERT_PREFIX + k: v for k, v in weights.items()})
    if shape is None:
        raise AuthorsCheckpointError(f"{path} holds no HuBERT transformer layers")
    return shape


def clip_shape(model_name: str, config_file: Optional[str]) -> Dict[str, int]:
    """Text width, joint width, vocabulary size and context length of an open_clip architecture."""
    cfg = clip_model_config(model_name, config_file)
    if cfg is None:
        raise AuthorsCheckpointError(
            f"open_clip has no model {model_name!r} (give clip_config_file for a custom one)"
        )
    text = cfg.get("text_cfg", {})
    return dict(
        width=int(text.get("width", 512)),
        embed_dim=int(cfg["embed_dim"]),
        vocab_size=int(text.get("vocab_size", 49408)),
        context_length=int(text.get("context_length", 77)),
    )


# ---------------------------------------------------------------------------------------------- steps


def speechclip_model(state: Mapping[str, torch.Tensor], config: Mapping) -> str:
    """parallel / cascaded / hybrid from the branch keys of a SpeechCLIP state dict, checked against the
    objective weights of the config."""
    has = {
        "parallel": any(k.startswith("parallel_branch.") for k in state),
        "cascaded": any(
            k.startswith("cascaded_branch.") and not k.startswith(CASCADED_CLIP_PREFIX) for k in state
        ),
    }
    for branch, present in has.items():
        weight = dotted_get(config, f"model_settings.{branch}_objective_weight")
        if weight is not None and (float(weight) > 0) != present:
            raise AuthorsCheckpointError(
                f"the stored config has {branch}_objective_weight = {weight} but the state dict "
                f"{'has' if present else 'lacks'} {branch}_branch.* keys"
            )
    if not any(has.values()):
        raise AuthorsCheckpointError(
            "the state dict has neither parallel_branch.* nor cascaded_branch.* keys: "
            "not a SpeechCLIP checkpoint"
        )
    return "hybrid" if all(has.values()) else "parallel" if has["parallel"] else "cascaded"


def derive_speech(arch: Architecture, src: Source) -> None:
    """The authors' FairseqHubert + WeightedSumLayer: which HuBERT, its layer norm, its crop length."""
    state, config = src.state, src.config
    check_requirements(config, SPEECH_REQUIREMENTS)
    layer_weights = require_key(
        state, "audio_encoder.weightedsum_layer.weights", "the learnable layer weights"
    )
    name = dotted_get(config, "audio_encoder.name")
    ckpt_hubert = hubert_shape_in_checkpoint(state)
    arch.sources["upstream"] = "config audio_encoder.name" if name else "width"
    if name is None and ckpt_hubert is None:  # no config, no frozen copy: 13 or 25 layer weights
        arch.sources["upstream"] = "number of layer weights"
        name = {13: "hubert", 25: "hubert_large_ll60k"}.get(layer_weights.numel())
    elif name is None:  # no config: the two released sizes differ in width
        name = {768: "hubert", 1024: "hubert_large_ll60k"}.get(ckpt_hubert[1])
    path = src.upstream_path
    if name is None and path is not None:  # the user's local HuBERT decides (its shapes are checked)
        arch.sources["upstream"] = "the local upstream (the checkpoint does not say which HuBERT it is)"
        upstream = LOCAL_UPSTREAM
    elif name is None:
        raise AuthorsCheckpointError(
            "the stored config does not name the audio encoder and its width does not "
            "identify HuBERT Base / Large (give the HuBERT it was trained with as upstream_path)"
        )
    elif name not in AUTHORS_UPSTREAMS:
        raise AuthorsCheckpointError(f"audio encoder {name!r} is not one of {sorted(AUTHORS_UPSTREAMS)}")
    else:
        upstream = AUTHORS_UPSTREAMS[name]
    expected = local_upstream_shape(path) if path else PUBLIC_UPSTREAM_SHAPES[upstream]
    expected_what = f"the local upstream {path}" if path else f"s3prl {upstream}"
    if ckpt_hubert is not None and ckpt_hubert != expected:
        raise AuthorsCheckpointError(
            f"the checkpoint's HuBERT ({HUBERT_PREFIX}encoder.layers.*) has {ckpt_hubert[0]} layers of width "
            f"{ckpt_hubert[1]}, but {expected_what} has {expected[0]} of width {expected[1]}"
        )
    arch.upstream, arch.hidden_states, arch.speech_width = upstream, expected[0] + 1, expected[1]
    arch.layer_norm = bool(
        config_value(
            arch,
            "layer_norm",
            config,
            "audio_encoder.normalize_hiddenstates",
            upstream == "hubert_large_ll60k",
        )
    )
    max_len = config_value(arch, "max_train_samples", config, "audio_encoder.max_audio_len", 102400)
    arch.max_train_samples = None if max_len is None or int(max_len) < 0 else int(max_len)


# (key, dimension, what the size is): CLIP tensors whose sizes the open_clip architecture fixes
_CLIP_SHAPE_CHECKS = (
    (REDUCED_TABLE, 1, "width", "text width"),
    (FULL_TABLE, 1, "width", "text width"),
    (FULL_TABLE, 0, "vocab_size", "vocabulary size"),
    ("clip.model.text_projection", 0, "width", "text width"),
    ("clip.model.text_projection", 1, "embed_dim", "joint embedding width"),
)


def derive_clip(arch: Architecture, src: Source) -> None:
    """The authors' clip package name -> open_clip with QuickGELU, checked against the stored shapes."""
    state, config = src.state, src.config
    clip_name = dotted_get(config, "clip.name")
    width = int(require_key(state, REDUCED_TABLE, "the frozen CLIP's token embeddings").shape[1])
    if clip_name is None:
        clip_name = {512: "ViT-B/32", 768: "ViT-L/14"}.get(width, src.clip_model_name)
        if clip_name is None:
            raise AuthorsCheckpointError(
                f"the stored config does not name CLIP and width {width} is neither ViT-B/32 nor ViT-L/14"
            )
        arch.sources["clip"] = f"width of {REDUCED_TABLE}"
    else:
        arch.sources["clip"] = "config clip.name"
    model_name = src.clip_model_name
    if model_name is None:
        if clip_name not in AUTHORS_CLIPS:
            raise AuthorsCheckpointError(
                f"CLIP {clip_name!r} has no open_clip -quickgelu counterpart here ({sorted(AUTHORS_CLIPS)})"
            )
        model_name = AUTHORS_CLIPS[clip_name]
    else:
        arch.sources["clip"] += f", built as {model_name} (override)"
    arch.clip_name, arch.clip_model_name = clip_name, model_name
    ours = clip_shape(model_name, src.clip_config_file)
    for key, dim, size, what in _CLIP_SHAPE_CHECKS:
        if key in state and int(state[key].shape[dim]) != ours[size]:
            raise AuthorsCheckpointError(
                f"{key} has shape {shape_of(state[key])}: its {what} {int(state[key].shape[dim])} does "
                f"not match {model_name} ({ours[size]}); the checkpoint was trained with another CLIP"
            )
    arch.text_width, arch.embed_dim = ours["width"], ours["embed_dim"]


def derive_speechclip_branches(arch: Architecture, src: Source) -> None:
    """SpeechCLIP's parallel and / or cascaded branch and their objective weights."""
    for dotted in SPEECHCLIP_UNSUPPORTED:
        if dotted_get(src.config, dotted) is not None:
            raise AuthorsCheckpointError(
                f"the stored config has {dotted}: projection networks are not part of "
                f"SpeechCLIP as released and have no counterpart here"
            )
    if arch.model in ("parallel", "hybrid"):
        derive_parallel(arch, src.state, src.config)
    if arch.model in ("cascaded", "hybrid"):
        derive_cascaded(arch, src.state, src.config)
    for branch, present in (("parallel", arch.parallel is not None), ("cascaded", arch.cascaded is not None)):
        weight = dotted_get(src.config, f"model_settings.{branch}_objective_weight")
        setattr(arch, f"{branch}_weight", float(weight) if weight is not None else float(present))


def derive_loss(arch: Architecture, src: Source) -> None:
    """The contrastive loss temperature: learnable when the state dict has it, its initial value."""
    state, config = src.state, src.config
    check_requirements(config, LOSS_REQUIREMENTS)
    learnable_key = "criterion.temperature" in state
    trainable = dotted_get(config, "cl_loss.args.temperature_trainable")
    if trainable is not None and bool(trainable) != learnable_key:
        raise AuthorsCheckpointError(
            f"the stored config has cl_loss.args.temperature_trainable = {trainable} but "
            f"the state dict {'has' if learnable_key else 'lacks'} criterion.temperature"
        )
    arch.learnable_temperature = learnable_key
    arch.temperature = float(config_value(arch, "temperature", config, "cl_loss.args.temperature", 0.07))
    for dotted, ok in (("cl_loss.args.margin", 0.0), ("cl_loss.args.dcl", False)):
        value = dotted_get(config, dotted)
        if value is not None and value != ok:
            arch.notes.append(
                f"training-only difference: the authors trained with {dotted} = {value!r}; our loss "
                f"has no such option (inference is unaffected)"
            )


_AMP = {"16": "float16", "16-mixed": "float16", "bf16": "bfloat16", "bf16-mixed": "bfloat16"}


def derive_precision_and_corpus(arch: Architecture, src: Source) -> None:
    """Their Lightning trainer.precision (the paper's fp16 by default) and data.dataset.name."""
    precision = str(config_value(arch, "amp_dtype", src.config, "trainer.precision", 16))
    if precision not in _AMP and precision not in ("32", "32-true"):
        raise AuthorsCheckpointError(
            f"the stored config has trainer.precision = {precision!r}: not 16, bf16 or 32"
        )
    arch.amp_dtype = _AMP.get(precision)
    corpus = dotted_get(src.config, "data.dataset.name")
    arch.corpus = str(corpus) if corpus is not None else None
    arch.sources["corpus"] = "config data.dataset.name" if corpus is not None else "not in the stored config"


Step = Callable[[Architecture, Source], None]


def derive_architecture(
    state: Mapping[str, torch.Tensor],
    config: Mapping,
    clip_model_name: Optional[str] = None,
    clip_config_file: Optional[str] = None,
    upstream_path: Optional[Path] = None,
) -> Architecture:
    """The model to build, from the stored config, cross-checked against the tensor shapes (what the config
    lacks is derived from the shapes). Checks the frozen towers' shapes against the towers we will build.

    A SpeechCLIP+ checkpoint (one ``cascaded_branch`` of type cascaded+, hybrid or hybrid+) is recognised
    by :func:`.plus.plus_model` and its branch derived by :func:`.plus.derive_plus_branch`."""
    src = Source(state, config, clip_model_name, clip_config_file, upstream_path)
    plus = plus_model(state, config)
    arch = Architecture(model=plus or speechclip_model(state, config))
    if plus is not None:
        arch.family = "SpeechCLIP+"
    branches: Step = derive_plus_branch if plus is not None else derive_speechclip_branches
    for step in (derive_speech, derive_clip, branches, derive_loss, derive_precision_and_corpus):
        step(arch, src)
    return arch


def derive_parallel(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> None:
    base = "model_settings.parallel_branch."
    check_requirements(config, PARALLEL_REQUIREMENTS, base)
    layers = {int(m.group(1)) for k in state if (m := _PARALLEL_LAYER.match(k))}
    n_layers = config_value(
        arch,
        "parallel.num_layers",
        config,
        base + "transformer_args.n_layers",
        1,
        max(layers) + 1 if layers else None,
        "parallel_branch.self_att.model.layers.*",
    )
    d_model = config_value(
        arch, "parallel.d_model", config, base + "transformer_args.d_model", arch.speech_width
    )
    if int(d_model) != arch.speech_width:
        raise AuthorsCheckpointError(
            f"the parallel branch width {d_model} differs from HuBERT's {arch.speech_width}"
        )
    ff_key = "parallel_branch.self_att.model.layers.0.linear1.weight"
    ff = config_value(
        arch,
        "parallel.dim_feedforward",
        config,
        base + "transformer_args.dim_feedforward",
        3072,
        int(state[ff_key].shape[0]) if ff_key in state else None,
        ff_key,
    )
    nhead = config_value(arch, "parallel.nhead", config, base + "transformer_args.nhead", 8)
    dropout = config_value(arch, "parallel.dropout", config, base + "transformer_args.dropout", 0.1)
    if arch.speech_width % int(nhead):
        raise AuthorsCheckpointError(
            f"parallel branch: width {arch.speech_width} is not divisible by nhead {nhead}"
        )
    if arch.text_width != arch.embed_dim:
        # The authors project the CLS to the token-embedding width D_t and compare it with D_c-wide image
        # embeddings: only meaningful (and only released) when the two are equal.
        raise AuthorsCheckpointError(
            f"the authors' parallel projection outputs the CLIP text width {arch.text_width},"
            f" which differs from the joint width {arch.embed_dim}; cannot be expressed"
        )
    arch.parallel = dict(
        num_layers=int(n_layers), nhead=int(nhead), dim_feedforward=int(ff), dropout=float(dropout)
    )


def derive_cascaded(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> None:
    base = "model_settings.cascaded_branch."
    check_requirements(config, CASCADED_REQUIREMENTS, base)
    if not any(k.startswith("cascaded_branch.bn_layer.bn_layer.") for k in state):
        raise AuthorsCheckpointError(
            "the checkpoint has no keyword BatchNorm cascaded_branch.bn_layer.bn_layer.*: "
            "the released cascaded branch always has one"
        )
    cls_key = "cascaded_branch.cls"
    cls = require_key(state, cls_key, "the keyword CLS tokens")
    k = config_value(
        arch, "cascaded.num_keywords", config, base + "keyword.number", 8, int(cls.shape[1]), cls_key
    )
    nhead, dropout = attention_settings(arch, config, "cascaded")
    arch.cascaded = dict(
        num_keywords=int(k),
        num_layers=1,
        nhead=nhead,
        dim_feedforward=0,
        dropout=dropout,
        vq_temperature=vq_temperature(arch, state, config),
    )
    arch.sources["cascaded.num_layers"] = "MultiheadAttentionAndNorm is one layer whatever n_layers says"
    arch.sources["cascaded.dim_feedforward"] = "MultiheadAttentionAndNorm has no feed-forward"
