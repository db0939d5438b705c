import os
import sys
from pathlib import Path

import pytest

# The tests build tiny models and run on 2 shared cores: one thread each avoids oversubscription,
# which slows tiny torch ops by orders of magnitude.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """clip_conf of a random tiny CLIP saved as a local open_clip weights file."""
    from helpers import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt")


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory):
    from helpers import make_tiny_hubert

    return make_tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny_hubert.pt")
