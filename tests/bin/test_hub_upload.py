"""bin/hub_upload: recipe stage 9's command (the upload itself: tests/inference/test_hub.py)."""

import pytest

from espnet_speechclip.bin import hub_upload


@pytest.mark.parametrize("repo", ["no-namespace", "ns/name@v1", "a/b/c"])
def test_a_repo_id_that_is_not_one_is_refused_before_any_work(repo, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        hub_upload.main(["--model", str(tmp_path / "model.zip"), "--hf_repo", repo, "--stage_only"])
    assert e.value.code == 2
    assert f"--hf_repo {repo} is not a Hub repo id (<namespace>/<name>)" in capsys.readouterr().err


def test_stage_only_lays_the_folder_out_beside_the_archive(sc, tmp_path):
    import shutil

    archive = tmp_path / "packed" / "model.zip"
    archive.parent.mkdir()
    shutil.copy(sc["archive"], archive)
    hub_upload.main(["--model", str(archive), "--hf_repo", "me/tiny", "--stage_only"])
    folder = tmp_path / "packed" / "hf_me_tiny"
    assert (folder / "README.md").is_file() and "me/tiny" in (folder / "README.md").read_text()
