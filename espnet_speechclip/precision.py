"""The one mixed-precision choice of a SpeechCLIP run: ``use_amp`` and ``amp_dtype`` of its config.

Training steps (ESPnet's Trainer), corpus-level validation and inference all run the frozen HuBERT, the
branches and the CLIP text pass under CUDA autocast in ``amp_dtype`` when ``use_amp`` is true, so the
checkpoint is selected, and later evaluated, in the precision it was trained in. ESPnet alone would pick
bf16 for training on GPUs that support it and leave validation at autocast's default fp16. The paper
trained in fp16 (``amp_dtype: float16``, the default). On CPU everything runs in fp32, as ESPnet's
Trainer trains there.
"""

from __future__ import annotations

from typing import Union

import torch

from espnet_speechclip.errors import InputError

AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


def amp_dtype(name: str) -> torch.dtype:
    """``float16`` / ``bfloat16`` -> the torch dtype. Raises ValueError naming the choices."""
    if name not in AMP_DTYPES:
        raise InputError(f"amp_dtype must be one of {', '.join(AMP_DTYPES)}, got {name!r}")
    return AMP_DTYPES[name]


def check_amp_dtype(name: str, enabled: bool) -> torch.dtype:
    """The dtype of ``name``; refuses bf16 autocast on a GPU without bf16 support, before any work."""
    dtype = amp_dtype(name)
    if (
        enabled
        and dtype is torch.bfloat16
        and torch.cuda.is_available()
        and not torch.cuda.is_bf16_supported()
    ):
        raise InputError(
            f"amp_dtype bfloat16: the GPU {torch.cuda.get_device_name()} does not support bf16; "
            f"use amp_dtype float16"
        )
    return dtype


def autocast(device: Union[str, torch.device], enabled: bool, dtype_name: str) -> torch.autocast:
    """CUDA autocast in ``dtype_name`` when ``enabled`` and ``device`` is a GPU; a disabled one on CPU.

    Example::

        with autocast("cuda", config["use_amp"], config["amp_dtype"]):
            out = model.encode_speech(speech, lengths)
    """
    on = bool(enabled) and torch.device(device).type == "cuda"
    # The context is a CUDA one even when off: it records the dtype a GPU run would use.
    return torch.autocast("cuda", dtype=check_amp_dtype(dtype_name, on), enabled=on)
