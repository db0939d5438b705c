"""The model card of a packed model: the Hub's YAML header, what the model is, its results, usage lines,
the config and a citation. The archive's ``README.md`` and its Hub repo's are this card.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple

import yaml

from espnet_speechclip.config import config_value, dotted_get
from espnet_speechclip.evaluation.tables import (
    hit_rate_table,
    is_results,
    keyword_timing_table,
    retrieval_table,
)

if TYPE_CHECKING:
    from huggingface_hub import ModelCardData


def _flatten(results: Any, prefix: str = "") -> List[Tuple[str, Any]]:
    if isinstance(results, dict):
        rows: List[Tuple[str, Any]] = []
        for k, v in results.items():
            rows += _flatten(v, f"{prefix} / {k}" if prefix else str(k))
        return rows
    return [(prefix, results)]


def _fmt(value: Any) -> str:
    return (
        f"{value:.4g}"
        if isinstance(value, float)
        else json.dumps(value)
        if isinstance(value, (list, dict))
        else str(value)
    )


# The model card's defaults: CLIP's text side (its BPE vocabulary and text tower) is English, and
# ESPnet's model cards on the Hub default to CC-BY-4.0.
CARD_DEFAULTS: Dict[str, Any] = {"license": "cc-by-4.0", "language": "en"}
# The Hub's metadata: the tags ESPnet users and SpeechCLIP users filter by.
CARD_TAGS = ("espnet", "speechclip", "audio", "image-retrieval", "visually-grounded-speech")
LIBRARY_NAME = "espnet-speechclip"

CITATION = """@inproceedings{shih2022speechclip,
  title     = {{SpeechCLIP}: Integrating Speech with Pre-Trained Vision and Language Model},
  author    = {Shih, Yi-Jen and Wang, Hsuan-Fu and Chang, Heng-Jui and Berry, Layne and Lee, Hung-yi
               and Harwath, David},
  booktitle = {IEEE Spoken Language Technology Workshop (SLT)},
  year      = {2022},
}"""


def card_metadata(config: dict, card: Mapping[str, Any]) -> ModelCardData:
    """The YAML header the Hub reads (library, tags, datasets, license, language), as
    ``huggingface_hub``'s own :class:`ModelCardData`."""
    from huggingface_hub import ModelCardData

    model = config_value(config, "model")
    dataset = card.get("dataset")
    return ModelCardData(
        library_name=LIBRARY_NAME,
        license=card.get("license") or CARD_DEFAULTS["license"],
        language=card.get("language") or CARD_DEFAULTS["language"],
        datasets=[dataset] if dataset else None,
        tags=[*CARD_TAGS, f"speechclip-{model}"],
    )


def _results_section(results: Any) -> List[str]:
    """results.json -> the tables of RESULTS.md (one per test set); any other JSON -> a metric table."""
    lines = ["## Results", ""]
    if not is_results(results):
        lines += ["| metric | value |", "|---|---:|"]
        return lines + [f"| {k} | {_fmt(v)} |" for k, v in _flatten(results)] + [""]
    lines += [
        "Recall in percent over the test set's unique images (an image query hits if any of its captions "
        "is in the top K; zero-shot speech↔text uses CLIP text embeddings of the transcripts).",
        "",
    ]
    for test_set, scores in results.items():
        lines += [f"### {test_set}", "", *retrieval_table(scores), ""]
        if "keyword_hit_rate" in scores.get("cascaded", {}):
            lines += ["Keyword hit rate (cascaded):", "", *hit_rate_table(scores["cascaded"]), ""]
        if "keyword_timing" in scores.get("cascaded", {}):
            lines += [
                "Keyword timing (cascaded):",
                "",
                *keyword_timing_table(scores["cascaded"]["keyword_timing"]),
                "",
            ]
    return lines


def model_card(
    config: dict,
    meta: Mapping[str, Any],
    repo_id: Optional[str] = None,
    archive_name: str = "model.zip",
) -> str:
    """The model card of a packed model: the Hub's YAML header, what the model is, its results, usage
    lines, the config and a citation. The archive's ``README.md`` and the Hub repo's are this card:
    with ``repo_id`` the usage lines load the Hub repo, else the archive ``archive_name``.

    Args:
        config: the packed ``config.yaml`` (paths are archive members).
        meta: the archive's ``meta.json`` (``paths``: config keys packed as files; ``card``: the
            parameter counts, results, free text, dataset, license and language given at packing).
    """
    # the speech encoder's constructor defaults: the model classes (and ESPnet) load only for a card
    from espnet_speechclip.models.builder import option_value

    card = meta.get("card", {})
    model = config_value(config, "model")
    branches = {
        "hybrid": ["parallel", "cascaded"],
        "hybrid_plus": ["parallel", "cascaded (CIF keywords)"],
        "hybrid_shared": ["parallel", "cascaded"],
        "cascaded_plus": ["cascaded (CIF keywords)"],
    }.get(model, [model])
    packed_keys = set(meta.get("paths", {}))
    upstream = option_value(config, "speech_encoder_conf.upstream")
    upstream_path = option_value(config, "speech_encoder_conf.path_or_url")
    clip = config_value(config, "clip_conf")
    source = repo_id or archive_name

    def origin(key: str, value: Any, what: str) -> str:
        return "packed with the model" if key in packed_keys else f"{what} `{value}`, fetched on first use"

    header = card_metadata(config, card).to_yaml()
    title = f"# SpeechCLIP ({model})" + (f": `{repo_id}`" if repo_id else "")
    lines = ["---", header, "---", "", title, ""]
    if card.get("card_text"):
        lines += [card["card_text"].strip(), ""]
    lines += [
        "A SpeechCLIP model (Shih et al., IEEE SLT 2022) trained with "
        "[espnet_speechclip](https://pypi.org/project/espnet-speechclip/), the ESPnet plugin for "
        "SpeechCLIP: a frozen s3prl speech upstream aligned with a frozen CLIP through images.",
        "",
        f"- Model: `{model}` (branches: {', '.join(branches)})",
        f"- Speech upstream: s3prl `{upstream}` (frozen)"
        + (
            f", checkpoint {origin('speech_encoder_conf.path_or_url', upstream_path, 'URL')}"
            if upstream_path
            else ""
        ),
        f"- CLIP: `{clip.get('model_name')}` (frozen), weights "
        + origin("clip_conf.pretrained", clip.get("pretrained"), "open_clip tag"),
        f"- Image input: `{config_value(config, 'image_input')}`",
    ]
    if card.get("dataset"):
        lines.append(f"- Trained on: `{card['dataset']}`")
    codebook = dotted_get(config, "model_conf.cascaded_conf.codebook")
    if model != "parallel":
        lines.append(
            "- Keyword codebook: "
            + ("full CLIP vocabulary" if codebook in (None, "full") else "packed with the model")
        )
    params = card.get("params")
    if params:
        lines.append(
            f"- Trainable parameters: {params['trainable']:,} ({params['trainable'] / 1e6:.2f} M); "
            f"total (frozen towers included): {params['total']:,}"
        )
    lines += [f"- Packed with espnet_speechclip {meta.get('package_version', '?')}", ""]
    if card.get("results") is not None:
        lines += _results_section(card["results"])
    lines += [
        "## Usage",
        "",
        "`pip install espnet-speechclip`, then in Python:",
        "",
        "```python",
        "from espnet_speechclip.inference import Speech2Image",
        "",
        f's2i = Speech2Image.from_pretrained("{source}")',
        'embeddings = s2i("utterance.wav")  # {branch: (1, D_c)}; keyword_ids / keyword_scores (cascaded)',
        's2i.retrieve_images("utterance.wav", ["a.jpg", "b.jpg"], topk=1)',
        's2i.keywords("utterance.wav", timing=True)  # cascaded: keywords, scores, where heard (seconds)',
        "```",
        "",
        "or in a web page (speech -> images with the keywords, text -> images or utterances, "
        "image -> utterances; `pip install 'espnet-speechclip[web]'`):",
        "",
        "```sh",
        f"python -m espnet_speechclip.bin.demo --model {source} --images <image folder or data/<set>>",
        "```",
        "",
        "A data dir (Kaldi-style `wav.scp`, `utt2img`, `img.scp`, `text`), embedded and scored:",
        "",
        "```sh",
        f"python -m espnet_speechclip.bin.speechclip_inference --model {source} \\",
        "    --data_dir data/<set> --output_dir decode_<set>",
        "```",
        "",
    ]
    if repo_id:
        lines += [
            "Evaluated in the recipe without training (downloads the data of `--corpus`, see its `db.sh`):",
            "",
            "```sh",
            "cd egs2/speechclip/sc1",
            f"./run.sh --download_model {repo_id} --skip_train true"
            + (f" --corpus {card['dataset']}" if card.get("dataset") else ""),
            "```",
            "",
        ]
    lines += [
        "Its speech encoder as an s3prl upstream (the upstream's hidden states, then the branch layers'), "
        "for s3prl's Featurizer and SUPERB downstreams:",
        "",
        "```python",
        "import espnet_speechclip  # registers the speechclip upstreams with s3prl",
        "from s3prl.nn import Featurizer, S3PRLUpstream",
        "",
        f'upstream = S3PRLUpstream("speechclip", path_or_url="{source}")',
        "featurizer = Featurizer(upstream)",
        "```",
        "",
    ]
    if repo_id:
        lines += [
            "The repo holds the packed model unpacked: `config.yaml`, `model.pth`, `meta.json` (format, "
            "sha256 of every file, which config keys point at which file) and `files/` (local files the "
            "model is rebuilt from). Loading checks every file but this card against `meta.json`; "
            "`HF_HUB_OFFLINE=1` loads the cached snapshot (`HF_HUB_CACHE` / `HF_HOME`) without network.",
            "",
        ]
    else:
        lines += [
            f"`{archive_name}` is extracted once into `$ESPNET_SPEECHCLIP_CACHE/<sha256>/`, else "
            "`$XDG_CACHE_HOME/espnet_speechclip/<sha256>/`, else `~/.cache/espnet_speechclip/<sha256>/`, "
            "checking every member's sha256 against `meta.json`; set `ESPNET_SPEECHCLIP_CACHE` to keep "
            "it elsewhere.",
            "",
        ]
    lines += [
        "## Config",
        "",
        "<details><summary>config.yaml</summary>",
        "",
        "```yaml",
        yaml.safe_dump(config, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        "</details>",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
