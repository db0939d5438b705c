"""Recipe stage 9: a packed model laid out as a Hub repo (its card parsed by huggingface_hub's own
classes) and uploaded through the real ``HfApi`` to a Hub stand-in on 127.0.0.1."""

import json
import zipfile

import pytest
import yaml
from huggingface_hub import ModelCard

from espnet_speechclip.bin import hub_upload
from espnet_speechclip.inference.archive import PackError
from espnet_speechclip.inference.hub import exp_folder_name, parse_repo_id, stage_repo, upload
from espnet_speechclip.inference.model_card import model_card

REPO = "speechclip-test/tiny-hybrid"


@pytest.fixture
def fake_hub(monkeypatch):
    from helpers.hub import FakeHub
    from huggingface_hub import constants

    hub = FakeHub()
    # what HF_ENDPOINT sets (read at import); a token so that nothing asks for a login
    monkeypatch.setattr(constants, "ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token_not_real")
    yield hub
    hub.close()


def test_repo_ids():
    assert parse_repo_id("org/name") == ("org/name", None)
    assert parse_repo_id("org/name@v1.0") == ("org/name", "v1.0")
    assert parse_repo_id("my-org/SpeechCLIP_base.flickr") == ("my-org/SpeechCLIP_base.flickr", None)
    for not_an_id in ("model.zip", "exp/x/packed/model.zip", "a/b/c", "packed/model.zip", "/abs/x", "org/"):
        assert parse_repo_id(not_an_id) is None, not_an_id
    assert parse_repo_id("org/name@refs/pr/1") == ("org/name", "refs/pr/1")
    # a revision names a folder (the recipe's exp/<namespace>/<name>@<revision>): no way out of it
    for unsafe in (
        "org/name@../../../../x",
        "org/name@a/../b",
        "org/name@./x",
        "org/name@x//y",
        "org/name@x/",
    ):
        with pytest.raises(ValueError, match="is not a branch, tag or commit name"):
            parse_repo_id(unsafe)
    assert exp_folder_name("org/name") == "org/name"
    assert exp_folder_name("org/name@v1") == "org/name@v1"
    with pytest.raises(ValueError, match="neither a local packed model nor a Hub repo id"):
        exp_folder_name("no/such/model.zip")


def test_upload_sends_exactly_the_packed_model_and_its_card(sc, fake_hub, tmp_path):
    folder = tmp_path / "hf"
    hub_upload.main(["--model", str(sc["archive"]), "--hf_repo", REPO, "--folder", str(folder)])

    # (the library may also ask the Hub for its own housekeeping: none of that touches the repo)
    assert [r for r in fake_hub.unexpected if REPO in r or "/api/repos" in r] == []
    assert [(c["organization"], c["name"]) for c in fake_hub.created] == [tuple(REPO.split("/"))]
    assert [(c["repo"], c["revision"]) for c in fake_hub.commits] == [(REPO, "main")]
    sent = fake_hub.files(REPO)
    with zipfile.ZipFile(sc["archive"]) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    # every member of the archive, byte for byte, but the card, which names the repo
    assert set(sent) == set(members)
    assert {k: v for k, v in sent.items() if k != "README.md"} == {
        k: v for k, v in members.items() if k != "README.md"
    }
    assert {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} == set(sent)

    card_text = sent["README.md"].decode()
    assert fake_hub.validated == [card_text]  # the library had the Hub check the card's metadata
    meta = json.loads(members["meta.json"])
    config = yaml.safe_load(members["config.yaml"])
    assert card_text == model_card(config, meta, repo_id=REPO)
    card = ModelCard(card_text)
    assert card.data.library_name == "espnet-speechclip"
    assert {"espnet", "speechclip", "audio", "image-retrieval"} <= set(card.data.tags)
    assert card.data.license == "cc-by-4.0"
    for line in (
        f'Speech2Image.from_pretrained("{REPO}")',
        f"./run.sh --download_model {REPO} --skip_train true",
        f'S3PRLUpstream("speechclip", path_or_url="{REPO}")',
        f"--model {REPO}",
    ):
        assert line in card.text, line


def test_upload_refuses_what_is_not_a_staged_model(tmp_path, fake_hub):
    (tmp_path / "x").mkdir()
    with pytest.raises(PackError, match="not a packed model laid out for the Hub"):
        upload(tmp_path / "x", REPO)
    with pytest.raises(ValueError, match="not a Hub repo id"):
        stage_repo(tmp_path / "model.zip", tmp_path / "y", "not a repo")
    with pytest.raises(SystemExit):
        hub_upload.main(["--model", str(tmp_path / "missing.zip"), "--hf_repo", REPO])
    assert fake_hub.commits == []
