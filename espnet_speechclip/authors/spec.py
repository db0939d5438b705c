"""The architecture record of an imported checkpoint and the small tools every derivation step uses.

:class:`Architecture` is what the importer builds (our model name, tower names, widths, branch options),
with ``sources`` saying where each value came from (stored config, a tensor shape, the paper default).
:class:`Requirement` tables list the stored settings our modules cannot express otherwise.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from espnet_speechclip.authors.unpickling import AuthorsCheckpointError
from espnet_speechclip.config import dotted_get

# Authors' transformer defaults our modules hard-wire (post-norm, GELU, LayerNorm eps 1e-5).
OUR_LAYER_NORM_EPS = 1e-5
# The reduced-vocabulary positions the authors' vector quantiser never selects (SimpleVectorQuantizer's
# prob_msk default; in the released vocabularies these rows are the pad, SOT and EOT tokens).
AUTHORS_VQ_MASKED_POSITIONS = (0, 2, 3)

EYE_BUFFERS = ("criterion.eye_mat", "criterion.neg_eye_mat", "criterion.eye_mat_fl")
HUBERT_PREFIX = "audio_encoder.encoder."
CLIP_PREFIX = "clip."
CASCADED_CLIP_PREFIX = "cascaded_branch.clip."
REDUCED_TABLE = "clip.model.token_embedding.weight"
FULL_TABLE = "clip.original_text_emb_weight"


@dataclass
class Architecture:
    """What the importer builds, with where each value came from (``sources``: config / shape / default)."""

    model: str  # our model name: parallel, cascaded, hybrid (SpeechCLIP); cascaded_plus, hybrid_shared,
    # hybrid_plus (SpeechCLIP+)
    upstream: str = ""  # s3prl name of the public upstream (hubert, hubert_large_ll60k)
    hidden_states: int = 0  # HuBERT layers + 1
    speech_width: int = 0  # D_a
    layer_norm: bool = False  # layer-normalise each hidden state before the weighted sum (Large)
    max_train_samples: Optional[int] = None
    clip_name: str = ""  # the authors' name (ViT-B/32, ViT-L/14)
    clip_model_name: str = ""  # open_clip name we build
    text_width: int = 0  # D_t
    embed_dim: int = 0  # D_c
    parallel: Optional[Dict[str, Any]] = None
    cascaded: Optional[Dict[str, Any]] = None
    parallel_weight: float = 0.0
    cascaded_weight: float = 0.0
    quantity_weight: float = 0.0  # SpeechCLIP+ CIF quantity loss weight
    temperature: float = 0.07
    learnable_temperature: bool = False
    # the authors' hooked fairseq forward weights the raw output of the last HuBERT layer
    raw_last_layer: bool = True
    amp_dtype: Optional[str] = "float16"  # their trainer.precision (16: fp16 autocast; None: fp32)
    corpus: Optional[str] = None  # their data.dataset.name (flickr, coco), when stored
    family: str = "SpeechCLIP"  # or SpeechCLIP+ (github ShampooWang/SpeechCLIP_plus)
    sources: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


@dataclass(frozen=True)
class Requirement:
    """A stored setting our modules cannot express otherwise: absent (= the authors' default) or allowed."""

    dotted: str
    allowed: Tuple[Any, ...]
    why: str


def check_requirements(config: Mapping, requirements: Sequence[Requirement], prefix: str = "") -> None:
    """Raise naming the first setting of ``config`` (under ``prefix``) outside its allowed values."""
    for req in requirements:
        value = dotted_get(config, prefix + req.dotted)
        if value is not None and value not in req.allowed:
            raise AuthorsCheckpointError(
                f"the stored config has {prefix + req.dotted} = {value!r}; {req.why} (supported: "
                f"{', '.join(repr(a) for a in req.allowed)})"
            )


# The keyword quantiser and BatchNorm of every cascaded branch (SpeechCLIP's and SpeechCLIP+'s).
QUANTIZER_REQUIREMENTS = (  # under model_settings.cascaded_branch.
    Requirement("transformer_args.layer_norm_eps", (OUR_LAYER_NORM_EPS,), "our layer norms use eps 1e-5"),
    Requirement("vq.type", ("SimpleVectorQuantizer",), "our quantiser is the cosine straight-through one"),
    Requirement("vq.args.use_gumbel", (False,), "our quantiser is a straight-through softmax, not Gumbel"),
    Requirement("vq.args.hard", (True,), "our quantiser is hard (straight-through) at train time"),
)


def shape_of(t: torch.Tensor) -> List[int]:
    return list(t.shape)


def config_value(
    arch: Architecture,
    name: str,
    config: Mapping,
    dotted: str,
    default: Any,
    shape_value: Any = None,
    shape_key: Optional[str] = None,
) -> Any:
    """A hyper-parameter from the stored config, cross-checked with the value the tensor shapes imply;
    falls back to the shape, then to the paper default. Records where it came from."""
    value = dotted_get(config, dotted)
    if value is not None and shape_value is not None and value != shape_value:
        raise AuthorsCheckpointError(
            f"the stored config says {dotted} = {value}, but {shape_key} implies "
            f"{shape_value}: the checkpoint is inconsistent"
        )
    if value is not None:
        arch.sources[name] = f"config {dotted}"
        return value
    if shape_value is not None:
        arch.sources[name] = f"shape of {shape_key}"
        return shape_value
    arch.sources[name] = "paper default (not in the stored config)"
    return default


def require_key(state: Mapping[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise AuthorsCheckpointError(f"missing key {key} ({what})")
    return state[key]


@dataclass
class Source:
    """What the architecture is derived from: the checkpoint and the towers the user gives."""

    state: Mapping[str, torch.Tensor]
    config: Mapping
    clip_model_name: Optional[str] = None
    clip_config_file: Optional[str] = None
    upstream_path: Optional[Path] = None


def vq_temperature(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> float:
    """The quantiser temperature: the buffer (fixed / learnable) is the value used; the config string says
    how it was set. A scheduled temperature is refused."""
    base = "model_settings.cascaded_branch."
    temp_key = "cascaded_branch.vector_quantizer.curr_temp"
    spec = str(dotted_get(config, base + "vq.args.temp", "fixed=0.1"))
    m = re.fullmatch(r"\s*(fixed|learnable)\s*=\s*([0-9.eE+-]+)\s*", spec)
    if m is None:
        raise AuthorsCheckpointError(
            f"the stored config has {base}vq.args.temp = {spec!r}: a scheduled VQ temperature"
            f" is not supported (our quantiser has a fixed one)"
        )
    tau = float(m.group(2))
    if temp_key in state:
        stored = float(state[temp_key].reshape(-1)[0])
        if not math.isclose(stored, tau, rel_tol=1e-6):
            arch.notes.append(
                f"{temp_key} = {stored} (learned or changed from the config's {spec}); using it"
            )
            tau = stored
        arch.sources["cascaded.vq_temperature"] = f"{temp_key} (config {spec})"
    else:
        arch.sources["cascaded.vq_temperature"] = f"config {base}vq.args.temp"
    if m.group(1) == "learnable":
        arch.notes.append(
            "training-only difference: the authors' VQ temperature was learnable; ours is fixed at the "
            "imported value (inference uses the hard argmax either way)"
        )
    return tau


def attention_settings(arch: Architecture, config: Mapping, what: str) -> Tuple[int, float]:
    """(nhead, dropout) of the cascaded branch's attention, checked against the speech width."""
    base = "model_settings.cascaded_branch."
    d_model = config_value(
        arch, f"{what}.d_model", config, base + "transformer_args.d_model", arch.speech_width
    )
    if int(d_model) != arch.speech_width:
        raise AuthorsCheckpointError(
            f"the {what} branch width {d_model} differs from HuBERT's {arch.speech_width}"
        )
    nhead = config_value(arch, f"{what}.nhead", config, base + "transformer_args.nhead", 1)
    dropout = config_value(arch, f"{what}.dropout", config, base + "transformer_args.dropout", 0.1)
    if arch.speech_width % int(nhead):
        raise AuthorsCheckpointError(
            f"{what} branch: width {arch.speech_width} is not divisible by nhead {nhead}"
        )
    return int(nhead), float(dropout)


# authors' key -> (our key, shape in the authors' file, transform)
Target = Tuple[str, List[int], str]
PERMUTE = "permute dimension-major"


def keyword_norm_and_quantizer(k: Optional[int], d_t: int) -> Dict[str, Target]:
    """The keys of the keyword BatchNorm and of the quantiser's temperature buffer. ``k`` keywords: one
    BatchNorm1d over K * D_t features, dimension-major in the authors' files (permuted); ``k`` None
    (SpeechCLIP+'s CIF branches): one BatchNorm1d over the CLIP width shared by every unit (copied)."""
    size = d_t if k is None else k * d_t
    how = (
        "copy (one BatchNorm1d over the CLIP width, shared by every unit)"
        if k is None
        else (f"{PERMUTE} (d*{k}+k) -> keyword-major (k*{d_t}+d)")
    )
    out: Dict[str, Target] = {}
    for stat in ("weight", "bias", "running_mean", "running_var"):
        out[f"cascaded_branch.bn_layer.bn_layer.{stat}"] = (
            f"cascaded.norm.{stat}",
            [size],
            how,
        )
    out["cascaded_branch.bn_layer.bn_layer.num_batches_tracked"] = (
        "cascaded.norm.num_batches_tracked",
        [],
        "copy",
    )
    out["cascaded_branch.vector_quantizer.curr_temp"] = (
        "model_conf.cascaded_conf.vq_temperature",
        [1],
        "config value",
    )
    return out


def encoder_layer_shapes(d_a: int, ff: int) -> List[Tuple[str, List[int]]]:
    """(name, shape) of every tensor of a torch ``TransformerEncoderLayer`` of width D_a, feed-forward ff."""
    return [
        ("self_attn.in_proj_weight", [3 * d_a, d_a]),
        ("self_attn.in_proj_bias", [3 * d_a]),
        ("self_attn.out_proj.weight", [d_a, d_a]),
        ("self_attn.out_proj.bias", [d_a]),
        ("linear1.weight", [ff, d_a]),
        ("linear1.bias", [ff]),
        ("linear2.weight", [d_a, ff]),
        ("linear2.bias", [d_a]),
        ("norm1.weight", [d_a]),
        ("norm1.bias", [d_a]),
        ("norm2.weight", [d_a]),
        ("norm2.bias", [d_a]),
    ]


def attention_and_norm_keys(theirs: str, ours: str, d_a: int) -> Dict[str, Target]:
    """The authors' MultiheadAttentionAndNorm under ``theirs`` -> our AttentionBlock under ``ours``."""
    out: Dict[str, Target] = {}
    for name, shape in encoder_layer_shapes(d_a, 0)[:4]:
        name = name[len("self_attn.") :]
        out[theirs + "multihead_attn_layer." + name] = (ours + "attn." + name, shape, "copy")
    out[theirs + "attentionBlock_Norm.weight"] = (ours + "norm.weight", [d_a], "copy")
    out[theirs + "attentionBlock_Norm.bias"] = (ours + "norm.bias", [d_a], "copy")
    return out
