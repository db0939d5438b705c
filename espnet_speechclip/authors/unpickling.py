"""Reading a released Lightning checkpoint without running any of its code: a restricted unpickler.

The authors' files pickle their avssl config classes, Lightning objects and (SpeechCLIP+) a WandbLogger
beside the tensors. :class:`RestrictedUnpickler` rebuilds plain containers, tensors, numpy scalars / arrays
and inert stand-ins for those classes, and refuses every other global by name, so a checkpoint from the
internet cannot run code when it is read. :func:`to_plain` turns what it read into plain data.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from espnet_speechclip.errors import InputError, MissingFileError


class AuthorsCheckpointError(InputError):
    """A file that cannot be imported: not a checkpoint, an unknown key, a shape mismatch, a CLIP or HuBERT
    that is not the one the checkpoint was trained with, an architecture our model cannot express."""


class UnsafeCheckpointError(AuthorsCheckpointError):
    """The pickle references a global outside the allow-list; nothing it names was imported or called."""


def one_line(text: str) -> str:
    """A message on one line (library errors span several)."""
    return " ".join(text.split())


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


# Python 2 module names that protocol-2 pickles use for what Python 3 calls otherwise.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg", "UserDict": "collections"}


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only allow-listed globals (see the module doc)."""

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (what torch.save writes) name built-ins by their Python 2 module
        # (``__builtin__.set``); read them, and name refusals, under the Python 3 name.
        module = _PY2_MODULES.get(module, module)
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
        raise MissingFileError(f"checkpoint {path} does not exist")
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
            f"{path} is not a readable PyTorch checkpoint ({type(e).__name__}: {one_line(str(e))})"
        ) from None
    if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        obj = {"state_dict": obj}  # a weights-only save: the bare state dict
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
