"""Quiet entry points: no NLTK download tries from ESPnet's g2p_en import, help first, real output kept;
s3prl's hub importable under torchaudio >= 2.9."""

import subprocess
import sys

import pytest
from helpers import ROOT

# Runs in a fresh interpreter: records every nltk.download call, then imports g2p_en as ESPnet does.
# g2p_en's number spelling (inflect) is stood in for: it takes seconds to import and never calls NLTK.
G2P_PROBE = """
import sys
import types
import nltk
sys.modules["inflect"] = types.SimpleNamespace(engine=lambda: None)
calls = []
nltk.download = lambda *args, **kwargs: calls.append(args[0]) or False
if sys.argv[1] == "with_package":
    import espnet_speechclip
import g2p_en
at_import = list(calls)
try:
    g2p_en.G2p()
except LookupError:
    pass
at_first_use = calls[len(at_import):]
from espnet_speechclip.compat import G2P_NLTK_RESOURCES  # (imports the package: only now)
missing = []
for resource, package in G2P_NLTK_RESOURCES:
    try:
        nltk.data.find(resource)
    except LookupError:
        missing.append(package)
print(missing, at_import, at_first_use)
"""


def _probe(mode):
    proc = subprocess.run(
        [sys.executable, "-c", G2P_PROBE, mode], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return [eval(x) for x in proc.stdout.strip().replace("] [", "]\n[").splitlines()]


def test_g2p_import_tries_no_download_after_import_of_the_package():
    missing, at_import, at_first_use = _probe("with_package")
    assert at_import == []
    # the downloads g2p_en needs happen where it is used: building a G2p
    assert at_first_use == missing
    missing, at_import, _ = _probe("without_package")
    assert at_import == missing  # what g2p_en does on its own (nothing when the resources exist)


# One fresh interpreter for the two checks that need ESPnet imported in it for the first time (10-15 s
# each; the second costs little once the first has run): `python -m espnet_speechclip.bin.speechclip_train
# --help` as a user runs it, then s3prl's full hub imported after the plugin. SEPARATOR ends the first
# part on both streams.
SEPARATOR = "=== s3prl.hub ==="
FRESH_ESPNET = f"""
import runpy, sys
sys.argv = ["speechclip_train.py", "--help"]
try:
    runpy.run_module("espnet_speechclip.bin.speechclip_train", run_name="__main__", alter_sys=True)
except SystemExit as e:
    assert e.code == 0, e.code
print({SEPARATOR!r}, flush=True)
print({SEPARATOR!r}, file=sys.stderr, flush=True)
import s3prl.nn, s3prl.hub
print(len(s3prl.hub.options()) > 50)
"""


@pytest.fixture(scope="module")
def fresh_espnet():
    """(stdout, stderr) of each part of FRESH_ESPNET: {"help": (...), "hub": (...)}."""
    proc = subprocess.run(
        [sys.executable, "-c", FRESH_ESPNET], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out, err = proc.stdout.split(SEPARATOR + "\n"), proc.stderr.split(SEPARATOR + "\n")
    return {"help": (out[0], err[0]), "hub": (out[1], err[1])}


def test_espnet_entry_point_help_starts_with_the_usage(fresh_espnet):
    stdout, stderr = fresh_espnet["help"]
    assert stdout.startswith("usage: speechclip_train.py")
    assert "--model_conf" in stdout
    assert stderr == ""  # no nltk, Flash Attention or command-line lines


def test_plugin_import_makes_s3prl_hub_importable(fresh_espnet):
    """s3prl 0.4.18's hub imports two entries that call APIs torchaudio >= 2.9 removed (s3prl #575)."""
    stdout, _ = fresh_espnet["hub"]
    assert stdout.strip().endswith("True")


def test_answer_help_first_only_on_help(capsys):
    import argparse

    from espnet_speechclip.compat import answer_help_first

    def parser():
        p = argparse.ArgumentParser(prog="x", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--n", default=1)
        return p

    answer_help_first(parser, ["--n", "2"])  # not a help request: returns
    with pytest.raises(SystemExit) as e:
        answer_help_first(parser, ["--n", "2", "-h"], epilog="line one\n  line two")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: x") and out.endswith("line one\n  line two\n")


def test_flash_attention_notice_is_dropped_and_other_output_kept(tmp_path, monkeypatch, capsys):
    """On a stand-in for ESPnet's attention module (the real one prints once per process)."""
    from espnet_speechclip.compat import FLASH_ATTENTION_NOTICE, import_without_notice

    (tmp_path / "noisy_attention.py").write_text(
        "print('Failed to import Flash Attention, using ESPnet default: No module named flash_attn')\n"
        "print('something else ESPnet says')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import_without_notice("noisy_attention", FLASH_ATTENTION_NOTICE)
    finally:
        sys.modules.pop("noisy_attention", None)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "something else ESPnet says\n"


def test_help_of_model_loading_entry_points_says_where_archives_unpack(capsys):
    from espnet_speechclip.bin import asr_train, query, speechclip_inference

    for module in (query, speechclip_inference):
        with pytest.raises(SystemExit):
            module.main(["--help"])
        out = capsys.readouterr().out
        assert "ESPNET_SPEECHCLIP_CACHE" in out and "~/.cache/espnet_speechclip" in out
    assert "ESPNET_SPEECHCLIP_CACHE" in asr_train.FRONTEND_HELP


# Runs in a fresh interpreter: ESPnet's text modules imported after the package, then used.
DEFERRED_PROBE = """
import inspect, sys
import espnet_speechclip
import espnet2.text.cleaner, espnet2.text.phoneme_tokenizer
inspect.getmodule(inspect)  # walks sys.modules reading __file__: must not run a deferred module
print("inflect" in sys.modules)
print(espnet2.text.cleaner.TextCleaner(["tacotron"])("Hello 2 worlds"))
print("inflect" in sys.modules, type(sys.modules["tacotron_cleaner.cleaners"]).__name__)
"""


def test_english_text_modules_of_espnet_run_at_first_use():
    """g2p_en and tacotron's cleaners (inflect, ~5 s of an ESPnet ASR command's start-up) run only when
    ESPnet cleans or phonemises English text, and then work as if imported normally."""
    proc = subprocess.run(
        [sys.executable, "-c", DEFERRED_PROBE], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert proc.stdout.splitlines() == ["False", "HELLO TWO WORLDS", "True module"], proc.stdout + proc.stderr


def test_deferred_module_runs_once_at_the_first_missing_name(tmp_path, monkeypatch):
    from espnet_speechclip.compat import DeferredModule, ModuleExecHook, _defer_exec

    (tmp_path / "deferred_probe_pkg").mkdir()
    (tmp_path / "deferred_probe_pkg" / "__init__.py").write_text(
        "import builtins\n"
        "builtins.deferred_probe_runs = getattr(builtins, 'deferred_probe_runs', 0) + 1\n"
        "VALUE = 7\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    hook = ModuleExecHook(("deferred_probe_pkg",), _defer_exec)
    monkeypatch.setattr(sys, "meta_path", [hook, *sys.meta_path])
    import builtins

    import deferred_probe_pkg

    try:
        assert isinstance(deferred_probe_pkg, DeferredModule) and not hasattr(builtins, "deferred_probe_runs")
        # import attributes and dunder probes load nothing
        assert deferred_probe_pkg.__file__.endswith("__init__.py") and not hasattr(
            deferred_probe_pkg, "__wrapped__"
        )
        assert not hasattr(builtins, "deferred_probe_runs")
        assert deferred_probe_pkg.VALUE == 7 and builtins.deferred_probe_runs == 1
        assert type(deferred_probe_pkg) is type(sys) and deferred_probe_pkg.VALUE == 7
        assert builtins.deferred_probe_runs == 1
    finally:
        sys.modules.pop("deferred_probe_pkg", None)
        if hasattr(builtins, "deferred_probe_runs"):
            del builtins.deferred_probe_runs
