"""A Python API over a trained SpeechCLIP: embeddings, retrieval and keywords without the recipe.

    from espnet_speechclip.api import SpeechCLIPPipeline

    pipe = SpeechCLIPPipeline.from_pretrained("exp/synth_parallel/packed/model.zip", device="cpu")
    pipe.embed_speech(["a.wav", (wave_8k, 8000)])       # {"parallel": (2, D_c), ...}
    pipe.retrieve_images("a.wav", ["x.jpg", "y.jpg"], topk=1)
    pipe.keywords("a.wav")                               # cascaded / hybrid models

The numbers are the inference entry's (:mod:`espnet_speechclip.inference`): the same model loading,
audio loading/resampling, batching and towers. (With the same ``batch_size``, 16 by default: HuBERT's
GroupNorm feature extractor sees the zero padding, so an utterance's features move slightly with the
length of its batch-mates.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet_speechclip.data.media import MediaError, load_audio, load_image, resample

PathLike = Union[str, Path]
# A file path, a 16 kHz waveform (T,), or a waveform at any rate as (waveform, sample_rate).
SpeechInput = Union[PathLike, np.ndarray, torch.Tensor, Tuple[Any, int]]
ImageInput = Any  # a file path or a PIL image

WEIGHT_FILES = ("valid.mean_r10.best.pth", "latest.pth")


class Hit(NamedTuple):
    """One retrieved candidate: its position in the candidate list, the candidate as given, the
    cosine similarity to the query."""

    index: int
    item: Any
    score: float


class Keyword(NamedTuple):
    """One cascaded keyword: the CLIP subword, its vocabulary id, its cosine score to the codebook."""

    token: str
    id: int
    score: float


def find_weights(exp_dir: PathLike) -> Path:
    """The weights of an experiment folder: ``valid.mean_r10.best.pth``, else ``latest.pth``."""
    for name in WEIGHT_FILES:
        if (Path(exp_dir) / name).is_file():
            return Path(exp_dir) / name
    raise FileNotFoundError(f"{exp_dir} holds none of {', '.join(WEIGHT_FILES)}: give model_file")


def list_images(folder: PathLike) -> List[Path]:
    """Image files (by extension PIL knows) directly inside ``folder``, sorted by name."""
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    extensions = {ext.lower() for ext in Image.registered_extensions()}
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in extensions)
    if not files:
        raise MediaError(f"image folder {folder} holds no image files")
    return files


def _is_one_speech(x: Any) -> bool:
    """A single utterance (path, waveform, (waveform, rate)) rather than a list of them."""
    if isinstance(x, (str, Path, np.ndarray, torch.Tensor)):
        return True
    return (isinstance(x, tuple) and len(x) == 2 and isinstance(x[1], (int, np.integer))
            and not isinstance(x[0], (str, Path)))


def _is_one_image(x: Any) -> bool:
    from PIL import Image

    return isinstance(x, (str, Path, Image.Image))


def _as_list(x: Any, one: bool) -> List[Any]:
    return [x] if one else list(x)


class SpeechCLIPPipeline:
    """A loaded SpeechCLIP model with batched, device-aware embedding, retrieval and keywords.

    Args:
        model: a trained SpeechCLIP (e.g. from :func:`espnet_speechclip.inference.load_model`).
        clip_conf: the model's CLIP config (the image tower is built from it on first use when the
            model was trained on cached image embeddings).
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: utterances / images per forward pass.
        source: where the model came from (for messages).
    """

    def __init__(self, model, clip_conf: dict, device: str = "cpu", batch_size: int = 16, source: str = "model"):
        self.model = model.to(device).eval()
        self.clip_conf = dict(clip_conf)
        self.device = str(device)
        self.batch_size = batch_size
        self.source = source
        self._image_encoder = model.image_encoder

    @classmethod
    def from_pretrained(cls, path: PathLike, device: str = "cpu", model_file: Optional[PathLike] = None,
                        batch_size: int = 16, cache_dir: Optional[PathLike] = None) -> "SpeechCLIPPipeline":
        """Load a packed archive (.zip of ``espnet_speechclip.bin.pack``) or an experiment folder
        (``config.yaml`` + ``model_file``, default ``valid.mean_r10.best.pth``, else ``latest.pth``;
        relative paths in the config are relative to the current directory, as for training).

        Raises:
            FileNotFoundError: no such archive / folder / config / weights.
            PackError: a corrupt or tampered archive.
        """
        from espnet_speechclip.inference import load_model

        path = Path(path)
        if path.is_dir():
            config = path / "config.yaml"
            if not config.is_file():
                raise FileNotFoundError(f"experiment folder {path} has no config.yaml")
            weights = Path(model_file) if model_file is not None else find_weights(path)
            if not weights.is_file():
                raise FileNotFoundError(f"model file {weights} does not exist")
        elif path.is_file():
            if model_file is not None:
                raise ValueError(f"{path} is a packed archive with its own weights: do not give model_file")
            from espnet_speechclip.packing import unpack_model

            config, weights = unpack_model(path, cache_dir)
        else:
            raise FileNotFoundError(f"SpeechCLIP model {path} does not exist (a packed .zip or an exp folder)")
        model, train_args = load_model(config, weights, device)
        return cls(model, train_args.clip_conf, device, batch_size, source=str(path))

    @property
    def branches(self) -> List[str]:
        return list(self.model.branches)

    # ------------------------------------------------------------------------------------ inputs
    def _load_speech(self, item: SpeechInput, name: str) -> np.ndarray:
        """One input -> mono float32 16 kHz waveform (T,), checked."""
        if isinstance(item, (str, Path)):
            wav = load_audio(item)  # resamples; names the file on any failure
            name = str(item)
        elif isinstance(item, tuple):
            wav, rate = item
            if int(rate) <= 0:
                raise ValueError(f"speech input {name}: sample rate must be positive, got {rate}")
            wav = self._mono(wav, name)
            if wav.size:
                wav = resample(wav, int(rate))
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            wav = self._mono(item, name)
        else:
            raise TypeError(f"speech input {name}: expected a file path, a 16 kHz waveform or "
                            f"(waveform, sample_rate), got {type(item).__name__}")
        if wav.size == 0:
            raise MediaError(f"speech input {name} is empty")
        if not np.isfinite(wav).all():
            raise MediaError(f"speech input {name} contains NaN or infinite samples")
        min_samples = self.model.speech_encoder.min_samples
        if len(wav) < min_samples:
            raise MediaError(f"speech input {name}: {len(wav)} samples at 16 kHz, shorter than the speech "
                             f"encoder's {min_samples}-sample receptive field")
        return wav

    @staticmethod
    def _mono(wav: Any, name: str) -> np.ndarray:
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(f"speech input {name}: expected a mono waveform (T,), got shape {wav.shape}; "
                             f"give several utterances as a list")
        return wav

    @staticmethod
    def _load_image(item: ImageInput, name: str):
        from PIL import Image

        if isinstance(item, (str, Path)):
            return load_image(item)  # names the file when missing or undecodable
        if isinstance(item, Image.Image):
            return item.convert("RGB")
        raise TypeError(f"image input {name}: expected a file path or a PIL image, got {type(item).__name__}")

    def _check_branch(self, branch: Optional[str]) -> str:
        branch = branch or self.branches[0]
        if branch not in self.branches:
            raise ValueError(f"{self.source} has branch(es) {self.branches}, not {branch!r}")
        return branch

    # ----------------------------------------------------------------------------- embeddings
    def embed_speech(self, inputs: Union[SpeechInput, Sequence[SpeechInput]]) -> Dict[str, np.ndarray]:
        """Utterances -> ``{branch: (N, D_c)}`` normalised embeddings, plus ``keyword_ids`` (N, K) and
        ``keyword_scores`` (N, K) for a cascaded branch. One utterance gives N = 1.

        Inputs are file paths (any rate, resampled), 16 kHz waveforms (T,), or (waveform, rate).
        """
        from espnet_speechclip.inference import embed_speech

        items = _as_list(inputs, _is_one_speech(inputs))
        if not items:
            raise ValueError("embed_speech needs at least one utterance")
        wavs = [self._load_speech(x, f"#{i}") for i, x in enumerate(items)]
        return embed_speech(self.model, wavs, self.batch_size, self.device)

    def _image_tower(self):
        if self._image_encoder is None:
            # trained on cached image embeddings: build the tower from the config once, as inference does
            from espnet_speechclip.encoders.clip import CLIPImageEncoder, load_clip

            self._image_encoder = CLIPImageEncoder(load_clip(**self.clip_conf)).to(self.device)
        return self._image_encoder

    def embed_images(self, images: Union[ImageInput, Sequence[ImageInput]]) -> np.ndarray:
        """Image files or PIL images -> (M, D_c) normalised CLIP image embeddings."""
        items = _as_list(images, _is_one_image(images))
        if not items:
            raise ValueError("embed_images needs at least one image")
        pil = [self._load_image(x, str(x) if isinstance(x, (str, Path)) else f"#{i}") for i, x in enumerate(items)]
        tower = self._image_tower()
        out = [tower.embed_images(pil[i : i + self.batch_size], device=torch.device(self.device)).float().cpu().numpy()
               for i in range(0, len(pil), self.batch_size)]
        return np.concatenate(out)

    def embed_texts(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """Texts -> (N, D_c) normalised CLIP text embeddings."""
        items = [texts] if isinstance(texts, str) else list(texts)
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"text input #{bad[0]} is a {type(items[bad[0]]).__name__}, not a string")
        if not items:
            raise ValueError("embed_texts needs at least one text")
        with torch.no_grad():
            return self.model.encode_text(items).float().cpu().numpy()

    # ------------------------------------------------------------------------------ retrieval
    @staticmethod
    def _rank(query: np.ndarray, candidates: np.ndarray, items: List[Any], topk: Optional[int]) -> List[Hit]:
        """query (D,), candidates (M, D) -> the topk hits by cosine similarity, best first."""
        if topk is not None and topk < 1:
            raise ValueError(f"topk must be at least 1, got {topk}")
        scores = candidates @ query
        order = np.argsort(-scores, kind="stable")[:topk]
        return [Hit(int(i), items[i], float(scores[i])) for i in order]

    def _one_speech(self, speech: SpeechInput, what: str) -> SpeechInput:
        if not _is_one_speech(speech):
            raise TypeError(f"{what} takes one utterance as the query (a path, a waveform or "
                            f"(waveform, rate)), got {type(speech).__name__}")
        return speech

    def retrieve_images(self, speech: SpeechInput, images: Sequence[ImageInput], topk: Optional[int] = 5,
                        branch: Optional[str] = None) -> List[Hit]:
        """Rank ``images`` for one utterance (``branch``: default the model's first)."""
        branch = self._check_branch(branch)
        query = self.embed_speech(self._one_speech(speech, "retrieve_images"))[branch][0]
        items = _as_list(images, _is_one_image(images))
        return self._rank(query, self.embed_images(items), items, topk)

    def retrieve_speech(self, image: ImageInput, speech_items: Sequence[SpeechInput], topk: Optional[int] = 5,
                        branch: Optional[str] = None) -> List[Hit]:
        """Rank utterances for one image."""
        branch = self._check_branch(branch)
        items = _as_list(speech_items, _is_one_speech(speech_items))
        query = self.embed_images([image])[0]
        return self._rank(query, self.embed_speech(items)[branch], items, topk)

    def retrieve_texts(self, speech: SpeechInput, texts: Sequence[str], topk: Optional[int] = 5,
                       branch: Optional[str] = None) -> List[Hit]:
        """Rank texts for one utterance (zero-shot, through CLIP's text tower)."""
        branch = self._check_branch(branch)
        query = self.embed_speech(self._one_speech(speech, "retrieve_texts"))[branch][0]
        items = [texts] if isinstance(texts, str) else list(texts)
        return self._rank(query, self.embed_texts(items), items, topk)

    # ------------------------------------------------------------------------------- keywords
    def keywords(self, speech: Union[SpeechInput, Sequence[SpeechInput]]) -> Union[List[Keyword], List[List[Keyword]]]:
        """The cascaded branch's K keywords of one utterance (a list of :class:`Keyword`), or of each
        utterance of a list (a list of such lists)."""
        if "cascaded" not in self.branches:
            raise ValueError(f"{self.source} is a {'/'.join(self.branches)} model: keywords need a cascaded "
                             f"or hybrid SpeechCLIP")
        rows = _keywords_of(self.embed_speech(speech))
        return rows[0] if _is_one_speech(speech) else rows

    # ---------------------------------------------------------------------------------- query
    def query(self, speech: SpeechInput, images: Sequence[ImageInput] = (), texts: Sequence[str] = (),
              topk: Optional[int] = 5, branch: Optional[str] = None) -> "QueryResult":
        """One utterance against candidate images and texts, with one speech pass: ranked images,
        ranked texts and (cascaded / hybrid models) the keywords."""
        branch = self._check_branch(branch)
        out = self.embed_speech(self._one_speech(speech, "query"))
        query = out[branch][0]
        images = _as_list(images, _is_one_image(images))
        texts = [texts] if isinstance(texts, str) else list(texts)
        return QueryResult(
            branch=branch,
            images=self._rank(query, self.embed_images(images), images, topk) if images else [],
            texts=self._rank(query, self.embed_texts(texts), texts, topk) if texts else [],
            keywords=_keywords_of(out)[0] if "keyword_ids" in out else None,
        )


@dataclass
class QueryResult:
    """What :meth:`SpeechCLIPPipeline.query` found for one utterance."""

    branch: str
    images: List[Hit]
    texts: List[Hit]
    keywords: Optional[List[Keyword]]


def _keywords_of(out: Dict[str, np.ndarray]) -> List[List[Keyword]]:
    """embed_speech output -> per utterance, its keywords as the inference entry writes them."""
    from espnet_speechclip.encoders.clip import decode_token

    return [[Keyword(decode_token(int(i)), int(i), float(s)) for i, s in zip(ids, scores)]
            for ids, scores in zip(out["keyword_ids"], out["keyword_scores"])]
