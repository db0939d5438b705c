"""models/frozen: frozen towers stay in eval mode without gradients and out of checkpoints."""

import pytest
import torch
from torch import nn

from espnet_speechclip.models.frozen import FrozenModule, frozen_prefixes, keep_frozen_out_of_state_dict


class Tower(FrozenModule):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 3)
        self.drop = nn.Dropout(0.5)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.tower = Tower().freeze()
        self.inner = nn.Sequential(nn.Linear(3, 2), Tower().freeze())
        self.head = nn.Linear(3, 1)


def test_a_frozen_module_stays_in_eval_mode_without_gradients():
    model = Model()
    model.train()  # what ESPnet's Trainer calls every epoch
    assert model.training and model.head.training
    assert not model.tower.training and not model.tower.drop.training
    assert not any(p.requires_grad for p in model.tower.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


def test_frozen_prefixes_lists_the_outermost_frozen_modules():
    model = Model()
    assert frozen_prefixes(model) == ["tower.", "inner.1."]
    assert frozen_prefixes(Tower()) == [""]  # the module itself
    wrapper = nn.Sequential(Model())
    assert frozen_prefixes(wrapper) == ["0.tower.", "0.inner.1."]


def test_state_dict_drops_frozen_keys_and_strict_loading_still_checks_the_rest():
    torch.manual_seed(0)
    model = Model()
    keep_frozen_out_of_state_dict(model)
    state = model.state_dict()
    assert sorted(state) == ["head.bias", "head.weight", "inner.0.bias", "inner.0.weight"]

    other = Model()  # rebuilt: its frozen weights are its own, the trainable ones come from the file
    keep_frozen_out_of_state_dict(other)
    frozen_before = other.tower.proj.weight.clone()
    other.load_state_dict(state, strict=True)
    torch.testing.assert_close(other.head.weight, model.head.weight)
    torch.testing.assert_close(other.tower.proj.weight, frozen_before)
    # a missing trainable key is still an error
    del state["head.bias"]
    with pytest.raises(RuntimeError, match="head.bias"):
        other.load_state_dict(state, strict=True)


def test_the_hooks_work_inside_a_larger_model():
    outer = nn.ModuleDict({"frontend": Model(), "decoder": nn.Linear(2, 2)})
    keep_frozen_out_of_state_dict(outer["frontend"])
    keys = sorted(outer.state_dict())
    assert not [k for k in keys if ".tower." in k or "inner.1." in k]
    assert "frontend.head.weight" in keys and "decoder.weight" in keys
    fresh = nn.ModuleDict({"frontend": Model(), "decoder": nn.Linear(2, 2)})
    keep_frozen_out_of_state_dict(fresh["frontend"])
    fresh.load_state_dict(outer.state_dict(), strict=True)
