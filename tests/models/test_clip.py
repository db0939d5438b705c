import pytest
import torch

from espnet_speechclip.models.clip import (
    EOT_ID,
    SOT_ID,
    CLIPImageEncoder,
    CLIPTextEncoder,
    image_preprocess_cfg,
    load_clip,
    preprocess_cfg_from_config,
    tokenize,
)


@pytest.fixture(scope="module")
def clip(tiny_clip):
    return load_clip(**tiny_clip)


def test_text_encoder_equals_open_clip_encode_text(clip):
    text = CLIPTextEncoder(clip)
    ids = tokenize(["a red circle above a blue square", "there is a small green triangle", "star"])
    ref = clip.encode_text(ids, normalize=True)
    torch.testing.assert_close(text(ids), ref, atol=1e-5, rtol=0)


def test_embedding_path_equals_encode_text(clip):
    text = CLIPTextEncoder(clip)
    torch.manual_seed(0)
    k = 8
    kw = torch.randint(1, 49000, (4, k))
    ids = torch.zeros(4, 77, dtype=torch.long)
    ids[:, 0], ids[:, 1 : k + 1], ids[:, k + 1] = SOT_ID, kw, EOT_ID
    ref = clip.encode_text(ids, normalize=True)
    # K+2 positions fed as embeddings ...
    short = text.encode_embeddings(text.token_embedding(ids[:, : k + 2]))
    torch.testing.assert_close(short, ref, atol=1e-5, rtol=0)
    # ... equal the full 77-position run (EOT at K+1, pooled explicitly)
    full = text(ids)
    torch.testing.assert_close(short, full, atol=1e-5, rtol=0)


def test_text_encoder_is_frozen_and_stays_eval(clip):
    text = CLIPTextEncoder(clip)
    text.train()
    assert not text.training
    assert all(not p.requires_grad for p in text.parameters())


def test_image_encoder_uses_model_preprocessing(clip, tiny_clip):
    from PIL import Image

    image = CLIPImageEncoder(clip)
    assert preprocess_cfg_from_config(**tiny_clip) == image_preprocess_cfg(clip)
    emb = image.embed_images([Image.new("RGB", (50, 40), (200, 10, 10))])
    assert emb.shape == (1, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(1))


def test_bad_clip_configs_name_the_problem(tmp_path, tiny_clip):
    with pytest.raises(ValueError, match="unknown CLIP model 'ViT-Q-99'"):
        load_clip("ViT-Q-99", None)
    with pytest.raises(ValueError, match="neither a file nor a tag"):
        load_clip("ViT-B-32-quickgelu", str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_clip("tiny-clip", None, str(tmp_path / "tiny-clip.json"))


def test_real_default_tags_are_known_to_open_clip():
    import open_clip

    assert "openai" in open_clip.list_pretrained_tags_by_model("ViT-B-32-quickgelu")
    assert "openai" in open_clip.list_pretrained_tags_by_model("ViT-L-14-quickgelu")
