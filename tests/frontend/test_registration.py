"""``import espnet_speechclip`` is quiet and registers the frontend into ESPnet's tasks."""

import subprocess
import sys


def test_import_is_quiet_and_registers_later_imported_tasks():
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, espnet_speechclip; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('espnet', 'espnet2', 'torch')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == "[]\n"
    import importlib

    import espnet_speechclip  # noqa: F401
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    for name in ("espnet2.tasks.asr", "espnet2.tasks.cls"):
        module = importlib.import_module(name)
        assert module.frontend_choices.classes["speechclip"] is SpeechCLIPFrontend, name


def test_import_hook_registers_a_task_module_imported_afterwards(tmp_path, monkeypatch):
    """The mechanism on a stand-in task module (ESPnet's own take seconds to import)."""
    from espnet_speechclip.frontend import registration
    from espnet_speechclip.frontend.espnet_frontend import SpeechCLIPFrontend

    (tmp_path / "fake_espnet_task.py").write_text(
        "import types\nfrontend_choices = types.SimpleNamespace(classes={'default': object})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registration.SPEECH_FRONTEND_CHOICES, "fake_espnet_task", ("frontend_choices",))
    registration.install()  # idempotent: one hook only
    assert sum(isinstance(f, registration._TaskImportHook) for f in sys.meta_path) == 1
    import fake_espnet_task

    try:
        assert fake_espnet_task.frontend_choices.classes == {
            "default": object,
            "speechclip": SpeechCLIPFrontend,
        }
        assert "frontend_choices" in fake_espnet_task.__loader__.get_source("fake_espnet_task")
    finally:
        del sys.modules["fake_espnet_task"]
