"""The inference package: its names imported on first use, so that its light modules need no torch."""

import subprocess
import sys

import pytest
from helpers import ROOT


def test_the_packed_format_and_the_hub_import_without_torch():
    """What ``hub_download`` imports: a fresh interpreter (torch costs ~2 s of each such command)."""
    code = (
        "import sys, espnet_speechclip.inference.archive, espnet_speechclip.inference.hub; "
        "print('torch' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


def test_the_package_names_are_the_modules_ones():
    import espnet_speechclip.inference as inference
    from espnet_speechclip.inference.result_types import QueryResult
    from espnet_speechclip.inference.speech2image import Speech2Image

    assert inference.Speech2Image is Speech2Image and inference.QueryResult is QueryResult
    assert all(getattr(inference, name) is not None for name in inference.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        inference.Nope  # noqa: B018
