import pytest
import torch
from helpers import ROOT

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


def test_random_clip_on_purpose_logs_no_random_init_warning(tiny_clip, caplog, capsys):
    """Built without weights on purpose (counts, frontends, training from scratch), CLIP does not warn
    that it is random; open_clip's warning still shows where weights were not asked for by us, and any
    other warning passes."""
    import logging

    import open_clip

    from espnet_speechclip.bin import count_params
    from espnet_speechclip.models.clip import RANDOM_INIT_WARNING, random_init_intended

    with caplog.at_level(logging.WARNING):
        load_clip(tiny_clip["model_name"], None, tiny_clip["config_file"])
        count_params.main([str(ROOT / "conf" / "tiny" / "parallel.yaml")])
        with random_init_intended():
            logging.getLogger().warning("a real problem")
            logging.getLogger("espnet_speechclip").warning("another one")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if RANDOM_INIT_WARNING in m]
    assert "a real problem" in messages and "another one" in messages
    assert "| tiny-clip |" in capsys.readouterr().out

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        open_clip.create_model(tiny_clip["model_name"])  # the filter is gone after the block
    assert [r for r in caplog.records if RANDOM_INIT_WARNING in r.getMessage()]
