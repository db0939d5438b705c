"""Frozen CLIP towers built with open_clip: image encoder, text encoder over ids AND over embeddings.

The model is an open_clip name plus a pretrained tag (``ViT-B-32-quickgelu`` + ``openai``) or a local
weights file; a custom architecture is an open_clip JSON config registered under its file stem.
The ``-quickgelu`` configs matter: OpenAI's weights were trained with QuickGELU and give wrong features
under plain GELU.
"""

from __future__ import annotations

import contextlib
import logging
import os
from functools import cache
from pathlib import Path
from typing import List, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from espnet_speechclip.errors import InputError, MissingFileError, RunError
from espnet_speechclip.models.frozen import FrozenModule

logger = logging.getLogger(__name__)

SOT_ID = 49406
EOT_ID = 49407
PAD_ID = 0
SPECIAL_IDS = (PAD_ID, SOT_ID, EOT_ID)

_PACKAGE_CONFIGS = Path(__file__).resolve().parent.parent / "clip_configs"


def _register_config(model_name: str, config_file: Optional[str]) -> None:
    import open_clip

    if config_file is None:
        packaged = _PACKAGE_CONFIGS / f"{model_name}.json"
        if open_clip.get_model_config(model_name) is None and packaged.is_file():
            open_clip.add_model_config(packaged)
        return
    path = Path(config_file)
    if not path.is_file():
        raise MissingFileError(f"open_clip config file {config_file} does not exist")
    if path.stem != model_name:
        raise InputError(
            f"open_clip registers {config_file} as {path.stem!r}, but clip model_name is {model_name!r}"
        )
    open_clip.add_model_config(path)


def clip_model_config(model_name: str, config_file: Optional[str] = None) -> Optional[dict]:
    """open_clip's architecture config of ``model_name`` (``config_file`` registered first), or None if
    open_clip does not know it. Reads JSON only: no model is built."""
    import open_clip

    _register_config(model_name, config_file)
    return open_clip.get_model_config(model_name)


# open_clip logs this warning whenever a model is built without pretrained weights; here that is what
# the caller asked for (parameter counts, frontends that never use CLIP, training from scratch).
RANDOM_INIT_WARNING = "No pretrained weights loaded for model"


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RANDOM_INIT_WARNING)


@contextlib.contextmanager
def random_init_intended():
    """Within the block, open_clip's "No pretrained weights loaded ... Model initialized randomly"
    warning is dropped; every other log record passes. open_clip logs it on the root logger."""
    drop = _DropRandomInitWarning()
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def load_clip(
    model_name: str, pretrained: Optional[str] = None, config_file: Optional[str] = None
) -> nn.Module:
    """Build an open_clip CLIP model on CPU, fp32, eval, frozen.

    Args:
        model_name: open_clip architecture, e.g. ``ViT-B-32-quickgelu`` (Base) or ``ViT-L-14-quickgelu``.
        pretrained: open_clip pretrained tag (``openai``) or a local weights file; ``None`` = random
            weights (architecture only, e.g. for parameter counts).
        config_file: open_clip JSON config for a custom architecture; its stem must be ``model_name``.
    """
    import open_clip

    _register_config(model_name, config_file)
    if open_clip.get_model_config(model_name) is None:
        raise InputError(
            f"unknown CLIP model {model_name!r}; open_clip knows e.g. ViT-B-32-quickgelu, "
            f"ViT-L-14-quickgelu (or give config_file for a custom architecture)"
        )
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in tags:
            raise InputError(
                f"CLIP pretrained {pretrained!r} is neither a file nor a tag of {model_name} {tags}"
            )
    try:
        # random weights were asked for: open_clip's warning would alarm for nothing
        with random_init_intended() if not pretrained else contextlib.nullcontext():
            # on the default device: CPU, or meta inside ``with torch.device("meta")`` (parameter counts)
            model = open_clip.create_model(
                model_name,
                pretrained=pretrained or None,
                pretrained_text=False,
                device=torch.get_default_device(),
            )
    except RuntimeError as e:
        raise RunError(
            f"could not load CLIP {model_name} weights {pretrained!r} ({e}). Without network access, put the "
            "weights in the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE=1) or give a local file as "
            "pretrained."
        ) from e
    model.eval().requires_grad_(False)
    return model


@cache
def _tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer()


def tokenize(texts: Sequence[str], context_length: int = 77) -> torch.Tensor:
    """CLIP BPE token ids, (N, context_length), [SOT, ..., EOT, 0...]; overlong texts are truncated
    with EOT kept last, as open_clip does."""
    return _tokenizer()(list(texts), context_length=context_length)


def decode_token(token_id: int) -> str:
    """The text of one BPE token (end-of-word marker removed)."""
    return _tokenizer().decoder[int(token_id)].replace("</w>", "")


def text_token_ids(text: str) -> List[int]:
    """BPE ids of a transcript without special tokens."""
    return list(_tokenizer().encode(text))


def image_preprocess_cfg(clip: nn.Module) -> dict:
    import open_clip

    return open_clip.get_model_preprocess_cfg(clip)


def text_context_length(model_name: str, config_file: Optional[str] = None) -> int:
    """CLIP's text context length from the model config (no model built)."""
    import open_clip

    _register_config(model_name, config_file)
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise InputError(f"unknown CLIP model {model_name!r}")
    return int(model_cfg["text_cfg"].get("context_length", 77))


def preprocess_cfg_from_config(
    model_name: str, pretrained: Optional[str] = None, config_file: Optional[str] = None
) -> dict:
    """The eval preprocessing a built model would report, derived from the configs alone, so that
    data-loader workers can preprocess images without building (or downloading) the model."""
    from dataclasses import asdict

    import open_clip
    from open_clip.transform import PreprocessCfg

    _register_config(model_name, config_file)
    model_cfg = open_clip.get_model_config(model_name)
    if model_cfg is None:
        raise InputError(f"unknown CLIP model {model_name!r}")
    cfg = asdict(PreprocessCfg())
    size = model_cfg["vision_cfg"]["image_size"]
    cfg["size"] = (size, size) if isinstance(size, int) else tuple(size)
    cfg.update(model_cfg.get("preprocess_cfg", {}))
    if pretrained and not os.path.isfile(pretrained):
        tag_cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
        cfg.update({k: v for k, v in tag_cfg.items() if k in cfg})
    return cfg


def image_transform(preprocess_cfg: dict):
    """The model's own eval preprocessing (resize, centre crop, mean/std) as a PIL -> (3, H, W) callable."""
    from open_clip.transform import PreprocessCfg, image_transform_v2

    fields = {k: v for k, v in preprocess_cfg.items() if k in PreprocessCfg.__dataclass_fields__}
    return image_transform_v2(PreprocessCfg(**fields), is_train=False)


class CLIPImageEncoder(FrozenModule):
    """CLIP image tower: preprocessed pixels (B, 3, H, W) -> L2-normalised embedding (B, D_c)."""

    def __init__(self, clip: nn.Module):
        super().__init__()
        self.visual = clip.visual
        self.preprocess_cfg = image_preprocess_cfg(clip)
        self.transform = image_transform(self.preprocess_cfg)
        self.freeze()

    @classmethod
    def from_config(cls, clip_conf: Mapping) -> CLIPImageEncoder:
        """The image tower of the CLIP a ``clip_conf`` names (its other towers are dropped)."""
        return cls(load_clip(**clip_conf))

    @property
    def embed_dim(self) -> int:
        return self.visual.output_dim

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(pixels), dim=-1)

    @torch.no_grad()
    def embed_images(self, images: Sequence, device: Optional[torch.device] = None) -> torch.Tensor:
        """PIL images -> (N, D_c) normalised embeddings."""
        device = device or next(self.parameters()).device
        pixels = torch.stack([self.transform(im) for im in images]).to(device)
        return self(pixels)


class CLIPTextEncoder(FrozenModule):
    """CLIP text tower. Two entry points:

    - :meth:`forward` on token ids (B, L) -> (B, D_c), equal to open_clip's ``encode_text``;
    - :meth:`encode_embeddings` on token EMBEDDINGS (B, L, D_t) whose last position is EOT -> (B, D_c).

    Because of the causal mask, positions after EOT never influence it, so only the first
    ``EOT + 1`` positions are run: K+2 for SpeechCLIP's keyword sequence [SOT, kw_1..kw_K, EOT].
    """

    def __init__(self, clip: nn.Module):
        super().__init__()
        if not isinstance(getattr(clip, "token_embedding", None), nn.Embedding):
            raise InputError("CLIPTextEncoder needs an open_clip CLIP with a built-in text tower")
        if getattr(clip, "text_pool_type", "argmax") != "argmax":
            raise InputError(f"text pooling {clip.text_pool_type!r} is not CLIP's EOT pooling")
        self.token_embedding = clip.token_embedding
        self.positional_embedding = clip.positional_embedding
        self.transformer = clip.transformer
        self.ln_final = clip.ln_final
        self.text_projection = clip.text_projection
        self.register_buffer("attn_mask", clip.attn_mask, persistent=False)
        self.freeze()

    @property
    def vocab_size(self) -> int:
        return self.token_embedding.num_embeddings

    @property
    def width(self) -> int:
        """D_t, the token-embedding width."""
        return self.token_embedding.embedding_dim

    @property
    def embed_dim(self) -> int:
        """D_c, the joint embedding width."""
        p = self.text_projection
        return p.out_features if isinstance(p, nn.Linear) else p.shape[1]

    @property
    def context_length(self) -> int:
        return self.positional_embedding.shape[0]

    def encode_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, L, D_t), EOT embedding at position L-1 -> normalised (B, D_c)."""
        length = emb.size(1)
        if length > self.context_length:
            raise InputError(f"{length} positions exceed CLIP's context length {self.context_length}")
        x = emb + self.positional_embedding[:length].to(emb.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x[:, -1])
        p = self.text_projection
        x = p(x) if isinstance(p, nn.Linear) else x @ p
        return F.normalize(x, dim=-1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (B, L) CLIP token ids with EOT (the largest id) in each row -> normalised (B, D_c)."""
        eot = ids.argmax(dim=-1)  # EOT is the largest id in CLIP's vocabulary
        length = int(eot.max()) + 1
        emb = self.token_embedding(ids[:, :length])
        x = emb + self.positional_embedding[:length].to(emb.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:length, :length])
        x = self.ln_final(x[torch.arange(ids.size(0), device=ids.device), eot])
        p = self.text_projection
        x = p(x) if isinstance(p, nn.Linear) else x @ p
        return F.normalize(x, dim=-1)

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Transcripts -> (N, D_c) normalised embeddings (zero-shot text side)."""
        device = self.token_embedding.weight.device
        out = [
            self(tokenize(texts[i : i + batch_size], self.context_length).to(device))
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(out) if out else torch.empty(0, self.embed_dim, device=device)
