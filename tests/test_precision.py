"""precision: the amp_dtype choice and the autocast every stage runs under."""

import pytest
import torch

from espnet_speechclip import precision


def test_amp_dtype_names_and_the_error_naming_the_choices():
    assert precision.amp_dtype("float16") is torch.float16
    assert precision.amp_dtype("bfloat16") is torch.bfloat16
    with pytest.raises(ValueError, match=r"amp_dtype must be one of float16, bfloat16, got 'fp16'"):
        precision.amp_dtype("fp16")


def test_bf16_is_refused_before_any_work_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100")
    with pytest.raises(ValueError, match="Tesla V100 does not support bf16; use amp_dtype float16"):
        precision.check_amp_dtype("bfloat16", enabled=True)
    # fp16 there, or bf16 with autocast off, are fine
    assert precision.check_amp_dtype("float16", enabled=True) is torch.float16
    assert precision.check_amp_dtype("bfloat16", enabled=False) is torch.bfloat16


def test_autocast_is_off_on_cpu_and_records_the_dtype():
    ctx = precision.autocast("cpu", True, "bfloat16")
    assert isinstance(ctx, torch.autocast)
    assert ctx.device == "cuda" and ctx.fast_dtype is torch.bfloat16 and not ctx._enabled
    with ctx:  # a CPU matmul stays fp32
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype is torch.float32
    assert not precision.autocast(torch.device("cuda"), False, "float16")._enabled
    with pytest.raises(ValueError, match="amp_dtype must be one of"):
        precision.autocast("cpu", False, "float64")
