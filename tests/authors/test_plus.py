"""The nine SpeechCLIP+ releases (espnet_speechclip.authors.plus): stand-ins in SpeechCLIP+'s exact layout
(tests/authors_layout.py: one ``cascaded_branch``, tiny towers, random weights) are imported, their
tensors land where they should, and the imported model computes what SpeechCLIP+'s forward, re-written
in tests/authors_reference.py, computes with those weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from authors_layout import (
    PLUS_KINDS,
    plus_config,
    plus_state_dict,
    reduced_vocabulary,
    save_authors_checkpoint,
)
from authors_reference import _exploit, authors_features, clip_heads, run_import, speechclip_plus, waveforms

from espnet_speechclip.authors import AuthorsCheckpointError, UnsafeCheckpointError, load_authors_checkpoint

RELEASES = [
    (kind, size, corpus)
    for size, corpus in (("base", "flickr"), ("large", "flickr"), ("large", "coco"))
    for kind in PLUS_KINDS
]
OURS = {"cascaded+": "cascaded_plus", "hybrid": "hybrid_shared", "hybrid+": "hybrid_plus"}


def make_plus(
    towers, path: Path, kind: str, size: str, corpus: str, seed: int = 0, edit=None, config_edit=None
):
    vocab = reduced_vocabulary(seed)
    sd = plus_state_dict(kind, size, corpus, towers["hubert"], towers["clip"], vocab, seed)
    if edit is not None:
        edit(sd)
    d_a = towers["hubert"]["encoder.layers.0.fc2.weight"].shape[0]
    config = plus_config(kind, size, corpus, d_a)
    if config_edit is not None:
        config_edit(config)
    return save_authors_checkpoint(path, sd, config), sd, vocab


def trainable(sd) -> set:
    """The SpeechCLIP+ keys that are neither frozen towers nor constant buffers."""
    frozen = (
        "audio_encoder.encoder.",
        "clip.",
        "cascaded_branch.clip.",
        "criterion.eye",
        "criterion.neg_eye",
    )
    return {k for k in sd if not k.startswith(frozen)}


@pytest.mark.parametrize("kind, size, corpus", RELEASES)
@torch.no_grad()
def test_release_imports_and_computes_what_speechclip_plus_computes(towers, tmp_path, kind, size, corpus):
    from espnet_speechclip.inference import Speech2Image

    ckpt, sd, vocab = make_plus(towers, tmp_path / "model.ckpt", kind, size, corpus, seed=3)
    # Base Flickr8k hybrid+ also against the frozen towers; the others load strictly through Speech2Image
    exp = run_import(towers, ckpt, tmp_path / "exp", verify=(kind, size) == ("hybrid+", "base"))
    record = json.loads((exp / "import.json").read_text())
    # identified from content, never from the file name (every release is saved as model.ckpt)
    release = record["source"]["release"]
    assert release["identified"] and release["model"] == OURS[kind] and release["size"] == size
    assert release["corpus"] == {"flickr": "flickr8k", "coco": "spokencoco"}[corpus]
    assert release["path"].endswith(
        {"cascaded+": "cascaded+", "hybrid": "hybrid", "hybrid+": "hybrid+"}[kind]
    )
    assert "hub_name" not in release and record["source"]["family"] == "SpeechCLIP+"
    assert any("CIF weights" in m for m in record["known_mismatches"])
    # every trainable tensor mapped, one to one
    mapped = {m["authors"] for m in record["mapping"] if m["authors"]}
    assert mapped == trainable(sd)
    s2i = Speech2Image.from_pretrained(exp)
    model = s2i.model
    assert s2i.config["model"] == OURS[kind]
    assert model.branches == (["cascaded"] if kind == "cascaded+" else ["parallel", "cascaded"])
    speech, lengths = waveforms(5, (9000, 16000))
    batched = model.encode_speech(speech, lengths)
    heads = s2i.config["model_conf"]["cascaded_conf"]["nhead"]
    normalize = s2i.config["speech_encoder_conf"]["layer_norm"]
    for i, n in enumerate(lengths.tolist()):
        hidden, frames = model.speech_encoder.upstream(speech[i : i + 1, :n], lengths[i : i + 1])
        feats = authors_features(sd, hidden, normalize=normalize)[0, : int(frames[0])]
        theirs = speechclip_plus(sd, feats, vocab, heads, clip_heads(towers["clip_conf"]))
        alone = model.encode_speech(speech[i : i + 1, :n], lengths[i : i + 1])
        # in a batch, HuBERT's GroupNorm sees the padding (see known_mismatches): the longest only
        rows = [(alone, 0)] + ([(batched, i)] if n == int(lengths.max()) else [])
        for out, row in rows:
            ids = out.keyword_ids[row]
            assert ids[ids >= 0].tolist() == theirs["keyword_ids"].tolist()
            torch.testing.assert_close(out.cascaded[row], theirs["cascaded"], atol=1e-5, rtol=0)
            if kind != "cascaded+":
                torch.testing.assert_close(out.parallel[row], theirs["parallel"], atol=1e-5, rtol=0)


def test_tensors_land_where_they_should(towers, tmp_path):
    """Large COCO cascaded+ (two width-5 convolutions, MLP projection) and Large COCO hybrid (a
    TransformerEncoder, K x D_t BatchNorm permuted keyword-major)."""
    ckpt, sd, _ = make_plus(towers, tmp_path / "c.ckpt", "cascaded+", "large", "coco")
    w = torch.load(run_import(towers, ckpt, tmp_path / "c", verify=False) / "valid.mean_r10.best.pth")
    c = "cascaded_branch."
    assert torch.equal(w["cascaded.cif.convs.1.weight"], sd[c + "downsampling.conv.3.weight"])
    assert w["cascaded.cif.convs.1.weight"].shape[-1] == 5
    assert torch.equal(w["cascaded.cif.head.bias"], sd[c + "downsampling.weight_proj.1.bias"])
    assert torch.equal(w["cascaded.projection.3.weight"], sd[c + "linear_proj.sequential.3.weight"])
    assert torch.equal(w["cascaded.norm.running_var"], sd[c + "bn_layer.bn_layer.running_var"])
    assert int(w["cascaded.cif.num_forwards"]) >= 5000  # past the alpha scaling
    ckpt, sd, _ = make_plus(towers, tmp_path / "h.ckpt", "hybrid", "large", "coco")
    exp = run_import(towers, ckpt, tmp_path / "h", verify=False)
    w = torch.load(exp / "valid.mean_r10.best.pth")
    assert torch.equal(w["cascaded.layers.0.ff.3.weight"], sd[c + "self_att.model.layers.0.linear2.weight"])
    assert torch.equal(w["cascaded.layers.0.ff_norm.bias"], sd[c + "self_att.model.layers.0.norm2.bias"])
    assert torch.equal(w["cascaded.final_norm.weight"], sd[c + "self_att.model.norm.weight"])
    assert torch.equal(w["cascaded.parallel_cls"], sd[c + "parallel_cls"])
    theirs = sd[c + "bn_layer.bn_layer.weight"]  # feature d * K + k
    k, d_t = 8, theirs.numel() // 8
    assert torch.equal(w["cascaded.norm.weight"].view(k, d_t), theirs.view(d_t, k).t())
    assert "loss.log_scale" not in w  # Large COCO hybrid: a fixed temperature
    conf = json.loads((exp / "import.json").read_text())["architecture"]
    assert conf["cascaded"]["final_norm"] is True and conf["layer_norm"] is True


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda sd: sd.update({"cascaded_branch.downsampling.cif_output_proj.weight": torch.zeros(4, 4)}),
         r"unknown key cascaded_branch\.downsampling\.cif_output_proj\.weight"),
        (lambda sd: sd.pop("cascaded_branch.downsampling.weight_proj.1.bias"),
         r"missing key cascaded_branch\.downsampling\.weight_proj\.1\.bias"),
        (lambda sd: sd.pop("cascaded_branch.parallel_proj.bias"),
         r"missing key cascaded_branch\.parallel_proj\.bias"),
    ],
)  # fmt: skip
def test_leftover_or_missing_keys_are_named(towers, tmp_path, edit, match):
    ckpt, _, _ = make_plus(towers, tmp_path / "model.ckpt", "hybrid+", "base", "flickr", edit=edit)
    with pytest.raises(AuthorsCheckpointError, match=match):
        run_import(towers, ckpt, tmp_path / "exp", verify=False)
    assert not (tmp_path / "exp").exists()


def test_unknown_release_imports_with_a_line(towers, tmp_path):
    def config_edit(config):
        config["data"]["dataset"]["name"] = "places"

    ckpt, _, _ = make_plus(
        towers, tmp_path / "model.ckpt", "cascaded+", "base", "flickr", config_edit=config_edit
    )
    record = json.loads(
        (run_import(towers, ckpt, tmp_path / "exp", verify=False) / "import.json").read_text()
    )
    assert record["source"]["release"]["identified"] is False
    assert "matches none of the authors' released checkpoints" in record["source"]["release"]["summary"]


def test_weights_only_and_plain_dict_configs(towers, tmp_path):
    """A bare state dict (no config: the branch from its keys, the heads from the releases), and
    hyper-parameters as nested plain dicts holding a Python set (pickled as __builtin__.set)."""
    _, sd, _ = make_plus(towers, tmp_path / "model.ckpt", "hybrid+", "base", "flickr")
    torch.save(sd, tmp_path / "weights.ckpt")
    exp = run_import(towers, tmp_path / "weights.ckpt", tmp_path / "w", verify=False)
    record = json.loads((exp / "import.json").read_text())
    assert (
        record["architecture"]["model"] == "hybrid_plus" and record["architecture"]["cascaded"]["nhead"] == 8
    )
    config = plus_config(
        "hybrid+", "base", "flickr", towers["hubert"]["encoder.layers.0.fc2.weight"].shape[0]
    )
    config["trainer"].pop("logger")
    config.pop("parsed_args")
    config["data"]["splits"] = {"train", "dev"}
    torch.save({"state_dict": sd, "hparams": {"config": config}}, tmp_path / "dicts.ckpt")  # older Lightning
    loaded = load_authors_checkpoint(tmp_path / "dicts.ckpt")
    assert set(loaded["hparams"]["config"]["data"]["splits"]) == {"train", "dev"}
    record = json.loads(
        (
            run_import(towers, tmp_path / "dicts.ckpt", tmp_path / "d", verify=False) / "import.json"
        ).read_text()
    )
    assert record["source"]["release"]["path"] == "base/flickr/hybrid+"


def test_code_running_pickle_in_a_plus_file_is_refused(towers, tmp_path):
    marker = tmp_path / "pwned"

    def config_edit(config):
        config["trainer"]["callbacks"] = [_exploit(marker)]

    ckpt, _, _ = make_plus(
        towers, tmp_path / "model.ckpt", "cascaded+", "base", "flickr", config_edit=config_edit
    )
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load .*model\.ckpt"):
        load_authors_checkpoint(ckpt)
    assert not marker.exists()


# SpeechCLIP+'s learnable parameter counts, from building its own model class for each released config
PARAMETERS = {
    # cascaded+ Base: 4_529_679 (its layout is the tiny one's; the forward test covers it)
    ("hybrid", "base", "flickr"): 3_166_478,
    ("hybrid+", "base", "flickr"): 4_924_175,
    ("hybrid", "large", "flickr"): 7_895_578,
    ("cascaded+", "large", "coco"): 16_527_643,
    ("hybrid", "large", "coco"): 15_243_801,
}
WIDTHS = {"base": (768, 13, 512), "large": (1024, 25, 768)}  # D_a, layer weights, CLIP width


@pytest.mark.parametrize("kind, size, corpus", list(PARAMETERS))
def test_real_widths(tmp_path, kind, size, corpus):
    """Releases at SpeechCLIP+'s real widths (HuBERT Base 768 / Large 1024, CLIP 512 / 768), frozen towers
    left out (a weights-only save), the vocabulary from the authors' usage file: the architecture, the
    shapes of the mapping, and as many learnable parameters mapped as SpeechCLIP+'s class has."""
    d_a, n_weights, d_t = WIDTHS[size]
    g = torch.Generator().manual_seed(0)
    vocab = reduced_vocabulary(0, size={"flickr": 8112, "coco": 19787}[corpus])
    sd = {
        "audio_encoder.weightedsum_layer.weights": torch.randn(n_weights, generator=g),
        "clip.model.token_embedding.weight": torch.randn(len(vocab), d_t, generator=g),
        "clip.model.text_projection": torch.randn(d_t, d_t, generator=g),
    }
    hubert = {"encoder.layers.0.fc2.weight": torch.zeros(d_a, 1)}
    stub = {"token_embedding.weight": torch.zeros(49408, d_t), "text_projection": torch.zeros(d_t, d_t)}
    config = plus_config(kind, size, corpus, d_a)
    for key, value in plus_state_dict(kind, size, corpus, hubert, stub, vocab, ff=4096).items():
        if key.startswith(("cascaded_branch.", "criterion.")) and not key.startswith("cascaded_branch.clip."):
            sd[key] = value
    torch.save(sd, tmp_path / "model.ckpt")
    usage = tmp_path / "usage.npy"
    np.save(usage, vocab)
    from espnet_speechclip.authors import import_checkpoint

    exp = import_checkpoint(tmp_path / "model.ckpt", tmp_path / "exp", vocab_usage=usage, verify=False)
    record = json.loads((exp / "import.json").read_text())
    arch = record["architecture"]
    assert (arch["speech_width"], arch["text_width"], arch["embed_dim"]) == (d_a, d_t, d_t)
    assert (
        arch["cascaded"]["nhead"] == config["model_settings"]["cascaded_branch"]["transformer_args"]["nhead"]
    )
    shapes = {m["ours"]: m["shape"] for m in record["mapping"]}
    if kind == "hybrid":
        assert shapes["cascaded.norm.weight"] == [8 * d_t] and shapes["cascaded.cls"] == [1, 8, d_a]
    else:
        width = config["model_settings"]["cascaded_branch"]["downsampling"]["cif"]["conv_cif_width"]
        assert shapes["cascaded.cif.convs.0.weight"] == [d_a, d_a, width]
        assert shapes["cascaded.norm.weight"] == [d_t]
    buffers = ("running_mean", "running_var", "num_batches_tracked", "curr_temp")
    learnable = [m["shape"] for m in record["mapping"] if m["authors"] and not m["authors"].endswith(buffers)]
    assert sum(int(np.prod(s)) for s in learnable) == PARAMETERS[(kind, size, corpus)]
    assert record["source"]["release"]["path"] == f"{size}/{corpus}/{kind}"
