"""bin/synth_acceptance: its exit status is check()'s verdict (check() itself runs on a miniature default
run in tests/recipe/test_synth_default_run.py)."""

import pytest

from espnet_speechclip.bin import synth_acceptance


@pytest.mark.parametrize("verdict, status", [(True, 0), (False, 1)])
def test_exit_status_follows_the_check(monkeypatch, tmp_path, verdict, status):
    calls = []
    monkeypatch.setattr(
        synth_acceptance, "check", lambda exp, test_set: calls.append((exp, test_set)) or verdict
    )
    with pytest.raises(SystemExit) as e:
        synth_acceptance.main(["--exp_dir", str(tmp_path)])
    assert e.value.code == status
    assert calls == [(tmp_path, "synth_test")]


def test_missing_results_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="synth_parallel/results.json"):
        synth_acceptance.check(tmp_path)


def test_a_missing_or_incomplete_results_page_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as e:
        synth_acceptance.run_cli(lambda: synth_acceptance.main(["--exp_dir", str(tmp_path)]))
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "synth_parallel/results.json: no results" in err[0], err
    # a results page without the test set's scores names the page and what it lacks
    (tmp_path / "synth_parallel").mkdir()
    (tmp_path / "synth_parallel" / "results.json").write_text('{"synth_dev": {}}')
    with pytest.raises(synth_acceptance.InputError, match="results.json: no parallel scores of synth_test"):
        synth_acceptance.check(tmp_path)
