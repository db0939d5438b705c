"""The one resolver: experiment folder, packed archive, packed folder, and a Hub repo id through the real
``snapshot_download`` with the Hub's offline mode and cache."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ROOT
from helpers.hub import place_in_hub_cache

from espnet_speechclip.inference import Speech2Image
from espnet_speechclip.inference.archive import PackError, extract_archive
from espnet_speechclip.inference.hub import HubError, stage_repo
from espnet_speechclip.inference.loader import resolve_model

REPO = "speechclip-test/tiny-hybrid"
MAIN = "a" * 40  # commit of the main branch
EDITED = "b" * 40  # a later commit on tag v2 whose model card was edited on the Hub


@pytest.fixture(scope="module")
def hub_cache(sc, tmp_path_factory):
    """The sc model staged as a Hub repo and placed in a Hub cache as snapshot_download leaves it."""
    root = tmp_path_factory.mktemp("hub")
    staged = stage_repo(sc["archive"], root / "staged", REPO)
    cache = root / "hub_home" / "hub"
    place_in_hub_cache(staged, cache, REPO, MAIN)
    edited = root / "edited"
    shutil.copytree(staged, edited)
    (edited / "README.md").write_text((staged / "README.md").read_text() + "\nEdited on the Hub.\n")
    place_in_hub_cache(edited, cache, REPO, EDITED, refs=("v2",))
    return cache


@pytest.fixture
def offline(hub_cache, tmp_path, monkeypatch):
    """HF_HUB_OFFLINE=1 and HF_HUB_CACHE=<hub_cache> as huggingface_hub read them (at its import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("ESPNET_SPEECHCLIP_CACHE", str(tmp_path / "unpack"))
    return hub_cache


def embed(s2i: Speech2Image, sc) -> np.ndarray:
    from espnet_speechclip.data.datadir import read_kv

    wavs = sorted(read_kv(sc["data"] / "wav.scp").values())[:3]
    return s2i(wavs)["parallel"]


def test_hub_repo_id_loads_offline_from_the_cache(sc, offline):
    reference = embed(Speech2Image.from_pretrained(sc["archive"]), sc)
    s2i = Speech2Image.from_pretrained(REPO)
    np.testing.assert_array_equal(embed(s2i, sc), reference)
    config, weights = resolve_model(REPO)
    snapshot = offline / f"models--{REPO.replace('/', '--')}" / "snapshots" / MAIN
    assert weights == snapshot / "model.pth"
    # packed files are used where the snapshot has them, under their own names (not the blobs')
    clip = s2i.config["clip_conf"]
    assert clip["pretrained"] == str(snapshot / "files" / "clip" / "tiny-clip.pt")
    assert clip["config_file"] == str(snapshot / "files" / "clip_config" / "tiny-clip.json")

    # a revision by tag, by commit, or pinned in the string; the edited card is no reason to refuse
    for kwargs in ({"revision": "v2"}, {"revision": EDITED}):
        assert resolve_model(REPO, **kwargs)[1].parent.name == EDITED
    assert resolve_model(f"{REPO}@v2")[1].parent.name == EDITED
    assert Speech2Image.from_pretrained(REPO, revision="v2").source == f"{REPO}@v2"
    with pytest.raises(ValueError, match="pins revision v2"):
        resolve_model(f"{REPO}@v2", revision="main")
    with pytest.raises(ValueError, match="own weights"):
        resolve_model(REPO, model_file="x.pth")


def test_offline_and_not_cached_says_so(offline):
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set") as e:
        Speech2Image.from_pretrained("speechclip-test/not-downloaded")
    assert str(offline) in str(e.value) and "no local model" in str(e.value)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE"):
        resolve_model(REPO, revision="no-such-tag")


def test_a_changed_file_in_the_snapshot_is_refused(hub_cache, tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    shutil.copytree(hub_cache, cache, symlinks=True)
    snapshot = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / MAIN
    blob = (snapshot / "files" / "clip" / "tiny-clip.pt").resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    with pytest.raises(PackError, match=r"files/clip/tiny-clip.pt fails its sha256 check"):
        resolve_model(REPO, cache_dir=tmp_path / "unpack")


def test_hub_env_vars_in_a_fresh_process(sc, hub_cache, tmp_path):
    """HF_HOME (cache = $HF_HOME/hub) and HF_HUB_OFFLINE=1 as a user sets them, through the recipe's
    --download_model entry point."""
    env = dict(
        os.environ,
        HF_HOME=str(hub_cache.parent),
        HF_HUB_OFFLINE="1",
        ESPNET_SPEECHCLIP_CACHE=str(tmp_path / "unpack"),
        PYTHONPATH=str(ROOT),
    )
    env.pop("HF_HUB_CACHE", None)
    exp = tmp_path / "exp" / REPO
    cmd = [sys.executable, "-m", "espnet_speechclip.bin.hub_download", "--model", f"{REPO}@v2"]
    proc = subprocess.run([*cmd, "--exp_dir", str(exp)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    weights = exp / "valid.mean_r10.best.pth"
    assert weights.is_symlink() and Path(os.readlink(weights)).parent.name == EDITED
    assert "Edited on the Hub." in (exp / "README.md").read_text()
    # the folder is an experiment folder now: the resolver (and the recipe's stages) take it as one
    assert resolve_model(exp) == (exp / "config.yaml", weights)

    proc = subprocess.run(
        [*cmd[:-1], "speechclip-test/absent", "--exp_dir", str(tmp_path / "x")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "HF_HUB_OFFLINE is set" in proc.stderr


def test_local_sources(sc, tmp_path):
    folder = tmp_path / "unpacked"
    extract_archive(sc["archive"], folder)
    cache = tmp_path / "unpack"
    config, weights = resolve_model(folder, cache_dir=cache)
    assert weights == folder / "model.pth" and config.parent.parent == cache
    (folder / "README.md").write_text("my own notes\n")  # documentation: not held to its sha256
    assert resolve_model(folder, cache_dir=cache) == (config, weights)
    (folder / "config.yaml").write_text((folder / "config.yaml").read_text() + "\n")
    with pytest.raises(PackError, match="config.yaml fails its sha256 check"):
        resolve_model(folder, cache_dir=cache)

    assert resolve_model(sc["exp"]) == (sc["exp"] / "config.yaml", sc["weights"])
    with pytest.raises(ValueError, match="revision applies to Hub repos only"):
        resolve_model(sc["archive"], revision="main")
    with pytest.raises(FileNotFoundError, match="or a Hub repo id"):
        resolve_model(tmp_path / "nothing" / "here.zip")
    with pytest.raises(FileExistsError, match="not empty"):
        extract_archive(sc["archive"], folder)
