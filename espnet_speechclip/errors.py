"""How errors reach the users of the command-line entry points.

A problem with the user's input that SpeechCLIP's own code detects and explains (a missing file, an unknown
upstream or CLIP name, a bad codebook, unusable audio, a stale or damaged artifact) is printed as one line,
``<program>: error: <message>``, with exit status 1: the message already names the file, key or utterance,
and 25 lines of traceback around it only hide it. Any other exception (a bug, or an error inside ESPnet,
torch or s3prl) keeps its full traceback. ``SPEECHCLIP_DEBUG=1`` shows the traceback in every case.

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
# What SpeechCLIP raises for bad input: ConfigError, MediaError, PackError, DataCheckError are ValueErrors,
# ProvenanceError a RuntimeError, a missing file FileNotFoundError.
USER_ERRORS = (ValueError, FileNotFoundError, KeyError, RuntimeError)


def raised_by_us(error: BaseException) -> bool:
    """Whether ``error`` was raised by a line of this package (not by a library it called)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return str(Path(tb.tb_frame.f_code.co_filename).resolve()).startswith(_PACKAGE)


def user_message(error: BaseException) -> Optional[str]:
    """The one-line message for an input error raised by SpeechCLIP, else None (show the traceback)."""
    if os.environ.get(DEBUG_ENV, "") not in ("", "0"):
        return None
    if not isinstance(error, USER_ERRORS) or not raised_by_us(error):
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
