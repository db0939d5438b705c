"""Input errors reach command-line users as one line; bugs keep their traceback."""

import json
import subprocess
import sys

import pytest
from helpers import ROOT

from espnet_speechclip.config import read_config
from espnet_speechclip.errors import run_cli, user_message


def test_an_error_raised_by_speechclip_is_one_line(capsys, monkeypatch):
    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: read_config("/nope/train.yaml"), prog="prog")
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("prog: error: SpeechCLIP config /nope/train.yaml does not exist")
    assert "Traceback" not in err and len(err.splitlines()) == 1


def test_a_library_error_or_debug_mode_keeps_the_traceback(monkeypatch):
    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    with pytest.raises(json.JSONDecodeError):
        run_cli(lambda: json.loads("{"))
    monkeypatch.setenv("SPEECHCLIP_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run_cli(lambda: read_config("/nope/train.yaml"))
    try:
        read_config("/nope/train.yaml")
    except FileNotFoundError as e:
        assert user_message(e) is None


def test_an_unknown_upstream_is_one_line_from_an_entry_point(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "conf" / "tiny" / "parallel.yaml").read_text().replace("fbank", "hubert_nope"))
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_speechclip.bin.count_params", str(bad)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "unknown s3prl upstream 'hubert_nope'" in proc.stderr and "Traceback" not in proc.stderr


def test_every_error_class_of_the_package_is_a_speechclip_error_of_its_old_kind():
    from espnet_speechclip.config import ConfigError
    from espnet_speechclip.data.media import MediaError
    from espnet_speechclip.errors import SpeechCLIPError
    from espnet_speechclip.inference.archive import PackError
    from espnet_speechclip.inference.hub import HubError
    from espnet_speechclip.provenance import ProvenanceError
    from espnet_speechclip.training.data_check import DataCheckError

    for cls, kind in [
        (ConfigError, ValueError),
        (MediaError, ValueError),
        (DataCheckError, MediaError),
        (PackError, ValueError),
        (HubError, RuntimeError),
        (ProvenanceError, RuntimeError),
    ]:
        assert issubclass(cls, SpeechCLIPError) and issubclass(cls, kind), cls


def test_one_line_is_decided_by_the_class_not_by_where_it_was_raised(monkeypatch):
    from espnet_speechclip.errors import InputError, MissingKeyError

    monkeypatch.delenv("SPEECHCLIP_DEBUG", raising=False)
    assert user_message(InputError("bad  option\n x")) == "bad option x"
    assert user_message(MissingKeyError("no length for u1")) == "no length for u1"
    assert str(MissingKeyError("no length for u1")) == "no length for u1"  # not quoted like a key
    # a builtin error raised by a line of the package is no input error: only the class decides
    code = compile("raise ValueError('x')", str(ROOT / "espnet_speechclip" / "config.py"), "exec")
    with pytest.raises(ValueError) as err:
        exec(code)
    assert user_message(err.value) is None


def test_no_module_raises_a_bare_builtin_error_for_bad_input():
    """Input errors are SpeechCLIPErrors (InputError, MissingFileError, ...), so run_cli knows them."""
    import ast

    builtin = {"ValueError", "FileNotFoundError", "KeyError", "RuntimeError"}
    found = []
    for path in sorted((ROOT / "espnet_speechclip").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
                name = getattr(node.exc.func, "id", None)
                if name in builtin:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert not found, found
