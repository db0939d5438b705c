"""SpeechCLIP+ checkpoints (github ShampooWang/SpeechCLIP_plus): their one branch module, its architecture
and where its tensors go.

Every SpeechCLIP+ release has exactly one ``cascaded_branch`` module (no ``parallel_branch.*``), of three
kinds, told apart by the stored ``model_settings.cascaded_branch.type`` and, without a config, by the keys:

- cascaded+ (``KW_CascadedBranchPlus``): attention over the frames, CIF (``downsampling.*``), keyword
  projection, one BatchNorm1d over the CLIP width, quantiser -> our ``cascaded_plus``;
- hybrid+ (``KW_HybridBranchPlus``): the same with a parallel CLS (``cls``) in the one attention block and
  ``parallel_proj`` -> our ``hybrid_plus``;
- hybrid (``KW_HybridBranch``): ``parallel_cls`` and 8 ``cascaded_cls`` in one attention block (an
  attention-plus-norm layer, or a TransformerEncoder with a final LayerNorm), ``parallel_proj`` and the
  K-keyword path of SpeechCLIP's cascaded branch -> our ``hybrid_shared``.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional

import torch

from espnet_speechclip.authors.spec import (
    QUANTIZER_REQUIREMENTS,
    Architecture,
    Requirement,
    Source,
    Target,
    attention_and_norm_keys,
    check_requirements,
    config_value,
    encoder_layer_shapes,
    keyword_norm_and_quantizer,
    require_key,
    shape_of,
    vq_temperature,
)
from espnet_speechclip.authors.unpickling import AuthorsCheckpointError
from espnet_speechclip.config import dotted_get

PLUS_FAMILY = "SpeechCLIP+"
BRANCH = "model_settings.cascaded_branch."
# SpeechCLIP+'s branch class names (their code strips a KW_ prefix and reads "dynamic" as "plus")
_BRANCH_TYPES = {
    "cascadedbranchplus": "cascaded_plus",
    "hybridbranchplus": "hybrid_plus",
    "hybridbranch": "hybrid_shared",
}
_CONV = re.compile(r"^cascaded_branch\.downsampling\.conv\.(\d+)\.weight$")
_ENCODER_LAYER = re.compile(r"^cascaded_branch\.self_att\.model\.layers\.(\d+)\.")
# What the CIF module and the attention are called in the stored config, with our option names.
CIF_SETTINGS = (  # (our cif_conf key, their downsampling.cif key, default)
    ("threshold", "cif_threshold", 1.0),
    ("tail_threshold", "tail_handling_firing_threshold", 0.5),
    ("scaling_steps", "scaling_step", 5000),
)
CIF_REQUIREMENTS = (  # under model_settings.cascaded_branch.
    Requirement("downsampling.type", ("cif",), "the released SpeechCLIP+ downsampling is CIF"),
    Requirement("downsampling.cif.produce_weight_type", ("conv",), "our CIF weight network is convolutional"),
    Requirement("downsampling.cif.apply_tail_handling", (True,), "our CIF fires a tail unit at inference"),
)
ATTENTION_TYPES = {"MultiheadAttentionAndNorm": "attention", "TransformerEncoder": "encoder"}
# nhead is in no tensor shape: without a stored config, the releases' values (SpeechCLIP+ yamls).
RELEASE_NHEAD = {("cascaded_plus", 768): 1, ("cascaded_plus", 1024): 8, "hybrid_plus": 8, "hybrid_shared": 1}


def branch_type(config: Mapping) -> Optional[str]:
    """Our model name of the stored ``model_settings.cascaded_branch.type``, if it is a SpeechCLIP+ one."""
    name = dotted_get(config, BRANCH + "type")
    if name is None:
        return None
    key = str(name).replace("KW_", "").replace("_dynamic", "plus").replace("_", "").lower()
    return _BRANCH_TYPES.get(key)


def plus_model(state: Mapping[str, torch.Tensor], config: Mapping) -> Optional[str]:
    """Our model name for a SpeechCLIP+ state dict (cascaded_plus, hybrid_plus, hybrid_shared), else None.

    Decided by the keys (a CIF module; a shared parallel CLS), checked against the stored branch type."""
    if any(k.startswith("parallel_branch.") for k in state):
        by_keys = None
    elif any(k.startswith("cascaded_branch.downsampling.") for k in state):
        by_keys = (
            "hybrid_plus"
            if "cascaded_branch.parallel_proj.weight" in state
            or any(k.startswith("cascaded_branch.parallel_proj.") for k in state)
            else "cascaded_plus"
        )
    elif "cascaded_branch.parallel_cls" in state or "cascaded_branch.cascaded_cls" in state:
        by_keys = "hybrid_shared"
    else:
        by_keys = None
    by_config = branch_type(config)
    stored = dotted_get(config, BRANCH + "type")
    if by_config is not None and by_keys != by_config:
        raise AuthorsCheckpointError(
            f"the stored config has {BRANCH}type = {stored!r} (SpeechCLIP+ {by_config}), but the state "
            f"dict's keys are those of {by_keys or 'no SpeechCLIP+ branch'}"
        )
    return by_keys


def _projection(
    arch: Architecture, state: Mapping[str, torch.Tensor], theirs: str, name: str, d_in: int, d_out: int
) -> Optional[int]:
    """None for a Linear under ``theirs``, the hidden width H for their MLP (``sequential.0`` / ``.3``)."""
    if theirs + "weight" in state:
        return None
    first = require_key(state, theirs + "sequential.0.weight", f"the {name} projection (Linear or MLP)")
    arch.sources[f"cascaded.{name}"] = f"shape of {theirs}sequential.0.weight (an MLP)"
    hidden = int(first.shape[0])
    if int(first.shape[1]) != d_in:
        raise AuthorsCheckpointError(
            f"{theirs}sequential.0.weight has shape {shape_of(first)}: its input width is not {d_in}"
        )
    last = require_key(state, theirs + "sequential.3.weight", f"the second layer of the {name} MLP")
    if shape_of(last) != [d_out, hidden]:
        raise AuthorsCheckpointError(
            f"{theirs}sequential.3.weight has shape {shape_of(last)}, expected {[d_out, hidden]}"
        )
    return hidden


def _attention(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> Dict[str, Any]:
    """The shared attention block: one attention-plus-norm layer, or a TransformerEncoder + final norm."""
    stored = dotted_get(config, BRANCH + "transformer_args.type") or dotted_get(
        config, BRANCH + "transformer_type"
    )
    layers = {int(m.group(1)) for k in state if (m := _ENCODER_LAYER.match(k))}
    kind = "encoder" if layers else "attention"
    if stored is not None and ATTENTION_TYPES.get(str(stored)) != kind:
        raise AuthorsCheckpointError(
            f"the stored config names the attention {stored!r}, but the state dict holds "
            f"{'a TransformerEncoder' if layers else 'a MultiheadAttentionAndNorm'} "
            f"(cascaded_branch.self_att.*)"
        )
    d_a = arch.speech_width
    default_heads = RELEASE_NHEAD.get((arch.model, d_a), RELEASE_NHEAD.get(arch.model, 1))
    nhead = int(
        config_value(arch, "cascaded.nhead", config, BRANCH + "transformer_args.nhead", default_heads)
    )
    if dotted_get(config, BRANCH + "transformer_args.nhead") is None:
        arch.sources["cascaded.nhead"] = (
            f"the SpeechCLIP+ releases' value for {arch.model} (no stored config)"
        )
    dropout = float(config_value(arch, "cascaded.dropout", config, BRANCH + "transformer_args.dropout", 0.1))
    d_model = dotted_get(config, BRANCH + "transformer_args.d_model")
    if d_model is not None and int(d_model) != d_a:
        raise AuthorsCheckpointError(f"the cascaded branch width {d_model} differs from HuBERT's {d_a}")
    if d_a % nhead:
        raise AuthorsCheckpointError(f"cascaded branch: width {d_a} is not divisible by nhead {nhead}")
    if kind == "attention":
        return dict(num_layers=1, nhead=nhead, dim_feedforward=0, dropout=dropout)
    if sorted(layers) != list(range(len(layers))):
        raise AuthorsCheckpointError(
            f"cascaded_branch.self_att.model.layers are not numbered 0..: {sorted(layers)}"
        )
    for dotted, allowed, why in (
        ("transformer_args.activation", ("gelu",), "our feed-forward uses GELU"),
        ("transformer_args.norm_first", (False,), "our layers are post-norm"),
    ):
        check_requirements(config, (Requirement(dotted, allowed, why),), BRANCH)
    ff = int(
        require_key(
            state, "cascaded_branch.self_att.model.layers.0.linear1.weight", "the feed-forward"
        ).shape[0]
    )
    arch.sources["cascaded.dim_feedforward"] = (
        "shape of cascaded_branch.self_att.model.layers.0.linear1.weight"
    )
    return dict(num_layers=len(layers), nhead=nhead, dim_feedforward=ff, dropout=dropout, final_norm=True)


def _cif(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> Dict[str, Any]:
    """The CIF module's options: the convolution stack from its keys, the rest from the config."""
    check_requirements(config, CIF_REQUIREMENTS, BRANCH)
    convs = sorted(int(m.group(1)) for k in state if (m := _CONV.match(k)))
    if not convs or convs != list(range(0, 3 * len(convs), 3)):
        raise AuthorsCheckpointError(
            f"cascaded_branch.downsampling.conv.* holds convolutions at {convs}: SpeechCLIP+'s stack has "
            f"one every three modules (conv, dropout, ReLU) from 0"
        )
    width = int(state["cascaded_branch.downsampling.conv.0.weight"].shape[-1])
    conf: Dict[str, Any] = dict(kernel_size=width, num_layers=len(convs), dropout=0.5)
    arch.sources["cascaded.cif_conf.kernel_size"] = "shape of cascaded_branch.downsampling.conv.0.weight"
    for ours, theirs, default in CIF_SETTINGS:
        conf[ours] = config_value(
            arch, f"cascaded.cif_conf.{ours}", config, BRANCH + "downsampling.cif." + theirs, default
        )
    conf["scaling_steps"] = (
        None
        if conf["scaling_steps"] is None or int(conf["scaling_steps"]) < 0
        else int(conf["scaling_steps"])
    )
    # what their code does, whatever the config says (see conf/paper/*_plus_*.yaml)
    conf.update(frames_per_unit=20, max_units=75)
    return conf


def derive_plus_branch(arch: Architecture, src: Source) -> None:
    """Our cascaded_conf (and loss weights) for a SpeechCLIP+ branch."""
    state, config = src.state, src.config
    check_requirements(config, QUANTIZER_REQUIREMENTS, BRANCH)
    if not any(k.startswith("cascaded_branch.bn_layer.bn_layer.") for k in state):
        raise AuthorsCheckpointError(
            "the checkpoint has no keyword BatchNorm cascaded_branch.bn_layer.bn_layer.*"
        )
    d_a, d_t, d_c = arch.speech_width, arch.text_width, arch.embed_dim
    conf: Dict[str, Any] = _attention(arch, state, config)
    hidden = _projection(arch, state, "cascaded_branch.linear_proj.", "keyword", d_a, d_t)
    if hidden is not None:
        conf["projection_hidden"] = hidden
    conf["vq_temperature"] = vq_temperature(arch, state, config)
    if arch.model == "hybrid_shared":
        cls = require_key(state, "cascaded_branch.cascaded_cls", "the keyword CLS tokens")
        conf["num_keywords"] = int(
            config_value(
                arch,
                "cascaded.num_keywords",
                config,
                BRANCH + "keyword.number",
                8,
                int(cls.shape[1]),
                "cascaded_branch.cascaded_cls",
            )
        )
        hidden = _projection(arch, state, "cascaded_branch.parallel_proj.", "parallel", d_a, d_c)
        if hidden is not None:
            conf["parallel_projection_hidden"] = hidden
    else:
        if conf.get("final_norm"):
            raise AuthorsCheckpointError(
                "a CIF branch on a TransformerEncoder (cascaded_branch.self_att.model.*) was never released "
                "and has no counterpart here"
            )
        conf.update(unit_target="frames", norm_padding=True, cif_conf=_cif(arch, state, config))
        arch.quantity_weight = float(
            config_value(
                arch,
                "quantity_weight",
                config,
                BRANCH + "downsampling.cif.quantity_loss_weight",
                0.25,
            )
        )
    arch.cascaded = conf
    has_parallel = arch.model != "cascaded_plus"
    for branch, present in (("parallel", has_parallel), ("cascaded", True)):
        weight = dotted_get(config, f"model_settings.{branch}_objective_weight")
        setattr(arch, f"{branch}_weight", float(weight) if weight is not None else float(present))
    # SpeechCLIP+'s hidden states: their hooked HuBERT returns the raw last layer, as SpeechCLIP's
    arch.raw_last_layer = True
    if arch.layer_norm and arch.upstream == "hubert":
        arch.notes.append("the stored config layer-normalises HuBERT Base's hidden states")
    if dotted_get(config, "data.dataset.normalize_waveform"):
        arch.notes.append(
            "training-only difference: SpeechCLIP+ layer-normalised each training waveform "
            "(data.dataset.normalize_waveform); check what its evaluation fed HuBERT Base"
        )


def plus_trainable(arch: Architecture) -> Dict[str, Target]:
    """The branch keys of a SpeechCLIP+ checkpoint -> ours."""
    d_a, d_t, d_c = arch.speech_width, arch.text_width, arch.embed_dim
    conf = arch.cascaded or {}
    out: Dict[str, Target] = {}
    att = "cascaded_branch.self_att."
    if conf.get("final_norm"):
        ff = conf["dim_feedforward"]
        ours_names = {
            "self_attn.": "attn.",
            "norm1.": "norm.",
            "norm2.": "ff_norm.",
            "linear1.": "ff.0.",
            "linear2.": "ff.3.",
        }
        for i in range(conf["num_layers"]):
            for name, shape in encoder_layer_shapes(d_a, ff):
                prefix = next(p for p in ours_names if name.startswith(p))
                ours = f"cascaded.layers.{i}." + ours_names[prefix] + name[len(prefix) :]
                out[f"{att}model.layers.{i}.{name}"] = (ours, shape, "copy")
        for stat in ("weight", "bias"):
            out[f"{att}model.norm.{stat}"] = (f"cascaded.final_norm.{stat}", [d_a], "copy")
    else:
        out.update(attention_and_norm_keys(att, "cascaded.layers.0.", d_a))
    out.update(
        _projection_keys(
            "cascaded_branch.linear_proj.", "cascaded.projection.", d_a, d_t, conf.get("projection_hidden")
        )
    )
    if arch.model == "hybrid_shared":
        k = conf["num_keywords"]
        out["cascaded_branch.parallel_cls"] = ("cascaded.parallel_cls", [1, 1, d_a], "copy")
        out["cascaded_branch.cascaded_cls"] = ("cascaded.cls", [1, k, d_a], "copy")
        out.update(
            _projection_keys(
                "cascaded_branch.parallel_proj.",
                "cascaded.parallel_projection.",
                d_a,
                d_c,
                conf.get("parallel_projection_hidden"),
            )
        )
        out.update(keyword_norm_and_quantizer(k, d_t))
        return out
    if arch.model == "hybrid_plus":
        out["cascaded_branch.cls"] = ("cascaded.cls", [1, 1, d_a], "copy")
        out.update(
            _projection_keys(
                "cascaded_branch.parallel_proj.", "cascaded.parallel_projection.", d_a, d_c, None
            )
        )
    cif = conf["cif_conf"]
    w = cif["kernel_size"]
    for i in range(cif["num_layers"]):
        theirs = f"cascaded_branch.downsampling.conv.{3 * i}."
        out[theirs + "weight"] = (
            f"cascaded.cif.convs.{i}.weight",
            [d_a, d_a, w],
            "copy (their conv.{3i} is our convs.{i})",
        )
        out[theirs + "bias"] = (f"cascaded.cif.convs.{i}.bias", [d_a], "copy")
    out["cascaded_branch.downsampling.weight_proj.1.weight"] = ("cascaded.cif.head.weight", [1, d_a], "copy")
    out["cascaded_branch.downsampling.weight_proj.1.bias"] = ("cascaded.cif.head.bias", [1], "copy")
    out.update(keyword_norm_and_quantizer(None, d_t))
    return out


def _projection_keys(
    theirs: str, ours: str, d_in: int, d_out: int, hidden: Optional[int]
) -> Dict[str, Target]:
    """A Linear, or their MLP (``sequential.0`` / ``.3``) -> our Sequential (``0`` / ``3``)."""
    if hidden is None:
        return {
            theirs + "weight": (ours + "weight", [d_out, d_in], "copy"),
            theirs + "bias": (ours + "bias", [d_out], "copy"),
        }
    out: Dict[str, Target] = {}
    for idx, (o, i) in (("0", (hidden, d_in)), ("3", (d_out, hidden))):
        out[f"{theirs}sequential.{idx}.weight"] = (f"{ours}{idx}.weight", [o, i], "copy")
        out[f"{theirs}sequential.{idx}.bias"] = (f"{ours}{idx}.bias", [o], "copy")
    return out


def extra_weights(arch: Architecture, global_step: Optional[int]) -> Dict[str, torch.Tensor]:
    """Our state entries a SpeechCLIP+ file has no tensor for: the CIF's count of training forwards,
    set past the alpha-scaling period (their scaling stopped at ``scaling_step`` when training went on)."""
    if arch.cascaded is None or "cif_conf" not in arch.cascaded:
        return {}
    steps = arch.cascaded["cif_conf"].get("scaling_steps") or 0
    return {
        "cascaded.cif.num_forwards": torch.tensor(max(int(global_step or 0), int(steps)), dtype=torch.long)
    }


__all__: List[str] = ["PLUS_FAMILY", "plus_model", "derive_plus_branch", "plus_trainable", "extra_weights"]
