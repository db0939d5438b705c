"""Work-arounds for the pinned versions of s3prl, torchaudio, ESPnet and g2p_en, and quiet entry points.

s3prl 0.4.18 imports every hub entry when ``s3prl.nn`` / ``s3prl.hub`` is imported; two of them
(byol_s, mos_prediction) call torchaudio APIs that torchaudio >= 2.9 removed, so the whole import
fails (s3prl issue #575). Neither entry is used by SpeechCLIP, so empty stand-in modules are placed in
``sys.modules`` before s3prl is imported. This costs nothing and does not import s3prl itself.

ESPnet imports ``g2p_en`` with its text modules, and ``g2p_en`` downloads two NLTK resources at import
time when they are missing: every ESPnet command then prints "[nltk_data] Error loading cmudict" on a
machine without network access (and waits for the network on a slow one), although nothing here
converts graphemes to phonemes. :func:`defer_espnet_text_imports` moves those downloads from import to
the first ``g2p_en.G2p()``, the one place that needs them, for every importer of ``g2p_en`` once
``espnet_speechclip`` is imported; nothing is written anywhere and NLTK's settings are not touched. It
also lets ``g2p_en`` and tacotron's cleaners (:data:`DEFERRED_IMPORTS`) run at their first use only.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import importlib.abc
import io
import sys
import types
from typing import Callable, Container, List, Optional, Sequence

_BROKEN_S3PRL_HUBCONFS = (
    "s3prl.upstream.byol_s.hubconf",
    "s3prl.upstream.mos_prediction.hubconf",
)


def patch_s3prl() -> None:
    for name in _BROKEN_S3PRL_HUBCONFS:
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)


# ---------------------------------------------------------------------------------- import hooks
ExecModule = Callable[[types.ModuleType], None]


class _WrappedLoader(importlib.abc.Loader):
    """Runs ``around(real exec_module, module)``; anything else (get_source for tracebacks...) is
    delegated to the real loader."""

    def __init__(self, loader: importlib.abc.Loader, around: Callable[[ExecModule, types.ModuleType], None]):
        self._loader = loader
        self._around = around

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._around(self._loader.exec_module, module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class ModuleExecHook(importlib.abc.MetaPathFinder):
    """A ``sys.meta_path`` finder that runs ``around(exec_module, module)`` in place of the execution of
    the modules named in ``modules``, whoever imports them and whenever. The module is found by the
    other finders; every other import is left alone (``None``: ask the next finder).

    Args:
        modules: full module names (any container; read at each import, so it may grow later).
        around: ``around(exec_module, module)`` must call ``exec_module(module)`` once, now or
            (:class:`DeferredModule`) at the module's first use.
    """

    def __init__(self, modules: Container[str], around: Callable[[ExecModule, types.ModuleType], None]):
        self._modules = modules
        self._around = around

    def find_spec(self, fullname: str, path, target=None) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in self._modules:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _WrappedLoader(spec.loader, self._around)
                return spec
        return None


# ------------------------------------------------------------------------------------ g2p_en / NLTK
G2P_PACKAGE = "g2p_en"
G2P_MODULE = "g2p_en.g2p"
# (resource path that NLTK looks up, package name that nltk.download takes), as g2p_en checks them
G2P_NLTK_RESOURCES = (
    ("taggers/averaged_perceptron_tagger_eng.zip", "averaged_perceptron_tagger_eng"),
    ("corpora/cmudict.zip", "cmudict"),
)


def fetch_g2p_resources() -> None:
    """What ``g2p_en`` does at import, done when a ``G2p`` is first built: download its NLTK
    resources if they are missing."""
    import nltk

    for resource, package in G2P_NLTK_RESOURCES:
        try:
            nltk.data.find(resource)
        except LookupError:
            nltk.download(package)


def _exec_g2p_without_downloads(exec_module: ExecModule, module: types.ModuleType) -> None:
    import nltk

    download = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        exec_module(module)
    finally:
        nltk.download = download
    init = module.G2p.__init__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        fetch_g2p_resources()
        init(self, *args, **kwargs)

    module.G2p.__init__ = __init__


class _G2pImportHook(ModuleExecHook):
    def __init__(self):
        super().__init__((G2P_MODULE,), _exec_g2p_without_downloads)


class DeferredModule(types.ModuleType):
    """A module whose code has not run yet: it runs at the first lookup of a name the module does not
    have (``module.G2p``, ``from module import G2p``). Its import attributes (``__file__``,
    ``__spec__``, ``__path__``...) are there from the start, so code that walks ``sys.modules`` and reads
    those (``inspect.getmodule`` does) leaves it unloaded, unlike importlib's LazyLoader."""

    def __getattr__(self, name: str):
        if name.startswith("__") and name.endswith("__"):  # probes for optional dunders load nothing
            raise AttributeError(name)
        exec_module = _DEFERRED.pop(self.__name__)
        self.__class__ = types.ModuleType
        exec_module(self)
        return getattr(self, name)


_DEFERRED: dict = {}  # module name -> the exec_module that DeferredModule runs at first use


def _defer_exec(exec_module: ExecModule, module: types.ModuleType) -> None:
    _DEFERRED[module.__name__] = exec_module
    module.__class__ = DeferredModule


# ESPnet's text modules import these at the top and use them only to phonemise or clean English text
# (``g2p_en.G2p()``, ``tacotron_cleaner.cleaners.custom_english_cleaners``); each builds an ``inflect``
# engine at import, and the two cost about 5 s of every ESPnet ASR or tokenizer command's start-up on a
# small CPU. Their code runs at their first use instead.
DEFERRED_IMPORTS = (G2P_PACKAGE, "tacotron_cleaner.cleaners")


class _DeferredImportHook(ModuleExecHook):
    def __init__(self):
        super().__init__(DEFERRED_IMPORTS, _defer_exec)


def defer_espnet_text_imports() -> None:
    """Make a later ``import g2p_en`` try no NLTK download, and the modules of :data:`DEFERRED_IMPORTS`
    run at their first use; ``g2p_en.G2p()`` fetches what it needs (idempotent; a module imported
    already stays as it is)."""
    if G2P_MODULE not in sys.modules and not any(isinstance(f, _G2pImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _G2pImportHook())
    if not any(isinstance(f, _DeferredImportHook) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferredImportHook())


# ------------------------------------------------------------------------------------ ESPnet entry points
ESPNET_ATTENTION = "espnet.nets.pytorch_backend.transformer.attention"
FLASH_ATTENTION_NOTICE = "Failed to import Flash Attention"


def import_without_notice(module: str, notice: str) -> None:
    """Import ``module`` with what it prints to STDOUT sent to stderr, except the lines that start
    with ``notice``."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        importlib.import_module(module)
    for line in out.getvalue().splitlines():
        if not line.startswith(notice):
            print(line, file=sys.stderr)


def quiet_espnet_import() -> None:
    """Import ESPnet's attention module without its notice on STDOUT ("Failed to import Flash
    Attention, using ESPnet default", printed whenever the optional flash_attn is not installed), which
    would also corrupt ``--print_config > conf.yaml``. Entry points that run an ESPnet task call this
    before importing it. (Only that module: AbsTask.print_config binds sys.stdout as a default argument
    at import time.)"""
    import_without_notice(ESPNET_ATTENTION, FLASH_ATTENTION_NOTICE)


def _raw_epilog(formatter: type) -> type:
    if issubclass(formatter, argparse.RawDescriptionHelpFormatter):
        return formatter
    return type(f"Raw{formatter.__name__}", (argparse.RawDescriptionHelpFormatter, formatter), {})


def answer_help_first(
    get_parser: Callable[[], argparse.ArgumentParser], cmd: Optional[Sequence[str]], epilog: str = ""
) -> None:
    """``-h`` / ``--help``: print the help of ``get_parser()`` (with ``epilog`` after the options) and
    exit. ESPnet's mains print the command line to stderr before they parse it, so that a log shows
    what ran; help should start with the usage instead."""
    argv: List[str] = list(sys.argv[1:] if cmd is None else cmd)
    if "-h" not in argv and "--help" not in argv:
        return
    parser = get_parser()
    if epilog:
        parser.epilog = epilog
        parser.formatter_class = _raw_epilog(parser.formatter_class)
    parser.parse_args(argv)
