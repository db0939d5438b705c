"""The errors SpeechCLIP raises for its users, and how they reach the users of the command-line entry points.

A problem with the user's input that SpeechCLIP's own code detects and explains (a missing file, an unknown
upstream or CLIP name, a bad codebook, unusable audio, a stale or damaged artifact) is a
:class:`SpeechCLIPError`. An entry point prints it as one line, ``<program>: error: <message>``, with exit
status 1: the message already names the file, key or utterance, and 25 lines of traceback around it only
hide it. Any other exception (a bug, or an error inside ESPnet, torch or s3prl) keeps its full traceback.
``SPEECHCLIP_DEBUG=1`` shows the traceback in every case.

Every ``python -m espnet_speechclip.bin.<tool>`` runs its ``main`` through :func:`run_cli`; calling ``main``
from Python raises as usual.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, Optional

_PACKAGE = str(Path(__file__).resolve().parent)
DEBUG_ENV = "SPEECHCLIP_DEBUG"


class SpeechCLIPError(Exception):
    """Base of every error SpeechCLIP raises about its user's input or setup; :func:`run_cli` prints it
    as one line. Each kind also derives from the builtin error it has always been (a ValueError, a
    FileNotFoundError, ...), so ``except ValueError`` keeps working."""


class InputError(SpeechCLIPError, ValueError):
    """A value in the user's input that cannot be used: a config option, a data file's content, a
    command-line argument, a model that does not fit its data. (:class:`ConfigError`, ``MediaError``,
    ``PackError``, ``DataCheckError`` are kinds of it.)"""


class MissingFileError(SpeechCLIPError, FileNotFoundError):
    """A file or folder the input names does not exist."""


class MissingKeyError(SpeechCLIPError, KeyError):
    """An entry the input lacks (an utterance of a data dir, a key of a result)."""

    def __str__(self) -> str:  # KeyError's str() quotes its argument: a message is no key
        return str(self.args[0]) if self.args else type(self).__name__


class RunError(SpeechCLIPError, RuntimeError):
    """Something a run needs that is missing or does not match: a system tool (espeak-ng, a browser),
    CLIP weights, a model file of another model, a Hub repo, a stale artifact (``HubError``,
    ``ProvenanceError``)."""


def user_message(error: BaseException) -> Optional[str]:
    """The one-line message for an input error raised by SpeechCLIP, else None (show the traceback)."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return None
    if not isinstance(error, SpeechCLIPError):
        return None
    # KeyError's str() quotes its argument
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def run_cli(main: Callable[[], object], prog: Optional[str] = None) -> None:
    """Run an entry point's ``main()``; an input error exits with one line instead of a traceback."""
    try:
        main()
    except Exception as e:
        message = user_message(e)
        if message is None:
            raise
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        name = prog or (f"python -m {spec.name}" if spec is not None else Path(sys.argv[0]).name)
        print(f"{name}: error: {message} (set {DEBUG_ENV}=1 for the traceback)", file=sys.stderr)
        sys.exit(1)
