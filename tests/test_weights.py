"""The one loader of weight files: each way a file can be unusable is one error naming the file."""

import os

import pytest
import torch

from espnet_speechclip.weights import WeightsError, load_file, load_weights


class RunsCode:
    """Unpickling this runs a command (what a malicious weights file does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_state_dict_loads(tmp_path):
    torch.save({"a": torch.ones(2)}, tmp_path / "w.pth")
    assert torch.equal(load_weights(tmp_path / "w.pth")["a"], torch.ones(2))


def test_truncated_weights_name_the_file(tmp_path):
    torch.save({"a": torch.zeros(1000)}, tmp_path / "w.pth")
    data = (tmp_path / "w.pth").read_bytes()
    (tmp_path / "1epoch.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(
        WeightsError, match=r"^.*1epoch\.pth: not a complete PyTorch file, truncated or damaged"
    ):
        load_weights(tmp_path / "1epoch.pth")
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match=r"empty\.pth: not a complete PyTorch file"):
        load_weights(tmp_path / "empty.pth")


def test_a_code_running_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"a": RunsCode(marker)}, tmp_path / "model.pth")
    with pytest.raises(WeightsError) as e:
        load_weights(tmp_path / "model.pth", "SpeechCLIP model file")
    assert str(e.value).startswith(f"{tmp_path / 'model.pth'}: refused: it holds Python objects")
    assert "weights_only" not in str(e.value)
    assert not marker.exists()


def test_not_a_state_dict_or_no_file(tmp_path):
    torch.save([torch.ones(1)], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match=r"list\.pth: not a state dict .* but a list"):
        load_weights(tmp_path / "list.pth")
    with pytest.raises(FileNotFoundError, match="model file .*none.pth does not exist"):
        load_weights(tmp_path / "none.pth", "model file")


def test_a_trusted_checkpoint_keeps_its_objects(tmp_path):
    torch.save({"model": {"a": torch.ones(1)}, "note": {"epoch": 3}}, tmp_path / "checkpoint.pth")
    assert load_file(tmp_path / "checkpoint.pth", trusted_pickle=True)["note"] == {"epoch": 3}
