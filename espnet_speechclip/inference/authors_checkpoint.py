"""Import the authors' released SpeechCLIP checkpoints (github atosystem/SpeechCLIP) as our experiments.

The six released files (Base Flickr8k parallel / cascaded, Large Flickr8k and Large SpokenCOCO parallel /
cascaded) are PyTorch Lightning 1.5 checkpoints of the authors' ``KWClip_GeneralTransformer``.
:func:`import_checkpoint` turns one into what our training writes, so inference, scoring, packing, the query
CLI and the Python API use it unchanged::

    out_dir/config.yaml              our training config; the architecture comes from the checkpoint's own
                                     hyper-parameters (cross-checked against its tensor shapes)
    out_dir/valid.mean_r10.best.pth  our trainable state dict (loads with ``strict=True``)
    out_dir/codebook.txt             the cascaded keyword vocabulary, in the authors' order
    out_dir/import.json              source sha256, key mapping, ignored keys and the checks done

Only the trainable weights are mapped (layer weights, branches, keyword BatchNorm, temperature). The frozen
HuBERT and CLIP are rebuilt from their public names (s3prl ``hubert`` / ``hubert_large_ll60k``, open_clip
``ViT-B-32-quickgelu`` / ``ViT-L-14-quickgelu`` with the ``openai`` tag), which are the weights the authors
froze; the copies inside the file are compared with them.

The file is read with a restricted unpickler: it rebuilds plain containers, tensors, numpy scalars / arrays
and inert stand-ins for the authors' config classes (avssl, Lightning, argparse), and refuses every other
global by name, so a checkpoint from the internet cannot run code when it is read.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import hashlib
import json
import logging
import math
import os
import pickle
import re
import tempfile
import types
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml

# Our package: kept to these few names so that the module can move (espnet_speechclip/inference/).
from espnet_speechclip.models.builder import build_model
from espnet_speechclip.models.clip import SPECIAL_IDS, _register_config
from espnet_speechclip.models.codebook import write_codebook

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "valid.mean_r10.best.pth"
CODEBOOK_NAME = "codebook.txt"
IMPORT_FORMAT = "espnet_speechclip-authors-import"
IMPORT_FORMAT_VERSION = 1


class AuthorsCheckpointError(ValueError):
    """A file that cannot be imported: not a checkpoint, an unknown key, a shape mismatch, a CLIP or HuBERT
    that is not the one the checkpoint was trained with, an architecture our model cannot express."""


class UnsafeCheckpointError(AuthorsCheckpointError):
    """The pickle references a global outside the allow-list; nothing it names was imported or called."""


# ============================================================================================ unpickling


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as pickle protocol 2 uses it for bytes objects; any other codec is refused."""
    if encoding.replace("-", "").lower() != "latin1":
        raise UnsafeCheckpointError(
            f"the pickle calls _codecs.encode with codec {encoding!r}; only latin1 is allowed"
        )
    return codecs.encode(text, "latin1")


def _torch_dtype(name: str) -> Callable[[], Any]:
    def get() -> Any:
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise UnsafeCheckpointError(f"torch.{name} is not a dtype")
        return dtype

    return get


def _numpy(*candidates: str) -> Callable[[], Any]:
    """Resolve a numpy object under whichever module path this numpy has (numpy.core became numpy._core)."""

    def get() -> Any:
        import importlib

        for dotted in candidates:
            module, _, name = dotted.rpartition(".")
            try:
                return getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                continue
        raise UnsafeCheckpointError(f"numpy has none of {candidates}")

    return get


# Globals rebuilt for real: containers, torch's tensor rebuild functions, numpy scalars and arrays. None of
# them can reach the file system, a shell or the import system with the arguments a pickle can give them.
_SAFE_GLOBALS: Dict[Tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,
    ("collections", "defaultdict"): lambda: collections.defaultdict,
    ("_codecs", "encode"): lambda: _latin1_encode,
    ("torch._utils", "_rebuild_tensor"): lambda: torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): lambda: torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): lambda: torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): lambda: torch._utils._rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): lambda: torch._tensor._rebuild_from_type_v2,
    ("torch", "Tensor"): lambda: torch.Tensor,
    ("torch.nn.parameter", "Parameter"): lambda: torch.nn.Parameter,
    ("torch", "Size"): lambda: torch.Size,
    ("torch", "device"): lambda: torch.device,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy(
        "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"
    ),
    ("numpy._core.multiarray", "scalar"): _numpy(
        "numpy._core.multiarray.scalar", "numpy.core.multiarray.scalar"
    ),
    ("numpy.core.multiarray", "_reconstruct"): _numpy(
        "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"
    ),
    ("numpy._core.multiarray", "_reconstruct"): _numpy(
        "numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"
    ),
}
_SAFE_GLOBALS.update(
    {
        ("builtins", name): (lambda n=name: getattr(builtins, n))
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "complex",
            "str",
            "bool",
        )
    }
)
_SAFE_GLOBALS.update(
    {
        ("torch", name): _torch_dtype(name)
        for name in (
            "float64",
            "float32",
            "float16",
            "bfloat16",
            "int64",
            "int32",
            "int16",
            "int8",
            "uint8",
            "bool",
            "complex64",
            "complex128",
        )
    }
)

# Classes of the authors' stored config and of the Lightning objects pickled with it. They become inert
# stand-ins (never imported): the whole module trees below, and a few named classes / functions.
_INERT_MODULE_ROOTS = ("avssl", "pytorch_lightning", "lightning", "lightning_fabric", "wandb")
_INERT_NAMES = {
    ("argparse", "Namespace"),
    ("types", "SimpleNamespace"),
    ("numpy", "mean"),
    ("numpy.core.fromnumeric", "mean"),
    ("numpy._core.fromnumeric", "mean"),
    ("pathlib", "PosixPath"),
    ("pathlib", "WindowsPath"),
    ("pathlib", "PurePosixPath"),
    ("pathlib", "PureWindowsPath"),
}
# Stand-ins whose state is just a mapping of fields: they become plain dicts.
_NAMESPACE_CLASSES = {
    "avssl.base.ordered_namespace.OrderedNamespace",
    "avssl.base.OrderedNamespace",
    "argparse.Namespace",
    "types.SimpleNamespace",
    "pytorch_lightning.utilities.parsing.AttributeDict",
}


class StandIn:
    """An inert object standing for an instance of a class the checkpoint names but we never import.

    It records what the pickle gives it (constructor args, ``__setstate__`` state, items, appended values)
    and does nothing else; :func:`to_plain` turns it into plain data.
    """

    source = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        obj = object.__new__(cls)
        object.__setattr__(obj, "_args", args)
        object.__setattr__(obj, "_state", None)
        object.__setattr__(obj, "_items", {})
        object.__setattr__(obj, "_values", [])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): __new__ kept them
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self._items[key] = value

    def append(self, value: Any) -> None:
        self._values.append(value)

    def extend(self, values: Sequence[Any]) -> None:
        self._values.extend(values)

    def __repr__(self) -> str:
        return f"<stand-in for {self.source}>"


_STAND_INS: Dict[str, type] = {}


def _stand_in(module: str, name: str) -> type:
    source = f"{module}.{name}"
    if source not in _STAND_INS:
        _STAND_INS[source] = type(f"StandIn[{source}]", (StandIn,), {"source": source})
    return _STAND_INS[source]


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals (see the module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[key]()
        if module.split(".")[0] in _INERT_MODULE_ROOTS or key in _INERT_NAMES:
            return _stand_in(module, name)
        raise UnsafeCheckpointError(
            f"it references {module}.{name}, which is neither a container, a tensor, a numpy value nor one "
            f"of the authors' config classes; refused without importing it (a pickle can run code through "
            f"such a global)"
        )


def _restricted_pickle_module() -> types.ModuleType:
    """A module object ``torch.load(pickle_module=...)`` accepts: ``Unpickler`` and ``load``."""
    module = types.ModuleType("espnet_speechclip_restricted_pickle")
    module.Unpickler = RestrictedUnpickler  # type: ignore[attr-defined]
    module.load = lambda file, **kwargs: RestrictedUnpickler(file, **kwargs).load()  # type: ignore[attr-defined]
    return module


def load_authors_checkpoint(path: str | Path) -> Dict[str, Any]:
    """Read a Lightning checkpoint with the restricted unpickler; tensors land on the CPU.

    Both torch serialisations work: the zip format (torch >= 1.6, which Lightning 1.5 wrote) is memory-mapped
    rather than read, the legacy one is read. Raises :class:`UnsafeCheckpointError` for a refused global,
    :class:`AuthorsCheckpointError` for a file that is not a torch checkpoint, FileNotFoundError.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    is_zip = zipfile.is_zipfile(path)
    try:
        obj = torch.load(
            path,
            map_location="cpu",
            pickle_module=_restricted_pickle_module(),
            weights_only=False,
            mmap=is_zip,
        )
    except UnsafeCheckpointError as e:
        raise UnsafeCheckpointError(f"refusing to load {path}: {e}") from None
    except Exception as e:  # torch raises many types for a file that is not one of its checkpoints
        raise AuthorsCheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {_one_line(str(e))})"
        ) from None
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        raise AuthorsCheckpointError(
            f"{path} is a PyTorch file but not a Lightning checkpoint (no state_dict)"
        )
    return dict(obj)


def to_plain(obj: Any, _active: Optional[set] = None) -> Any:
    """Stand-ins, numpy values and containers -> plain Python data (dicts, lists, str, numbers).

    Config-like stand-ins (OrderedNamespace, argparse.Namespace, ...) become their field dicts; other
    stand-ins become ``{"__class__": name, ...fields}``, a referenced class or function
    ``{"__global__": name}``, a reference cycle ``"<cycle>"``. Tensors are kept (none are in a config).
    """
    if isinstance(obj, type) and issubclass(obj, StandIn):  # a class or function referenced, not an instance
        return {"__global__": obj.source}
    if not isinstance(obj, (StandIn, Mapping, list, tuple, set, frozenset)):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        return obj.decode("latin1") if isinstance(obj, bytes) else obj
    active = set() if _active is None else _active
    if id(obj) in active:  # a pickle may hold cycles (an object referring back to its owner)
        return "<cycle>"
    active.add(id(obj))
    try:
        if isinstance(obj, StandIn):
            return _stand_in_to_plain(obj, active)
        if isinstance(obj, Mapping):
            return {
                k if isinstance(k, (str, int, float, bool)) or k is None else str(k): to_plain(v, active)
                for k, v in obj.items()
            }
        return [to_plain(v, active) for v in obj]
    finally:
        active.discard(id(obj))


def _stand_in_to_plain(obj: StandIn, active: set) -> Any:
    fields: Dict[str, Any] = {}
    state = obj._state
    if (
        isinstance(state, tuple)
        and len(state) == 2
        and all(s is None or isinstance(s, Mapping) for s in state)
    ):
        state = {**(state[0] or {}), **(state[1] or {})}  # (dict state, slot state)
    if isinstance(state, Mapping):
        fields.update(state)
    elif state is not None:
        fields["__state__"] = state
    fields.update(obj._items)
    plain = {str(k): to_plain(v, active) for k, v in fields.items()}
    if obj.source in _NAMESPACE_CLASSES:
        return plain
    out: Dict[str, Any] = {"__class__": obj.source}
    if obj._args:
        out["args"] = to_plain(list(obj._args), active)
    if obj._values:
        out["values"] = to_plain(obj._values, active)
    out.update(plain)
    return out


# ======================================================================================== architecture

# The authors' names of the frozen towers -> ours (s3prl hub entry, open_clip config with QuickGELU).
AUTHORS_UPSTREAMS = {"hubert": "hubert", "hubert_base": "hubert", "hubert_large_ll60k": "hubert_large_ll60k"}
PUBLIC_UPSTREAM_SHAPES = {
    "hubert": (12, 768),
    "hubert_large_ll60k": (24, 1024),
}  # (transformer layers, width)
AUTHORS_CLIPS = {
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
}
# Authors' transformer defaults our modules hard-wire (post-norm, GELU, LayerNorm eps 1e-5).
_OUR_LAYER_NORM_EPS = 1e-5
# The reduced-vocabulary positions the authors' vector quantiser never selects (SimpleVectorQuantizer's
# prob_msk default; in the released vocabularies these rows are the pad, SOT and EOT tokens).
AUTHORS_VQ_MASKED_POSITIONS = (0, 2, 3)

EYE_BUFFERS = ("criterion.eye_mat", "criterion.neg_eye_mat", "criterion.eye_mat_fl")
HUBERT_PREFIX = "audio_encoder.encoder."
CLIP_PREFIX = "clip."
CASCADED_CLIP_PREFIX = "cascaded_branch.clip."
REDUCED_TABLE = "clip.model.token_embedding.weight"
FULL_TABLE = "clip.original_text_emb_weight"
_HUBERT_LAYER = re.compile(r"^audio_encoder\.encoder\.encoder\.layers\.(\d+)\.")
_PARALLEL_LAYER = re.compile(r"^parallel_branch\.self_att\.model\.layers\.(\d+)\.")


@dataclass
class Architecture:
    """What the importer builds, with where each value came from (``sources``: config / shape / default)."""

    model: str  # parallel, cascaded or hybrid
    upstream: str  # s3prl name of the public upstream (hubert, hubert_large_ll60k)
    hidden_states: int  # HuBERT layers + 1
    speech_width: int  # D_a
    layer_norm: bool  # layer-normalise each hidden state before the weighted sum (Large)
    max_train_samples: Optional[int]
    clip_name: str  # the authors' name (ViT-B/32, ViT-L/14)
    clip_model_name: str  # open_clip name we build
    text_width: int  # D_t
    embed_dim: int  # D_c
    parallel: Optional[Dict[str, Any]] = None
    cascaded: Optional[Dict[str, Any]] = None
    parallel_weight: float = 0.0
    cascaded_weight: float = 0.0
    temperature: float = 0.07
    learnable_temperature: bool = False
    # the authors' hooked fairseq forward weights the raw output of the last HuBERT layer
    raw_last_layer: bool = True
    amp_dtype: Optional[str] = "float16"  # their trainer.precision (16: fp16 autocast; None: fp32)
    corpus: Optional[str] = None  # their data.dataset.name (flickr, coco), when stored
    sources: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def _get(config: Mapping, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _shape(t: torch.Tensor) -> List[int]:
    return list(t.shape)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _config_value(
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
    value = _get(config, dotted)
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


def _require(config: Mapping, dotted: str, allowed: Sequence[Any], what: str) -> None:
    """A config setting our modules cannot express otherwise: absent (= the authors' default) or allowed."""
    value = _get(config, dotted)
    if value is not None and value not in allowed:
        raise AuthorsCheckpointError(
            f"the stored config has {dotted} = {value!r}; {what} (supported: "
            f"{', '.join(repr(a) for a in allowed)})"
        )


def _hubert_shape_in_checkpoint(state: Mapping[str, torch.Tensor]) -> Optional[Tuple[int, int]]:
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


def _local_upstream_shape(path: Path) -> Tuple[int, int]:
    """(transformer layers, width) of an s3prl converted HuBERT checkpoint (``hubert_local``)."""
    if not path.is_file():
        raise FileNotFoundError(f"upstream checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:
        raise AuthorsCheckpointError(
            f"cannot read the upstream checkpoint {path} as an s3prl converted HuBERT "
            f"({type(e).__name__}: {_one_line(str(e))})"
        ) from None
    weights = ckpt.get("model_weight") if isinstance(ckpt, Mapping) else None
    if not isinstance(weights, Mapping):
        raise AuthorsCheckpointError(f"{path} is not an s3prl converted HuBERT checkpoint (no model_weight)")
    shape = _hubert_shape_in_checkpoint({HUBERT_PREFIX + k: v for k, v in weights.items()})
    if shape is None:
        raise AuthorsCheckpointError(f"{path} holds no HuBERT transformer layers")
    return shape


def _clip_shape(model_name: str, config_file: Optional[str]) -> Dict[str, int]:
    """Text width, joint width and vocabulary size of an open_clip architecture, from its config alone."""
    import open_clip

    _register_config(model_name, config_file)
    cfg = open_clip.get_model_config(model_name)
    if cfg is None:
        raise AuthorsCheckpointError(
            f"open_clip has no model {model_name!r} (give clip_config_file for a custom one)"
        )
    text = cfg.get("text_cfg", {})
    return dict(
        width=int(text.get("width", 512)),
        embed_dim=int(cfg["embed_dim"]),
        vocab_size=int(text.get("vocab_size", 49408)),
    )


def derive_architecture(
    state: Mapping[str, torch.Tensor],
    config: Mapping,
    clip_model_name: Optional[str] = None,
    clip_config_file: Optional[str] = None,
    upstream_path: Optional[Path] = None,
) -> Architecture:
    """The model to build, from the stored config, cross-checked against the tensor shapes (what the config
    lacks is derived from the shapes). Checks the frozen towers' shapes against the towers we will build."""
    has_p = any(k.startswith("parallel_branch.") for k in state)
    has_c = any(k.startswith("cascaded_branch.") and not k.startswith(CASCADED_CLIP_PREFIX) for k in state)
    w_p = _get(config, "model_settings.parallel_objective_weight")
    w_c = _get(config, "model_settings.cascaded_objective_weight")
    if w_p is not None and (float(w_p) > 0) != has_p:
        raise AuthorsCheckpointError(
            f"the stored config has parallel_objective_weight = {w_p} but the state dict "
            f"{'has' if has_p else 'lacks'} parallel_branch.* keys"
        )
    if w_c is not None and (float(w_c) > 0) != has_c:
        raise AuthorsCheckpointError(
            f"the stored config has cascaded_objective_weight = {w_c} but the state dict "
            f"{'has' if has_c else 'lacks'} cascaded_branch.* keys"
        )
    if not (has_p or has_c):
        raise AuthorsCheckpointError(
            "the state dict has neither parallel_branch.* nor cascaded_branch.* keys: "
            "not a SpeechCLIP checkpoint"
        )
    model = "hybrid" if has_p and has_c else "parallel" if has_p else "cascaded"
    for dotted in (
        "model_settings.image_encoder_projection",
        "model_settings.parallel_branch_projection",
        "model_settings.cascaded_branch_projection",
        "model_settings.cascaded_branch.keyword.kw_projection",
    ):
        if _get(config, dotted) is not None:
            raise AuthorsCheckpointError(
                f"the stored config has {dotted}: projection networks are not part of "
                f"SpeechCLIP as released and have no counterpart here"
            )

    # ---- speech side: the authors' FairseqHubert + WeightedSumLayer
    _require(
        config,
        "audio_encoder.type",
        ["FairseqHubert"],
        "only the fairseq HuBERT encoder of the released checkpoints is supported",
    )
    _require(
        config,
        "audio_encoder.feat_select_idx",
        ["weighted_sum"],
        "our speech encoder is a weighted sum of all hidden states",
    )
    _require(
        config,
        "audio_encoder.normalize_type",
        ["s3prl"],
        "only the plain layer norm of hidden states is supported",
    )
    _require(config, "audio_encoder.trainable", [False], "a fine-tuned HuBERT is not supported")
    weights_key = "audio_encoder.weightedsum_layer.weights"
    if weights_key not in state:
        raise AuthorsCheckpointError(f"missing key {weights_key} (the learnable layer weights)")
    name = _get(config, "audio_encoder.name")
    ckpt_hubert = _hubert_shape_in_checkpoint(state)
    width_by_shape = ckpt_hubert[1] if ckpt_hubert else None
    if name is None:  # no config: the two released sizes differ in width
        guess = {768: "hubert", 1024: "hubert_large_ll60k"}.get(width_by_shape or -1)
        if guess is None:
            raise AuthorsCheckpointError(
                "the stored config does not name the audio encoder and its width does not "
                "identify HuBERT Base / Large"
            )
        name = guess
    if name not in AUTHORS_UPSTREAMS:
        raise AuthorsCheckpointError(f"audio encoder {name!r} is not one of {sorted(AUTHORS_UPSTREAMS)}")
    upstream = AUTHORS_UPSTREAMS[name]
    expected = _local_upstream_shape(upstream_path) if upstream_path else PUBLIC_UPSTREAM_SHAPES[upstream]
    expected_what = f"the local upstream {upstream_path}" if upstream_path else f"s3prl {upstream}"
    if ckpt_hubert is not None and ckpt_hubert != expected:
        raise AuthorsCheckpointError(
            f"the checkpoint's HuBERT ({HUBERT_PREFIX}encoder.layers.*) has {ckpt_hubert[0]} layers of width "
            f"{ckpt_hubert[1]}, but {expected_what} has {expected[0]} of width {expected[1]}"
        )
    arch = Architecture(
        model=model,
        upstream=upstream,
        hidden_states=expected[0] + 1,
        speech_width=expected[1],
        layer_norm=False,
        max_train_samples=None,
        clip_name="",
        clip_model_name="",
        text_width=0,
        embed_dim=0,
    )
    arch.sources["upstream"] = "config audio_encoder.name" if _get(config, "audio_encoder.name") else "width"
    arch.layer_norm = bool(
        _config_value(
            arch,
            "layer_norm",
            config,
            "audio_encoder.normalize_hiddenstates",
            upstream == "hubert_large_ll60k",
        )
    )
    max_len = _config_value(arch, "max_train_samples", config, "audio_encoder.max_audio_len", 102400)
    arch.max_train_samples = None if max_len is None or int(max_len) < 0 else int(max_len)

    # ---- CLIP: the authors' clip package name -> open_clip with QuickGELU
    clip_name = _get(config, "clip.name")
    if REDUCED_TABLE not in state:
        raise AuthorsCheckpointError(f"missing key {REDUCED_TABLE} (the frozen CLIP's token embeddings)")
    width = int(state[REDUCED_TABLE].shape[1])
    if clip_name is None:
        clip_name = {512: "ViT-B/32", 768: "ViT-L/14"}.get(width)
        if clip_name is None:
            raise AuthorsCheckpointError(
                f"the stored config does not name CLIP and width {width} is neither ViT-B/32 nor ViT-L/14"
            )
        arch.sources["clip"] = f"width of {REDUCED_TABLE}"
    else:
        arch.sources["clip"] = "config clip.name"
    if clip_model_name is None:
        if clip_name not in AUTHORS_CLIPS:
            raise AuthorsCheckpointError(
                f"CLIP {clip_name!r} has no open_clip -quickgelu counterpart here ({sorted(AUTHORS_CLIPS)})"
            )
        clip_model_name = AUTHORS_CLIPS[clip_name]
    else:
        arch.sources["clip"] += f", built as {clip_model_name} (override)"
    arch.clip_name, arch.clip_model_name = clip_name, clip_model_name
    ours = _clip_shape(clip_model_name, clip_config_file)
    for key, dim, want, what in (
        (REDUCED_TABLE, 1, ours["width"], "text width"),
        (FULL_TABLE, 1, ours["width"], "text width"),
        (FULL_TABLE, 0, ours["vocab_size"], "vocabulary size"),
        ("clip.model.text_projection", 0, ours["width"], "text width"),
        ("clip.model.text_projection", 1, ours["embed_dim"], "joint embedding width"),
    ):
        if key in state and int(state[key].shape[dim]) != want:
            raise AuthorsCheckpointError(
                f"{key} has shape {_shape(state[key])}: its {what} {int(state[key].shape[dim])} does "
                f"not match {clip_model_name} ({want}); the checkpoint was trained with another CLIP"
            )
    arch.text_width, arch.embed_dim = ours["width"], ours["embed_dim"]

    # ---- branches
    if has_p:
        _parallel_architecture(arch, state, config)
    if has_c:
        _cascaded_architecture(arch, state, config)
    arch.parallel_weight = float(w_p) if w_p is not None else float(has_p)
    arch.cascaded_weight = float(w_c) if w_c is not None else float(has_c)

    # ---- contrastive loss temperature
    _require(
        config, "cl_loss.type", ["MaskedContrastiveLoss"], "our loss is the authors' masked contrastive loss"
    )
    learnable_key = "criterion.temperature" in state
    trainable = _get(config, "cl_loss.args.temperature_trainable")
    if trainable is not None and bool(trainable) != learnable_key:
        raise AuthorsCheckpointError(
            f"the stored config has cl_loss.args.temperature_trainable = {trainable} but "
            f"the state dict {'has' if learnable_key else 'lacks'} criterion.temperature"
        )
    arch.learnable_temperature = learnable_key
    arch.temperature = float(_config_value(arch, "temperature", config, "cl_loss.args.temperature", 0.07))
    for dotted, ok in (("cl_loss.args.margin", 0.0), ("cl_loss.args.dcl", False)):
        value = _get(config, dotted)
        if value is not None and value != ok:
            arch.notes.append(
                f"training-only difference: the authors trained with {dotted} = {value!r}; our loss "
                f"has no such option (inference is unaffected)"
            )

    # ---- precision (their Lightning trainer.precision, the paper's fp16 by default) and corpus
    precision = str(_config_value(arch, "amp_dtype", config, "trainer.precision", 16))
    amp = {"16": "float16", "16-mixed": "float16", "bf16": "bfloat16", "bf16-mixed": "bfloat16"}
    if precision not in amp and precision not in ("32", "32-true"):
        raise AuthorsCheckpointError(
            f"the stored config has trainer.precision = {precision!r}: not 16, bf16 or 32"
        )
    arch.amp_dtype = amp.get(precision)
    corpus = _get(config, "data.dataset.name")
    arch.corpus = str(corpus) if corpus is not None else None
    arch.sources["corpus"] = "config data.dataset.name" if corpus is not None else "not in the stored config"
    return arch


def _parallel_architecture(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> None:
    base = "model_settings.parallel_branch."
    _require(
        config,
        base + "transformer_type",
        ["TransformerEncoder"],
        "our parallel branch is a torch TransformerEncoder",
    )
    _require(config, base + "need_projection", [True], "our parallel branch ends in a linear projection")
    _require(config, base + "transformer_args.activation", ["gelu"], "our parallel layer uses GELU")
    _require(config, base + "transformer_args.norm_first", [False], "our parallel layer is post-norm")
    _require(
        config,
        base + "transformer_args.layer_norm_eps",
        [_OUR_LAYER_NORM_EPS],
        "our layer norms use eps 1e-5",
    )
    _require(
        config, base + "transformer_args.batch_first", [True], "the authors' released layout is batch-first"
    )
    layers = {int(m.group(1)) for k in state if (m := _PARALLEL_LAYER.match(k))}
    n_layers = _config_value(
        arch,
        "parallel.num_layers",
        config,
        base + "transformer_args.n_layers",
        1,
        max(layers) + 1 if layers else None,
        "parallel_branch.self_att.model.layers.*",
    )
    d_model = _config_value(
        arch, "parallel.d_model", config, base + "transformer_args.d_model", arch.speech_width
    )
    if int(d_model) != arch.speech_width:
        raise AuthorsCheckpointError(
            f"the parallel branch width {d_model} differs from HuBERT's {arch.speech_width}"
        )
    ff_key = "parallel_branch.self_att.model.layers.0.linear1.weight"
    ff = _config_value(
        arch,
        "parallel.dim_feedforward",
        config,
        base + "transformer_args.dim_feedforward",
        3072,
        int(state[ff_key].shape[0]) if ff_key in state else None,
        ff_key,
    )
    nhead = _config_value(arch, "parallel.nhead", config, base + "transformer_args.nhead", 8)
    dropout = _config_value(arch, "parallel.dropout", config, base + "transformer_args.dropout", 0.1)
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


def _cascaded_architecture(arch: Architecture, state: Mapping[str, torch.Tensor], config: Mapping) -> None:
    base = "model_settings.cascaded_branch."
    _require(
        config, base + "type", ["KW_CascadedBranch"], "our cascaded branch is the released KW_CascadedBranch"
    )
    _require(
        config,
        base + "transformer_type",
        ["MultiheadAttentionAndNorm"],
        "our cascaded branch is one attention layer with residual and LayerNorm",
    )
    _require(
        config,
        base + "transformer_args.layer_norm_eps",
        [_OUR_LAYER_NORM_EPS],
        "our layer norms use eps 1e-5",
    )
    _require(
        config,
        base + "vq.type",
        ["SimpleVectorQuantizer"],
        "our quantiser is the cosine straight-through one",
    )
    _require(
        config,
        base + "vq.args.use_gumbel",
        [False],
        "our quantiser is a straight-through softmax, not Gumbel",
    )
    _require(config, base + "vq.args.hard", [True], "our quantiser is hard (straight-through) at train time")
    _require(
        config,
        base + "keyword.batchnorms.type",
        ["eachKw"],
        "our keyword BatchNorm has statistics per keyword and dimension",
    )
    # Released: one BatchNorm1d over all K * D_t features (eachKw, parallel). The per-keyword variant
    # (bn_layers.{k}) would be a keyword-major concatenation, but no released model has it: refused, untested.
    _require(
        config,
        base + "keyword.batchnorms.parallel",
        [True],
        "the released keyword BatchNorm is one layer over all K * D_t features",
    )
    if not any(k.startswith("cascaded_branch.bn_layer.bn_layer.") for k in state):
        raise AuthorsCheckpointError(
            "the checkpoint has no keyword BatchNorm cascaded_branch.bn_layer.bn_layer.*: "
            "the released cascaded branch always has one"
        )
    cls_key = "cascaded_branch.cls"
    if cls_key not in state:
        raise AuthorsCheckpointError(f"missing key {cls_key}")
    k = _config_value(
        arch,
        "cascaded.num_keywords",
        config,
        base + "keyword.number",
        8,
        int(state[cls_key].shape[1]),
        cls_key,
    )
    d_model = _config_value(
        arch, "cascaded.d_model", config, base + "transformer_args.d_model", arch.speech_width
    )
    if int(d_model) != arch.speech_width:
        raise AuthorsCheckpointError(
            f"the cascaded branch width {d_model} differs from HuBERT's {arch.speech_width}"
        )
    nhead = _config_value(arch, "cascaded.nhead", config, base + "transformer_args.nhead", 1)
    dropout = _config_value(arch, "cascaded.dropout", config, base + "transformer_args.dropout", 0.1)
    if arch.speech_width % int(nhead):
        raise AuthorsCheckpointError(
            f"cascaded branch: width {arch.speech_width} is not divisible by nhead {nhead}"
        )
    # VQ temperature: the buffer (fixed / learnable) is the value used; the config string says how it was set.
    temp_key = "cascaded_branch.vector_quantizer.curr_temp"
    spec = str(_get(config, base + "vq.args.temp", "fixed=0.1"))
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
    arch.cascaded = dict(
        num_keywords=int(k),
        num_layers=1,
        nhead=int(nhead),
        dim_feedforward=0,
        dropout=float(dropout),
        vq_temperature=tau,
    )
    arch.sources["cascaded.num_layers"] = "MultiheadAttentionAndNorm is one layer whatever n_layers says"
    arch.sources["cascaded.dim_feedforward"] = "MultiheadAttentionAndNorm has no feed-forward"


# ============================================================================================= mapping


@dataclass
class Mapped:
    """One of our state-dict entries and where it came from."""

    ours: str
    authors: Optional[str]
    shape: List[int]
    transform: str


def expected_trainable(arch: Architecture) -> Dict[str, Tuple[str, List[int], str]]:
    """authors' trainable key -> (our key, expected shape in the authors' file, transform)."""
    d_a, d_t, d_c = arch.speech_width, arch.text_width, arch.embed_dim
    out: Dict[str, Tuple[str, List[int], str]] = {
        "audio_encoder.weightedsum_layer.weights": (
            "speech_encoder.layer_sum.weights",
            [arch.hidden_states],
            "copy",
        ),
    }
    if arch.parallel is not None:
        ff = arch.parallel["dim_feedforward"]
        out["parallel_branch.cls"] = ("parallel.cls", [1, 1, d_a], "copy")
        for i in range(arch.parallel["num_layers"]):
            theirs, ours = f"parallel_branch.self_att.model.layers.{i}.", f"parallel.layers.{i}."
            for name, shape in (
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
            ):
                out[theirs + name] = (ours + name, shape, "copy")
        out["parallel_branch.self_att.model.norm.weight"] = ("parallel.final_norm.weight", [d_a], "copy")
        out["parallel_branch.self_att.model.norm.bias"] = ("parallel.final_norm.bias", [d_a], "copy")
        out["parallel_branch.linear_proj.weight"] = ("parallel.projection.weight", [d_c, d_a], "copy")
        out["parallel_branch.linear_proj.bias"] = ("parallel.projection.bias", [d_c], "copy")
    if arch.cascaded is not None:
        k = arch.cascaded["num_keywords"]
        att, ours = "cascaded_branch.self_att.", "cascaded.layers.0."
        out["cascaded_branch.cls"] = ("cascaded.cls", [1, k, d_a], "copy")
        for name, shape in (
            ("in_proj_weight", [3 * d_a, d_a]),
            ("in_proj_bias", [3 * d_a]),
            ("out_proj.weight", [d_a, d_a]),
            ("out_proj.bias", [d_a]),
        ):
            out[att + "multihead_attn_layer." + name] = (ours + "attn." + name, shape, "copy")
        out[att + "attentionBlock_Norm.weight"] = (ours + "norm.weight", [d_a], "copy")
        out[att + "attentionBlock_Norm.bias"] = (ours + "norm.bias", [d_a], "copy")
        out["cascaded_branch.linear_proj.weight"] = ("cascaded.projection.weight", [d_t, d_a], "copy")
        out["cascaded_branch.linear_proj.bias"] = ("cascaded.projection.bias", [d_t], "copy")
        for stat in ("weight", "bias", "running_mean", "running_var"):
            out[f"cascaded_branch.bn_layer.bn_layer.{stat}"] = (
                f"cascaded.norm.{stat}",
                [k * d_t],
                f"permute dimension-major (d*{k}+k) -> keyword-major (k*{d_t}+d)",
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
    if arch.learnable_temperature:
        out["criterion.temperature"] = (
            "loss.log_scale",
            [],
            "copy: both are log(1/temperature), no clamp in the authors' loss",
        )
    return out


def classify_keys(
    state: Mapping[str, torch.Tensor], arch: Architecture
) -> Tuple[Dict[str, Tuple[str, List[int], str]], List[str], List[str], List[Dict[str, Any]]]:
    """Split the state dict: (trainable mapping, frozen HuBERT keys, frozen CLIP keys, ignored entries).

    Raises for an unknown key, a missing trainable key, or a trainable tensor of the wrong shape.
    """
    expected = expected_trainable(arch)
    hubert, clip, ignored = [], [], []
    for key, value in state.items():
        if key in EYE_BUFFERS:
            ignored.append(
                dict(
                    key=key,
                    shape=_shape(value),
                    reason="batch-size-shaped constant mask of the authors' loss, not a weight",
                )
            )
        elif key.startswith(HUBERT_PREFIX):
            hubert.append(key)
        elif key.startswith(CLIP_PREFIX) or key.startswith(CASCADED_CLIP_PREFIX):
            rest = (
                key[len(CLIP_PREFIX) :] if key.startswith(CLIP_PREFIX) else key[len(CASCADED_CLIP_PREFIX) :]
            )
            if not (rest.startswith("model.") or rest == "original_text_emb_weight"):
                raise AuthorsCheckpointError(
                    f"unknown key {key} in the checkpoint (not part of the authors' CLIP wrapper)"
                )
            clip.append(key)
        elif key not in expected:
            raise AuthorsCheckpointError(
                f"unknown key {key} in the checkpoint (shape {_shape(value)}): it has no "
                f"counterpart in a {arch.model} SpeechCLIP"
            )
    for key, (_, shape, _) in expected.items():
        if key not in state:
            if key == "cascaded_branch.vector_quantizer.curr_temp":  # a scheduled temperature is no tensor
                continue
            raise AuthorsCheckpointError(
                f"missing key {key} in the checkpoint (a {arch.model} SpeechCLIP has it)"
            )
        got = _shape(state[key])
        if got != shape and not (key == "criterion.temperature" and got in ([], [1])):
            raise AuthorsCheckpointError(
                f"shape mismatch for {key}: the checkpoint has {got}, the architecture "
                f"derived from it needs {shape}"
            )
    for key in [k for k in clip if k.startswith(CASCADED_CLIP_PREFIX)]:
        twin = CLIP_PREFIX + key[len(CASCADED_CLIP_PREFIX) :]
        if twin not in state:
            raise AuthorsCheckpointError(
                f"{key} has no counterpart {twin}: the cascaded branch's CLIP must be the model's CLIP"
            )
        a, b = state[key], state[twin]
        if a.shape != b.shape or not torch.equal(a, b):
            raise AuthorsCheckpointError(
                f"{key} differs from {twin}: the cascaded branch's CLIP must be the model's"
            )
    twins = [k for k in clip if k.startswith(CASCADED_CLIP_PREFIX)]
    if twins:
        ignored.append(
            dict(
                key=CASCADED_CLIP_PREFIX + "*",
                count=len(twins),
                reason=f"equal to {CLIP_PREFIX}* key for key (the cascaded branch holds the model's CLIP)",
            )
        )
    clip = [k for k in clip if k.startswith(CLIP_PREFIX)]
    return expected, hubert, clip, ignored


def map_state_dict(
    state: Mapping[str, torch.Tensor],
    arch: Architecture,
    expected: Mapping[str, Tuple[str, List[int], str]],
    codebook: Optional[Sequence[int]],
) -> Tuple[Dict[str, torch.Tensor], List[Mapped]]:
    """Our trainable state dict (fp32 CPU tensors) and the mapping record."""
    ours: Dict[str, torch.Tensor] = {}
    record: List[Mapped] = []
    for key, (target, _, transform) in expected.items():
        if key not in state or transform == "config value":
            if key in state:
                record.append(Mapped(target, key, _shape(state[key]), transform))
            continue
        value = state[key].detach()
        value = value.float() if value.is_floating_point() else value.long()
        if key == "criterion.temperature":
            value = value.reshape(())
        elif transform.startswith("permute dimension-major"):
            # The authors' BatchNorm feature j is (dimension j // K, keyword j % K); ours is k * D_t + d.
            k, d_t = arch.cascaded["num_keywords"], arch.text_width
            value = value.reshape(d_t, k).t().reshape(-1)
        ours[target] = value.clone().contiguous()
        record.append(Mapped(target, key, _shape(value), transform))
    if arch.cascaded is not None:
        ours["cascaded.codebook_ids"] = torch.tensor(list(codebook or []), dtype=torch.long)
        record.append(
            Mapped(
                "cascaded.codebook_ids",
                None,
                [len(codebook or [])],
                "recovered vocabulary ids (authors' order, VQ-masked positions removed)",
            )
        )
    return ours, record


# ========================================================================================= vocabulary


def _row_hashes(table: torch.Tensor) -> Dict[bytes, List[int]]:
    """Row bytes digest -> row indices, to find equal rows without comparing every pair."""
    rows = table.detach().float().contiguous().numpy()
    out: Dict[bytes, List[int]] = {}
    for i in range(rows.shape[0]):
        out.setdefault(hashlib.blake2b(rows[i].tobytes(), digest_size=16).digest(), []).append(i)
    return out


def recover_vocabulary(
    state: Mapping[str, torch.Tensor], vocab_usage: Optional[str | Path] = None
) -> Tuple[List[int], str]:
    """The CLIP vocabulary id of every row of the checkpoint's reduced token-embedding table, in its order.

    From ``vocab_usage`` (the authors' ``text_clip_vocab_usage_byfreq.npy``: rows ``(id, count)``) when given,
    checked row by row against the table; else by matching each reduced row bitwise against the full table
    ``clip.original_text_emb_weight``. Returns (ids, how they were obtained).
    """
    reduced = state[REDUCED_TABLE].detach().float()
    full = state.get(FULL_TABLE)
    if vocab_usage is not None:
        vocab_usage = Path(vocab_usage)
        if not vocab_usage.is_file():
            raise FileNotFoundError(f"vocabulary usage file {vocab_usage} does not exist")
        try:
            usage = np.load(vocab_usage, allow_pickle=False)
        except Exception as e:
            raise AuthorsCheckpointError(
                f"{vocab_usage} is not a numpy .npy array ({_one_line(str(e))})"
            ) from None
        if usage.ndim not in (1, 2) or not np.issubdtype(usage.dtype, np.integer):
            raise AuthorsCheckpointError(
                f"{vocab_usage}: expected integer rows (id, count) or ids, got {usage.dtype} {usage.shape}"
            )
        ids = [int(i) for i in (usage[:, 0] if usage.ndim == 2 else usage)]
        if len(ids) != reduced.shape[0]:
            raise AuthorsCheckpointError(
                f"{vocab_usage} lists {len(ids)} ids but {REDUCED_TABLE} has "
                f"{reduced.shape[0]} rows: it is not this checkpoint's vocabulary"
            )
        if full is not None:
            full = full.detach().float()
            bad = [
                i
                for i, t in enumerate(ids)
                if not (0 <= t < full.shape[0] and torch.equal(reduced[i], full[t]))
            ]
            if bad:
                i = bad[0]
                raise AuthorsCheckpointError(
                    f"{vocab_usage} row {i} says id {ids[i]}, but row {i} of {REDUCED_TABLE} "
                    f"is not row {ids[i]} of {FULL_TABLE} ({len(bad)} rows disagree): "
                    f"not this checkpoint's vocabulary"
                )
            return ids, f"usage file {vocab_usage}, checked row by row against {FULL_TABLE}"
        return ids, f"usage file {vocab_usage} (unchecked: the checkpoint has no {FULL_TABLE})"
    if full is None:
        raise AuthorsCheckpointError(
            f"the checkpoint has no {FULL_TABLE} to recover the keyword vocabulary from; "
            f"give the authors' text_clip_vocab_usage_byfreq.npy (vocab_usage)"
        )
    full = full.detach().float()
    if reduced.shape[0] == full.shape[0] and torch.equal(reduced, full):
        return list(range(full.shape[0])), "the token table is the full vocabulary"
    index = _row_hashes(full)
    ids = []
    for i in range(reduced.shape[0]):
        row = reduced[i]
        digest = hashlib.blake2b(row.contiguous().numpy().tobytes(), digest_size=16).digest()
        matches = [j for j in index.get(digest, []) if torch.equal(full[j], row)]
        if not matches:
            raise AuthorsCheckpointError(
                f"row {i} of {REDUCED_TABLE} equals no row of {FULL_TABLE}: cannot recover "
                f"its vocabulary id (give vocab_usage)"
            )
        if len(matches) > 1:
            raise AuthorsCheckpointError(
                f"row {i} of {REDUCED_TABLE} equals rows {matches} of {FULL_TABLE}: its "
                f"vocabulary id is ambiguous (give vocab_usage)"
            )
        ids.append(matches[0])
    if len(set(ids)) != len(ids):
        raise AuthorsCheckpointError(f"{REDUCED_TABLE} repeats vocabulary rows: not a reduced CLIP table")
    return ids, f"matched each row of {REDUCED_TABLE} bitwise against {FULL_TABLE}"


def codebook_from_vocabulary(ids: Sequence[int]) -> List[int]:
    """Our codebook: the reduced vocabulary without the rows the authors' VQ never selects, in their order.

    Their argmax over the reduced table with those rows at -inf picks the same vocabulary id as our argmax
    over this codebook (same rows, same order, so ties break the same way)."""
    masked = set(AUTHORS_VQ_MASKED_POSITIONS)
    codebook = [int(t) for i, t in enumerate(ids) if i not in masked]
    special = [(i, t) for i, t in enumerate(ids) if i not in masked and t in SPECIAL_IDS]
    if special:
        i, t = special[0]
        raise AuthorsCheckpointError(
            f"the authors' quantiser can select special token {t} (reduced row {i}); our "
            f"codebook cannot hold special tokens, so this checkpoint cannot be expressed"
        )
    return codebook


# ============================================================================================ checks


def _compare_frozen(
    what: str,
    ckpt: Mapping[str, torch.Tensor],
    keys: Sequence[str],
    prefix: str,
    ours: Mapping[str, torch.Tensor],
    rename: Callable[[str], Optional[str]],
    special: Optional[Mapping[str, torch.Tensor]] = None,
) -> Dict[str, Any]:
    """Compare frozen tensors of the checkpoint with the tower we built; raise naming the first mismatch."""
    checked, skipped = 0, []
    special = special or {}
    for key in keys:
        ours_key = rename(key[len(prefix) :])
        if ours_key is None:
            skipped.append(key)
            continue
        if key in special:
            mine = special[key]
        elif ours_key in ours:
            mine = ours[ours_key]
        else:
            raise AuthorsCheckpointError(f"unknown key {key}: the {what} we build has no {ours_key}")
        theirs = ckpt[key]
        if theirs.shape != mine.shape:
            raise AuthorsCheckpointError(
                f"shape mismatch for {key}: the checkpoint has {_shape(theirs)}, the {what} "
                f"we build has {_shape(mine)}: the checkpoint was trained with another {what}"
            )
        a, b = theirs.detach().float(), mine.detach().float().to(theirs.device)
        if not torch.allclose(a, b, rtol=1e-4, atol=1e-6):
            diff = float((a - b).abs().max())
            raise AuthorsCheckpointError(
                f"{key} differs from the {what} we build (max abs difference {diff:.3g}): the "
                f"checkpoint was trained with another {what}"
            )
        checked += 1
    return dict(checked=checked, skipped=skipped)


def check_frozen_towers(
    model: torch.nn.Module,
    state: Mapping[str, torch.Tensor],
    hubert_keys: Sequence[str],
    clip_keys: Sequence[str],
    vocabulary: Sequence[int],
) -> Dict[str, Any]:
    """The checkpoint's frozen HuBERT and CLIP must be the towers our config builds (value by value)."""
    upstream = model.speech_encoder.upstream.expert.model.state_dict()
    hubert = _compare_frozen("HuBERT", state, hubert_keys, HUBERT_PREFIX, upstream, lambda k: k)
    text = model.text_encoder.state_dict()
    visual = model.image_encoder.visual.state_dict() if model.image_encoder is not None else {}
    towers = {**text, **{"visual." + k: v for k, v in visual.items()}}
    table = text["token_embedding.weight"]

    def rename(rest: str) -> Optional[str]:
        if rest == "model.logit_scale":
            return None  # CLIP's own logit scale is unused by SpeechCLIP
        if rest == "original_text_emb_weight":
            return "token_embedding.weight"
        return rest[len("model.") :]

    special = {REDUCED_TABLE: table[torch.tensor(list(vocabulary), dtype=torch.long)]}
    clip = _compare_frozen("CLIP", state, clip_keys, CLIP_PREFIX, towers, rename, special)
    return dict(hubert=hubert, clip=clip)


# ============================================================================================ import


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def authors_config(ckpt: Mapping[str, Any]) -> Dict[str, Any]:
    """The stored avssl config as plain data ({} when the checkpoint has none)."""
    hp = to_plain(ckpt.get("hyper_parameters") or {})
    config = hp.get("config", hp) if isinstance(hp, dict) else {}
    if not isinstance(config, dict):
        raise AuthorsCheckpointError(
            f"hyper_parameters.config is a {type(config).__name__}, not the authors' config"
        )
    return config


def our_config(
    arch: Architecture,
    clip_pretrained: str,
    clip_config_file: Optional[str],
    upstream_path: Optional[Path],
    codebook_file: Optional[Path],
    max_scale: float,
) -> Dict[str, Any]:
    """The training config (our format) that rebuilds the imported model."""
    clip_conf: Dict[str, Any] = dict(model_name=arch.clip_model_name, pretrained=clip_pretrained)
    if clip_config_file:
        clip_conf["config_file"] = str(Path(clip_config_file).resolve())
    if upstream_path is not None:
        speech: Dict[str, Any] = dict(upstream="hubert_local", path_or_url=str(upstream_path.resolve()))
    else:
        speech = dict(upstream=arch.upstream)
    speech.update(
        layer_norm=arch.layer_norm,
        max_train_samples=arch.max_train_samples,
        raw_last_layer=arch.raw_last_layer,
    )
    model_conf: Dict[str, Any] = {}
    if arch.parallel is not None:
        model_conf["parallel_conf"] = dict(arch.parallel)
    if arch.cascaded is not None:
        model_conf["cascaded_conf"] = dict(arch.cascaded, codebook=str(codebook_file))
    if arch.model == "hybrid":
        model_conf.update(parallel_weight=arch.parallel_weight, cascaded_weight=arch.cascaded_weight)
    model_conf.update(
        temperature=arch.temperature, learnable_temperature=arch.learnable_temperature, max_scale=max_scale
    )
    return dict(
        clip_conf=clip_conf,
        speech_encoder="s3prl",
        speech_encoder_conf=speech,
        model=arch.model,
        model_conf=model_conf,
        image_input="embedding",
        # on GPU, inference in the precision the authors trained and evaluated in
        use_amp=arch.amp_dtype is not None,
        amp_dtype=arch.amp_dtype or "float16",
    )


def _release(path: Path) -> Dict[str, Any]:
    """What a released file's name says (the dev metric the authors selected it by), if it is theirs."""
    m = re.search(r"epoch_(\d+)-step_(\d+)-val_recall_mean_(1|10)_([0-9.]+)\.ckpt$", path.name)
    if m is None:
        return {}
    return dict(
        epoch=int(m.group(1)),
        step=int(m.group(2)),
        dev_metric=f"mean R@{m.group(3)} (speech->image, image->speech)",
        dev_value=float(m.group(4)),
    )


# Where an imported model can still differ from the authors' code (recorded in import.json).
KNOWN_MISMATCHES = [
    "batched frame lengths: our speech encoder attends each utterance's own HuBERT frames, "
    "(n - 400) // 320 + 1; the authors attend min(round(n / 320), frames of the padded batch), which for "
    "most utterances shorter than their batch's longest is one frame more, computed over the batch's "
    "padding. One utterance alone (and the longest of any batch) is framed identically; the authors "
    "evaluated in batches of 8 (data.dev_batch_size), so recall on an imported model can differ "
    "slightly from theirs",
    "HuBERT Base's GroupNorm feature extractor sees the zero padding of a batch, in their code and ours: "
    "features depend slightly on an utterance's batch-mates (inference batch_size 16 here, 8 there)",
    "vector quantiser: their cosine is F.cosine_similarity (eps 1e-8 on the product of norms), ours "
    "normalize(z) @ normalize(C).T (eps 1e-12 per norm), ~1e-7 apart: a near-tie could pick another row",
    "keyword hit rate: their top-5 neighbours are searched over the whole reduced table, pad/SOT/EOT rows "
    "included, ours over the codebook (those rows excluded), and special tokens never count as hits here",
]


def import_checkpoint(
    ckpt_path: str | Path,
    out_dir: str | Path,
    vocab_usage: Optional[str | Path] = None,
    clip_pretrained: str = "openai",
    upstream_path: Optional[str | Path] = None,
    clip_model_name: Optional[str] = None,
    clip_config_file: Optional[str | Path] = None,
    verify: bool = True,
) -> Path:
    """Import one of the authors' checkpoints into ``out_dir`` (see the module doc); returns ``out_dir``.

    Args:
        ckpt_path: the authors' Lightning ``.ckpt``.
        out_dir: experiment folder to write (created; our four files in it are replaced).
        vocab_usage: the authors' ``text_clip_vocab_usage_byfreq.npy``; by default the vocabulary is recovered
            from the checkpoint itself.
        clip_pretrained: open_clip pretrained tag (``openai``, the weights the authors froze) or a local file.
        upstream_path: a local s3prl converted HuBERT checkpoint (``hubert_local``) instead of the
            public name.
        clip_model_name, clip_config_file: build another open_clip architecture than the one the checkpoint
            names (a local test CLIP; the checkpoint's CLIP shapes must match it).
        verify: rebuild our model from the written config, compare the checkpoint's frozen HuBERT and
            CLIP with the towers it builds, and load the weights with ``strict=True`` before writing
            anything (needs the CLIP / HuBERT weights; without it only shapes are checked).
    Raises:
        FileNotFoundError, AuthorsCheckpointError (UnsafeCheckpointError for a refused pickle global).
    """
    ckpt_path, out_dir = Path(ckpt_path), Path(out_dir)
    upstream = Path(upstream_path) if upstream_path is not None else None
    if upstream is not None and not upstream.is_file():
        raise FileNotFoundError(f"upstream checkpoint {upstream} does not exist")
    if os.path.isfile(clip_pretrained):  # a local weights file: absolute, so the config works from anywhere
        clip_pretrained = str(Path(clip_pretrained).resolve())
    elif os.sep in clip_pretrained or Path(clip_pretrained).suffix in (".pt", ".pth", ".bin", ".safetensors"):
        raise FileNotFoundError(f"CLIP weights {clip_pretrained} do not exist")
    if clip_config_file is not None and not Path(clip_config_file).is_file():
        raise FileNotFoundError(f"open_clip config {clip_config_file} does not exist")
    ckpt = load_authors_checkpoint(ckpt_path)
    state: Dict[str, torch.Tensor] = dict(ckpt["state_dict"])
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise AuthorsCheckpointError(
            f"state_dict entry {bad[0]} is a {type(state[bad[0]]).__name__}, not a tensor"
        )
    config = authors_config(ckpt)
    arch = derive_architecture(
        state, config, clip_model_name, str(clip_config_file) if clip_config_file else None, upstream
    )
    expected, hubert_keys, clip_keys, ignored = classify_keys(state, arch)
    vocabulary, vocab_source = recover_vocabulary(state, vocab_usage)
    codebook = codebook_from_vocabulary(vocabulary) if arch.cascaded is not None else None
    weights, mapping = map_state_dict(state, arch, expected, codebook)
    max_scale = 100.0
    if arch.learnable_temperature:
        scale = math.exp(float(weights["loss.log_scale"]))
        if scale > max_scale:  # the authors do not clamp: keep their scale exact
            max_scale = float(math.ceil(scale) + 1)
            arch.notes.append(
                f"the imported logit scale {scale:.4g} exceeds our default clamp 100; max_scale set to "
                f"{max_scale} so that it is used as is"
            )

    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        _write_import(
            ckpt_path,
            out_dir,
            ckpt,
            config,
            state,
            arch,
            weights,
            mapping,
            ignored,
            hubert_keys,
            clip_keys,
            vocabulary,
            vocab_source,
            codebook,
            clip_pretrained,
            str(clip_config_file) if clip_config_file else None,
            upstream,
            max_scale,
            verify,
        )
    except BaseException:
        if created and not any(out_dir.iterdir()):
            out_dir.rmdir()  # leave nothing behind for a failed import into a new folder
        raise
    logger.info(
        "imported %s (%s, %s + %s) into %s",
        ckpt_path,
        arch.model,
        arch.upstream,
        arch.clip_model_name,
        out_dir,
    )
    return out_dir


def _write_import(
    ckpt_path: Path,
    out_dir: Path,
    ckpt: Mapping[str, Any],
    config: Mapping[str, Any],
    state: Mapping[str, torch.Tensor],
    arch: Architecture,
    weights: Dict[str, torch.Tensor],
    mapping: List[Mapped],
    ignored: List[Dict[str, Any]],
    hubert_keys: List[str],
    clip_keys: List[str],
    vocabulary: List[int],
    vocab_source: str,
    codebook: Optional[List[int]],
    clip_pretrained: str,
    clip_config_file: Optional[str],
    upstream: Optional[Path],
    max_scale: float,
    verify: bool,
) -> None:
    """Verify (optionally) in a scratch folder inside ``out_dir``, then move the four files in place."""
    final_codebook = (out_dir / CODEBOOK_NAME).resolve()
    frozen: Dict[str, Any] = dict(hubert_keys=len(hubert_keys), clip_keys=len(clip_keys))
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".importing-") as work:
        work_dir = Path(work)
        if codebook is not None:
            write_codebook(work_dir / CODEBOOK_NAME, codebook)
        config_out = our_config(
            arch,
            clip_pretrained,
            clip_config_file,
            upstream,
            final_codebook if codebook is not None else None,
            max_scale,
        )
        if verify:
            check = json.loads(json.dumps(config_out))
            if codebook is not None:
                check["model_conf"]["cascaded_conf"]["codebook"] = str(work_dir / CODEBOOK_NAME)
            try:
                model = build_model(check, clip_weights=True, image_tower=True)
            except (RuntimeError, ValueError, OSError) as e:  # e.g. no network for the public weights
                raise AuthorsCheckpointError(
                    f"could not build the frozen towers the config names, to check the checkpoint against "
                    f"them ({type(e).__name__}: {_one_line(str(e))}); give local files (clip_pretrained, "
                    f"upstream_path) or skip the check (verify=False / --no_verify)"
                ) from None
            frozen.update(check_frozen_towers(model, state, hubert_keys, clip_keys, vocabulary))
            try:
                model.load_state_dict(weights, strict=True)
            except RuntimeError as e:
                raise AuthorsCheckpointError(
                    f"the mapped weights do not load into our model: {_one_line(str(e))}"
                ) from None
            del model
            frozen["verified"] = (
                "frozen tensors equal the towers built from config.yaml; weights load strict=True"
            )
        else:
            frozen["verified"] = "no (shapes only): the towers were not built"
        torch.save(weights, work_dir / WEIGHTS_NAME)
        header = (
            f"# SpeechCLIP imported from the authors' checkpoint {ckpt_path.name}\n"
            f"# by espnet_speechclip.bin.import_authors_ckpt (see import.json)\n"
        )
        (work_dir / "config.yaml").write_text(
            header + yaml.safe_dump(config_out, sort_keys=False), encoding="utf-8"
        )
        record = dict(
            format=IMPORT_FORMAT,
            format_version=IMPORT_FORMAT_VERSION,
            source=dict(
                path=str(ckpt_path.resolve()),
                name=ckpt_path.name,
                sha256=_sha256(ckpt_path),
                bytes=ckpt_path.stat().st_size,
                epoch=to_plain(ckpt.get("epoch")),
                global_step=to_plain(ckpt.get("global_step")),
                lightning_version=to_plain(ckpt.get("pytorch-lightning_version")),
                release=_release(ckpt_path),
            ),
            architecture=asdict(arch),
            vocabulary=dict(
                size=len(vocabulary),
                source=vocab_source,
                vq_masked_positions=list(AUTHORS_VQ_MASKED_POSITIONS),
                vq_masked_ids=[vocabulary[i] for i in AUTHORS_VQ_MASKED_POSITIONS if i < len(vocabulary)],
                codebook_size=len(codebook) if codebook is not None else None,
            ),
            mapping=[asdict(m) for m in mapping],
            ignored=ignored,
            frozen=frozen,
            known_mismatches=KNOWN_MISMATCHES,
            authors_config={
                k: config.get(k)
                for k in ("model_settings", "cl_loss", "clip", "audio_encoder", "data", "trainer")
                if k in config
            },
        )
        (work_dir / "import.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        for name in ("config.yaml", WEIGHTS_NAME, "import.json") + (
            (CODEBOOK_NAME,) if codebook is not None else ()
        ):
            os.replace(work_dir / name, out_dir / name)
    if codebook is None and (out_dir / CODEBOOK_NAME).exists():
        (out_dir / CODEBOOK_NAME).unlink()  # a stale codebook of an earlier cascaded import


def import_card_text(out_dir: str | Path) -> str:
    """The model-card paragraph of an imported experiment folder (from its ``import.json``)."""
    record = json.loads((Path(out_dir) / "import.json").read_text(encoding="utf-8"))
    src = record["source"]
    return (
        f"Weights imported from the authors' released checkpoint `{src['name']}` (sha256 {src['sha256']}) "
        f"of github.com/atosystem/SpeechCLIP; see import.json for the key mapping and known differences."
    )


def pack_imported(out_dir: str | Path) -> Path:
    """Pack an imported experiment folder into ``out_dir/packed/model.zip`` (recipe stage 8's archive)."""
    from espnet_speechclip.inference.packing import pack_model

    out_dir = Path(out_dir)
    return pack_model(
        out_dir / "config.yaml",
        out_dir / WEIGHTS_NAME,
        out_dir / "packed" / "model.zip",
        card_text=import_card_text(out_dir),
    )


__all__ = [
    "AuthorsCheckpointError",
    "UnsafeCheckpointError",
    "load_authors_checkpoint",
    "to_plain",
    "derive_architecture",
    "recover_vocabulary",
    "codebook_from_vocabulary",
    "import_checkpoint",
    "import_card_text",
    "pack_imported",
]
