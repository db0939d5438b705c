"""Tiny stand-ins for the pretrained models and corpora, built locally by the tests.

- a random tiny HuBERT saved in s3prl's converted-checkpoint format (loads with ``hubert_local``);
- a random tiny CLIP (``conf/clip/tiny-clip.json``) saved as an open_clip weights file;
- a tiny spoken-caption corpus where each image is a solid colour and its captions are tones whose
  pitch encodes the colour, so a few epochs can learn it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, Iterator, List

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "conf" / "tiny"
TINY_CLIP_CONFIG = ROOT / "conf" / "clip" / "tiny-clip.json"
RECIPE = ROOT / "egs2" / "speechclip" / "sc1"

TINY_HUBERT_MODEL_CFG = dict(
    label_rate=50,
    extractor_mode="default",
    encoder_layers=2,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=2,
    final_dim=32,
    conv_feature_layers="[(32,10,5)] + [(32,3,2)]*4 + [(32,2,2)]*2",
    conv_pos=16,
    conv_pos_groups=4,
)


def make_tiny_hubert(path: Path, normalize: bool = False, seed: int = 0) -> Path:
    from espnet_speechclip.compat import patch_s3prl

    patch_s3prl()
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    task_cfg = dict(sample_rate=16000, normalize=normalize, label_rate=50)
    torch.manual_seed(seed)
    model = HubertModel(
        merge_with_parent(HubertConfig, TINY_HUBERT_MODEL_CFG),
        merge_with_parent(HubertPretrainingConfig, task_cfg),
        [["a", "b"]],
    )
    torch.save(
        dict(
            task_cfg=task_cfg,
            model_cfg=TINY_HUBERT_MODEL_CFG,
            model_weight=model.state_dict(),
            dictionaries_symbols=[["a", "b"]],
        ),
        path,
    )
    return path


def make_pre_norm_hubert(path: Path, seed: int = 3) -> Path:
    """A tiny HuBERT with HuBERT Large's layout: pre-norm layers and a trained final LayerNorm."""
    from espnet_speechclip.compat import patch_s3prl

    patch_s3prl()
    from s3prl.upstream.hubert.hubert_model import HubertConfig, HubertModel, HubertPretrainingConfig
    from s3prl.upstream.utils import merge_with_parent

    cfg = dict(TINY_HUBERT_MODEL_CFG, layer_norm_first=True)
    task = dict(sample_rate=16000, normalize=True, label_rate=50)
    torch.manual_seed(seed)
    model = HubertModel(
        merge_with_parent(HubertConfig, cfg), merge_with_parent(HubertPretrainingConfig, task), [["a", "b"]]
    )
    with torch.no_grad():
        model.encoder.layer_norm.weight.uniform_(0.5, 1.5)
        model.encoder.layer_norm.bias.normal_(0, 0.3)
    torch.save(
        dict(
            task_cfg=task, model_cfg=cfg, model_weight=model.state_dict(), dictionaries_symbols=[["a", "b"]]
        ),
        path,
    )
    return path


def make_tiny_clip(path: Path, seed: int = 0) -> Dict[str, str]:
    """Random tiny CLIP weights at ``path``; returns the clip_conf that loads them."""
    import open_clip

    open_clip.add_model_config(TINY_CLIP_CONFIG)
    torch.manual_seed(seed)
    model = open_clip.create_model("tiny-clip", pretrained=None)
    torch.save(model.state_dict(), path)
    return dict(model_name="tiny-clip", pretrained=str(path), config_file=str(TINY_CLIP_CONFIG))


COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 30),
    "blue": (30, 30, 220),
    "yellow": (230, 220, 20),
    "purple": (140, 40, 170),
    "white": (245, 245, 245),
    "black": (10, 10, 10),
    "orange": (240, 140, 20),
}


def make_tiny_corpus(
    root: Path, n_images: int = 8, captions: int = 2, seed: int = 0, split: str = "train"
) -> Path:
    """Write images, wavs and a data dir ``root/data/tiny_<split>``; returns the data dir."""
    from PIL import Image

    from espnet_speechclip.data.datadir import Utterance, write_datadir
    from espnet_speechclip.data.media import write_wav

    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    utts: List[Utterance] = []
    for i in range(n_images):
        colour = names[i % len(names)]
        key = f"{split}img{i:03d}"
        img_path = root / "images" / f"{key}.png"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.full((40, 40, 3), COLOURS[colour], dtype=np.uint8)
        pixels[: 10 + i % 7] = 128  # a grey band so images of one colour still differ
        Image.fromarray(pixels).save(img_path)
        for c in range(captions):
            n = int(rng.randint(6000, 12000))
            t = np.arange(n) / 16000
            freq = 200 + 150 * names.index(colour)
            wav = 0.3 * np.sin(2 * np.pi * freq * t) + 0.01 * rng.randn(n)
            utt = f"spk{c}-{key}_{c}"
            wav_path = root / "wavs" / f"{utt}.wav"
            write_wav(wav_path, wav)
            utts.append(Utterance(utt, str(wav_path), f"a {colour} square", f"spk{c}", key, str(img_path), n))
    return write_datadir(root / "data" / f"tiny_{split}", utts)


def make_flickr8k_tree(root: Path, n_images: Dict[str, int] = None, captions: int = 2, seed: int = 0) -> Path:
    """A learnable miniature of Flickr8k in its official layout (colour images, tone captions)."""
    from PIL import Image

    from espnet_speechclip.data.media import write_wav

    n_images = n_images or {"train": 12, "dev": 4, "test": 4}
    split_files = {
        "train": "Flickr_8k.trainImages.txt",
        "dev": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    }
    rng = np.random.RandomState(seed)
    names = list(COLOURS)
    tokens, wav2capt, wav2spk = [], [], []
    (root / "Flicker8k_Dataset").mkdir(parents=True, exist_ok=True)
    (root / "Flickr8k_text").mkdir(parents=True, exist_ok=True)
    count = 0
    for split, n in n_images.items():
        listed = []
        for i in range(n):
            colour = names[count % len(names)]
            image = f"{1000 + count}_{split}{i}.jpg"
            count += 1
            pixels = np.full((48, 48, 3), COLOURS[colour], dtype=np.uint8)
            pixels[: 8 + i % 9] = 128
            Image.fromarray(pixels).save(root / "Flicker8k_Dataset" / image, "JPEG")
            listed.append(image)
            for k in range(5):
                tokens.append(f"{image}#{k}\ta {colour} square .")
            for k in range(captions):
                n_samples = int(rng.randint(6000, 12000))
                t = np.arange(n_samples) / 16000
                wav = 0.3 * np.sin(2 * np.pi * (200 + 150 * names.index(colour)) * t) + 0.01 * rng.randn(
                    n_samples
                )
                name = f"{image[:-4]}_{k}.wav"
                write_wav(root / "flickr_audio" / "wavs" / name, wav)
                wav2capt.append(f"{name} {image} #{k}")
                wav2spk.append(f"{name} {k + 1}")
        (root / "Flickr8k_text" / split_files[split]).write_text("".join(f"{x}\n" for x in listed))
    (root / "Flickr8k_text" / "Flickr8k.token.txt").write_text("".join(f"{x}\n" for x in tokens))
    (root / "flickr_audio" / "wav2capt.txt").write_text("".join(f"{x}\n" for x in wav2capt))
    (root / "flickr_audio" / "wav2spk.txt").write_text("".join(f"{x}\n" for x in wav2spk))
    return root


def training_data_args(train_dir: Path, valid_dir: Path = None, image_id_file: str = "utt2img") -> List[str]:
    """ESPnet data options for a tiny corpus whose data dirs hold ``image_emb.scp`` (cached embeddings)."""
    args: List[str] = []
    for mode, d in (("train", train_dir), ("valid", valid_dir or train_dir)):
        args += [
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/wav.scp,speech,sound_16k",
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/{image_id_file},image_id,text",
            f"--{mode}_data_path_and_name_and_type",
            f"{d}/image_emb.scp,image_emb,npy",
            f"--{mode}_shape_file",
            f"{d}/utt2num_samples",
        ]
    return args


def train_tiny_speechclip(
    root: Path, clip_conf: Dict[str, str], config: Path, hubert: Path = None, extra: List[str] = ()
) -> Dict[str, Path]:
    """Train a tiny SpeechCLIP for one epoch through the real entry point on a 4-image corpus (images
    as cached embeddings); with ``hubert`` its upstream is that local checkpoint."""
    from espnet_speechclip.bin import speechclip_train
    from espnet_speechclip.training.image_cache import cache_image_embeddings, write_utt_emb_scp

    data = make_tiny_corpus(root / "corpus", 4, 2, seed=0, split="train")
    cache = cache_image_embeddings(data / "img.scp", clip_conf, root / "image_emb", progress=False)
    write_utt_emb_scp(data / "utt2img", cache / "img_emb.scp", data / "image_emb.scp")
    exp = root / "exp"
    cmd = [
        "--config",
        str(config),
        "--output_dir",
        str(exp),
        "--ngpu",
        "0",
        "--max_epoch",
        "1",
        "--clip_conf",
        f"pretrained={clip_conf['pretrained']}",
        "--clip_conf",
        f"config_file={clip_conf['config_file']}",
    ]
    if hubert is not None:
        cmd += [
            "--speech_encoder_conf",
            "upstream=hubert_local",
            "--speech_encoder_conf",
            f"path_or_url={hubert}",
        ]
    speechclip_train.main(cmd + list(extra) + training_data_args(data))
    return dict(exp=exp, data=data, img_emb_scp=cache / "img_emb.scp")


def pack_random_model(root: Path, clip_conf: Dict[str, str], hubert: Path, **pack_kwargs) -> Path:
    """A tiny parallel SpeechCLIP shaped like the paper's (the branch takes the tiny HuBERT's frames:
    no projection) with random trainable weights, packed into ``root/model.zip``."""
    import yaml

    from espnet_speechclip.inference.packing import pack_model
    from espnet_speechclip.inference.speech2image import Speech2Image

    config = yaml.safe_load((TINY / "parallel.yaml").read_text())
    config["clip_conf"] = dict(clip_conf)
    config["speech_encoder_conf"] = dict(upstream="hubert_local", path_or_url=str(hubert))
    config["image_input"] = "embedding"
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    torch.save(Speech2Image(root / "config.yaml").model.state_dict(), root / "model.pth")
    return pack_model(root / "config.yaml", root / "model.pth", root / "model.zip", **pack_kwargs)


def place_in_hub_cache(folder: Path, cache: Path, repo_id: str, commit: str, refs=("main",)) -> Path:
    """Put ``folder``'s files into a Hugging Face Hub cache as ``snapshot_download`` leaves a model repo:
    ``models--<ns>--<name>/blobs/<sha256>``, ``snapshots/<commit>/<path>`` as relative links to the
    blobs, ``refs/<ref>`` holding the commit hash. Returns the snapshot folder."""
    import hashlib

    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for src in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = src.relative_to(folder)
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    for ref in refs:
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot


# ----------------------------------------------------------------------------- corpus fixture files
OK_LEN = 1600  # 0.1 s at 16 kHz, above the default min_samples=400


def make_jpg(path: Path, shade: int = 100) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, 50, 200)).save(path, "JPEG")


def make_photos(folder, n: int, seed: int = 0):
    """``n`` distinct random 16x16 JPEGs in ``folder`` (sorted names); returns their paths."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"photo_{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(p, "JPEG")
        paths.append(p)
    return paths


def make_wav(path: Path, n: int = OK_LEN, rate: int = 16000) -> None:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(n) / rate
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * 440 * t), rate, subtype="PCM_16")


def make_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not a RIFF file at all" * 10)


def write_lines(path: Path, lines: Iterable[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def prep_log(path: Path) -> str:
    return (path / "prep.log").read_text(encoding="utf-8")


def assert_kaldi_sorted(path: Path) -> None:
    """utt2spk must sort the same by utterance and by (speaker, utterance): ESPnet/Kaldi checks this."""
    from espnet_speechclip.data.datadir import read_kv

    rows = list(read_kv(path / "utt2spk").items())
    assert rows == sorted(rows, key=lambda r: (r[1], r[0]))


# ------------------------------------------------------------------------------- built-in corpus
SYNTH_SIZES = dict(seed=3, n_train=6, n_dev=2, n_test=2, captions_per_image=3)


def generate_synth_corpus(root: Path, workers: int) -> Path:
    """The spoken-shapes corpus at :data:`SYNTH_SIZES` under ``root`` (``dump/``, ``data/``)."""
    import pytest

    from espnet_speechclip.data.synth import corpus as synth_corpus

    # Small shards so that two workers really split the work (the bytes must not depend on it).
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth_corpus, "_SHARD_SIZE", 7)
        synth_corpus.generate(root / "dump", root / "data", workers=workers, **SYNTH_SIZES)
    return root


# Captions: what the words mean, written out independently of the generator.
_POSITION = r"on the left|on the right|at the top|at the bottom|in the middle"
_NP = rf"(an?) (?:(small|big) )?(\w+) (\w+)(?: ({_POSITION}))?"
_ONE = re.compile(rf"^(?:there is |a picture of )?{_NP}$")
_TWO = re.compile(rf"^(?:there is |a picture of )?{_NP} (left of|right of|above|below|and) {_NP}$")
_PLACE = {
    "on the left": "left",
    "on the right": "right",
    "at the top": "top",
    "at the bottom": "bottom",
    "in the middle": "middle",
}
_RELATION = {
    "left of": ("left", "right"),
    "right of": ("right", "left"),
    "above": ("top", "bottom"),
    "below": ("bottom", "top"),
}


def _mention_matches(groups, obj: dict) -> bool:
    article, size, colour, shape, place = groups
    if article != ("an" if (size or colour)[0] in "aeiou" else "a"):
        return False
    return (
        colour == obj["colour"]
        and shape == obj["shape"]
        and size in (None, obj["size"])
        and (place is None or _PLACE[place] == obj["position"])
    )


def assert_describes(text: str, scene: dict) -> None:
    """Fail unless ``text`` mentions exactly the scene's objects, with their true attributes and relation."""
    objs = scene["objects"]
    if len(objs) == 1:
        m = _ONE.match(text)
        assert m and _mention_matches(m.groups(), objs[0]), f"{text!r} does not describe {scene}"
        return
    m = _TWO.match(text)
    assert m, f"{text!r} does not mention both objects of {scene}"
    first, rel, second = m.groups()[:5], m.group(6), m.groups()[6:]
    for a, b in ((objs[0], objs[1]), (objs[1], objs[0])):
        if _mention_matches(first, a) and _mention_matches(second, b):
            assert rel == "and" or _RELATION[rel] == (a["position"], b["position"]), (
                f"{text!r}: wrong relation for {scene}"
            )
            return
    raise AssertionError(f"{text!r} does not describe {scene}")


# --------------------------------------------------------------------------------------------------
# Scenes, captions, rendering (no speech)
# --------------------------------------------------------------------------------------------------


# -------------------------------------------------------------------------------------- the recipe
def copy_recipe(dest: Path) -> Path:
    """A copy of egs2/speechclip/sc1 at ``dest`` (conf/ linked), to run without touching the real one."""
    dest.mkdir(parents=True)
    for name in ("run.sh", "speechclip.sh", "path.sh", "cmd.sh", "db.sh"):
        shutil.copy(RECIPE / name, dest / name)
    for name in ("utils", "local"):
        shutil.copytree(RECIPE / name, dest / name)
    (dest / "conf").symlink_to(ROOT / "conf")
    return dest


def run_recipe(recipe: Path, *args: str, env=None) -> str:
    """``./run.sh args`` in ``recipe`` with this interpreter first on PATH; its output, or an
    AssertionError with the tail of it."""
    env = dict(os.environ, **(env or {}))
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        ["./run.sh", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=1800
    )
    if proc.returncode != 0:
        raise AssertionError(f"run.sh {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ a Hub on loopback
class FakeHub:
    """The part of the Hugging Face Hub's HTTP API that ``HfApi.create_repo`` and ``HfApi.upload_folder``
    use (repo creation, README metadata validation, preupload, commit), served on 127.0.0.1 and recording
    what arrives. Every file
    is accepted as a regular (base64-in-the-commit) upload, so the bytes land here. Any other request is
    answered 404 and recorded. The server shuts itself down after ``lifetime`` seconds at the latest."""

    def __init__(self, lifetime: float = 120.0):
        import base64
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.created: List[dict] = []
        self.validated: List[str] = []  # README.md texts sent for metadata validation
        self.commits: List[dict] = []  # {"repo", "revision", "summary", "files": {path: bytes}}
        self.unexpected: List[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
                if path == "/api/validate-yaml":  # the Hub checks a README's metadata before the upload
                    from huggingface_hub import ModelCard

                    body = json.loads(raw)
                    hub.validated.append(body["content"])
                    try:
                        ModelCard(body["content"])
                    except Exception as e:
                        return self._reply(400, {"errors": [{"message": str(e)}]})
                    return self._reply(200, {"errors": [], "warnings": []})
                if path == "/api/repos/create":
                    body = json.loads(raw)
                    hub.created.append(body)
                    return self._reply(200, {"url": f"{hub.url}/{body['organization']}/{body['name']}"})
                if m and m.group(2) == "preupload":
                    files = json.loads(raw)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                    return self._reply(200, {"files": modes, "commitOid": "0" * 40})
                if m and m.group(2) == "commit":
                    lines = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
                    files = {
                        x["value"]["path"]: base64.b64decode(x["value"]["content"])
                        for x in lines
                        if x["key"] == "file"
                    }
                    summary = next(x["value"]["summary"] for x in lines if x["key"] == "header")
                    oid = f"{len(hub.commits) + 1:040x}"
                    hub.commits.append(
                        dict(repo=m.group(1), revision=m.group(3), summary=summary, files=files)
                    )
                    return self._reply(
                        200, {"commitUrl": f"{hub.url}/{m.group(1)}/commit/{oid}", "commitOid": oid}
                    )
                hub.unexpected.append(f"POST {self.path}")
                self._reply(404, {"error": "not served by FakeHub"})

            def do_GET(self):
                hub.unexpected.append(f"GET {self.path}")
                self._reply(404, {"error": "not served by FakeHub"})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()

    def files(self, repo_id: str) -> Dict[str, bytes]:
        """The repo's files after all commits so far."""
        out: Dict[str, bytes] = {}
        for commit in self.commits:
            if commit["repo"] == repo_id:
                out.update(commit["files"])
        return out

    def close(self) -> None:
        self._timer.cancel()
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()


# A budget that only checks the ASR commands run: one epoch of a few steps.
REUSE_TEST_ASR_ARGS = "--max_epoch 1 --num_iters_per_epoch 3 --batch_size 4 --num_workers 0"


def run_reuse_example(recipe: Path, exp: str) -> str:
    """``local/reuse_example.sh --exp <exp>`` in a recipe folder after ``run.sh``, as the README has
    it, with ASR training at :data:`REUSE_TEST_ASR_ARGS`; its output, or an AssertionError with the tail."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    env["OMP_NUM_THREADS"] = "1"
    cmd = ["local/reuse_example.sh", "--exp", exp, "--asr_args", REUSE_TEST_ASR_ARGS]
    proc = subprocess.run(cmd, cwd=recipe, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout + proc.stderr


def check_reuse_example_output(out: str, recipe: Path, exp: str, corpus: str, n_test_images: int) -> None:
    """What the reuse example prints and writes after a run on ``corpus``."""
    import json

    test = f"{corpus}_test"
    assert "Hit(index=" in out  # the API's retrievals
    assert re.search(rf"^query: \S+  \(model {exp}/packed/model.zip, \w+ branch\)$", out, re.M)
    assert f"images (top {min(5, n_test_images)} of {n_test_images}):" in out
    assert re.search(r"^CER \d+\.\d\d % \(\d+ errors / \d+ reference chars", out, re.M)
    decode = recipe / "exp" / f"asr_{Path(exp).name}" / f"decode_{test}"
    hyps = (decode / "1best_recog" / "text").read_text().splitlines()
    refs = (recipe / "dump" / "raw" / test / "text").read_text().splitlines()
    assert [h.split()[0] for h in hyps] == [r.split()[0] for r in refs]
    assert json.loads((decode / "cer.json").read_text())["char"]["n_utts"] == len(refs)
    assert (recipe / "dump" / "token_list" / f"{corpus}_train_bpe100" / "bpe.model").is_file()
    assert "nltk" not in out and "initialized randomly" not in out


@contextlib.contextmanager
def lock_held_elsewhere(folder: Path, what: str = "training") -> Iterator[subprocess.Popen]:
    """Another process holding ``folder``'s lock (:mod:`espnet_speechclip.locks`) while the block runs;
    it is killed with SIGKILL at the end, as a crashed holder would be."""
    code = (
        "import time\n"
        "from espnet_speechclip.locks import folder_lock\n"
        f"with folder_lock({str(folder)!r}, {what!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
