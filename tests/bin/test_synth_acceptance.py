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
