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


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts and ends on one torch thread: a test that runs an entry point with
    ``--num_threads`` (or the calibration) in this process must not change the numbers of the tests after
    it on the same worker (a sum over two threads rounds differently)."""
    yield
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory):
    """clip_conf of a random tiny CLIP saved as a local open_clip weights file."""
    from helpers.stand_ins import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip.pt")


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory):
    from helpers.stand_ins import make_tiny_hubert

    return make_tiny_hubert(tmp_path_factory.mktemp("hubert") / "tiny_hubert.pt")


@pytest.fixture(scope="session")
def text_encoder(tiny_clip):
    """The tiny CLIP's frozen text tower."""
    from espnet_speechclip.models.clip import CLIPTextEncoder, load_clip

    return CLIPTextEncoder(load_clip(**tiny_clip))


@pytest.fixture(scope="session")
def synth_corpus(tmp_path_factory) -> Path:
    """The spoken-shapes corpus at tiny sizes (needs espeak-ng)."""
    from helpers.corpora import generate_synth_corpus

    return generate_synth_corpus(tmp_path_factory.mktemp("synth_a"), workers=2)


@pytest.fixture(scope="session")
def sc(tmp_path_factory, tiny_clip, tiny_hubert):
    """A tiny hybrid SpeechCLIP trained 1 epoch through the real entry point (exp dir + packed archive)
    and its data; the frontend, Speech2Image and query tests share it."""
    from helpers import TINY
    from helpers.stand_ins import train_tiny_speechclip

    from espnet_speechclip.data.datadir import read_kv
    from espnet_speechclip.inference.packing import pack_model

    root = tmp_path_factory.mktemp("reuse")
    out = train_tiny_speechclip(
        root,
        tiny_clip,
        TINY / "hybrid.yaml",
        tiny_hubert,
        extra=[
            # HuBERT's 20 ms frames, so that CTC has a frame per character
            "--speech_encoder_conf",
            "subsampling=1",
            "--speech_encoder_conf",
            "positional=false",
        ],
    )
    exp, data = out["exp"], out["data"]
    weights = exp / "valid.mean_r10.best.pth"
    archive = pack_model(exp / "config.yaml", weights, root / "packed" / "model.zip")

    # ASR targets: the colour word of each caption, as characters
    text = {u: t.split()[1] for u, t in read_kv(data / "text").items()}
    (root / "asr_text").write_text("".join(f"{u} {t}\n" for u, t in sorted(text.items())))
    chars = sorted(set("".join(text.values())))
    (root / "tokens.txt").write_text("\n".join(["<blank>", "<unk>", *chars, "<sos/eos>"]) + "\n")
    return dict(
        root=root,
        data=data,
        exp=exp,
        weights=weights,
        archive=archive,
        state=torch.load(weights, map_location="cpu", weights_only=True),
    )


@pytest.fixture(scope="session")
def parallel_exp(tiny_clip, tmp_path_factory):
    """An exp folder of an untrained tiny parallel model (config.yaml + latest.pth)."""
    import yaml
    from helpers import TINY

    from espnet_speechclip.inference.speech2image import Speech2Image

    exp = tmp_path_factory.mktemp("parallel_exp")
    config = yaml.safe_load((TINY / "parallel.yaml").read_text())
    config["clip_conf"] = dict(tiny_clip)
    config["image_input"] = "embedding"
    (exp / "config.yaml").write_text(yaml.safe_dump(config))
    model = Speech2Image(exp / "config.yaml").model
    torch.save(model.state_dict(), exp / "latest.pth")
    return exp


# The suite runs on every core (``make test`` passes ``-n``, pytest-xdist, ``--dist loadgroup``). A test
# file's tests stay on one worker, so that its module fixtures are built once; the tests sharing the
# miniature recipe run (the session fixture ``flickr8k_run``) stay on one worker across files, so that
# the run is made once. Without xdist the marks do nothing.
#
# xdist hands the groups out in the order they are collected (``make test`` passes
# ``--no-loadscope-reorder``). The groups below run the recipe or a benchmark, minutes where the others
# take seconds: starting them first, longest first, keeps the workers busy until the end.
LONG_GROUPS = (
    "flickr8k_run",
    "tests/recipe/test_synth_default_run.py",
    "tests/bench/test_bench.py",
    "tests/recipe/test_faults.py",
)


def _group(item) -> str:
    return "flickr8k_run" if "flickr8k_run" in item.fixturenames else item.nodeid.split("::")[0]


# tryfirst: xdist's worker names each test's group from these marks in its own hook of this name.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {group: i for i, group in enumerate(LONG_GROUPS)}
    items.sort(key=lambda item: rank.get(_group(item), len(LONG_GROUPS)))  # stable: file order kept
