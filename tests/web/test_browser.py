"""web/browser: which Chromium drives the page, and what is said when there is none. (Driving a page is
tests/bin/test_demo.py's part.)"""

import pytest

from espnet_speechclip.web import browser


def fake_executable(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_the_environment_variable_names_the_executable(tmp_path, monkeypatch):
    exe = fake_executable(tmp_path / "my chrome")
    monkeypatch.setenv(browser.CHROMIUM_ENV, str(exe))
    assert browser.find_chromium() == str(exe)
    # a name that is not a file finds nothing, even with a Chromium on PATH
    fake_executable(tmp_path / "bin" / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setenv(browser.CHROMIUM_ENV, str(tmp_path / "gone"))
    assert browser.find_chromium() is None


def test_path_is_searched_in_the_documented_order(tmp_path, monkeypatch):
    monkeypatch.delenv(browser.CHROMIUM_ENV, raising=False)
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    fake_executable(bin_dir / "google-chrome")
    assert browser.find_chromium() == str(bin_dir / "google-chrome")
    fake_executable(bin_dir / "chromium-browser")
    assert browser.find_chromium() == str(bin_dir / "chromium-browser")
    fake_executable(bin_dir / "chromium")
    assert browser.find_chromium() == str(bin_dir / "chromium")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert browser.find_chromium() is None


def test_no_chromium_is_one_message_naming_where_it_looked(monkeypatch, tmp_path):
    monkeypatch.delenv(browser.CHROMIUM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(
        RuntimeError, match=r"no Chromium found \(looked for \$SPEECHCLIP_CHROMIUM and chromium"
    ):
        with browser.headless_page():
            pass
