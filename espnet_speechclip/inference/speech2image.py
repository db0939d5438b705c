"""Speech2Image: the one door to a trained SpeechCLIP, shaped like ESPnet's ``Speech2Text``.

    from espnet_speechclip.inference import Speech2Image

    s2i = Speech2Image.from_pretrained("exp/synth_parallel/packed/model.zip", device="cpu")
    s2i("a.wav")                                   # {"parallel": (1, D_c)}; cascaded: + keyword_ids, ...
    s2i(["a.wav", (wave_8k, 8000)])                # a batch: files, 16 kHz arrays or (array, rate)
    s2i.retrieve_images("a.wav", ["x.jpg", "y.jpg"], topk=1)
    s2i.keywords("a.wav")                          # cascaded / hybrid models: subwords with time spans

``Speech2Image(train_config, model_file)`` rebuilds the model from its training config (the frozen
towers from their own names or files) and loads the trainable weights strictly;
:meth:`Speech2Image.from_pretrained` resolves a packed archive or an experiment folder first. The
inference entry point, the query CLI, the ESPnet frontend, packing and the model card all go through
this class, so their numbers agree. (Features of HuBERT-style upstreams move slightly with the padding
in a batch: HuBERT's GroupNorm feature extractor sees it. The same ``batch_size``, 16 by default, gives
the same numbers.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet_speechclip.data.media import MediaError, load_audio, load_image, resample

PathLike = Union[str, Path]
# A file path, a 16 kHz waveform (T,), or a waveform at any rate as (waveform, sample_rate).
SpeechInput = Union[PathLike, np.ndarray, torch.Tensor, Tuple[Any, int]]
ImageInput = Any  # a file path or a PIL image


class Hit(NamedTuple):
    """One retrieved candidate: its position in the candidate list, the candidate as given, the
    cosine similarity to the query."""

    index: int
    item: Any
    score: float


class Keyword(NamedTuple):
    """One cascaded keyword: the CLIP subword, its vocabulary id, its cosine score to the codebook, and
    the time span of the utterance it came from, in seconds (``start``, ``end``): the integrated unit
    of a CIF model (cascaded+ / hybrid+); for a K-token model the frames holding the central
    ``attention_mass`` of its attention."""

    token: str
    id: int
    score: float
    start: float
    end: float


# Outputs of Speech2Image.__call__ whose keyword axis (axis 1) varies with the utterances of CIF models,
# and the value that pads it: -1 is no CLIP id; a padded slot has no time span.
KEYWORD_PADDING = {"keyword_ids": -1, "keyword_scores": 0.0, "keyword_spans": np.nan}


def concat_padded(arrays: Sequence[np.ndarray], fill: Any = None) -> np.ndarray:
    """Concatenate (B_i, K_i, ...) arrays along axis 0, padding axis 1 to the largest K_i with ``fill``
    (``None``: no padding, the arrays must agree)."""
    arrays = list(arrays)
    if fill is not None and arrays and arrays[0].ndim > 1:
        width = max(a.shape[1] for a in arrays)
        arrays = [
            np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2), constant_values=fill)
            for a in arrays
        ]
    return np.concatenate(arrays)


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
    return (
        isinstance(x, tuple)
        and len(x) == 2
        and isinstance(x[1], (int, np.integer))
        and not isinstance(x[0], (str, Path))
    )


def _is_one_image(x: Any) -> bool:
    from PIL import Image

    return isinstance(x, (str, Path, Image.Image))


def _as_list(x: Any, one: bool) -> List[Any]:
    return [x] if one else list(x)


class Speech2Image:
    """A trained SpeechCLIP with batched, device-aware embedding, retrieval and keywords.

    Args:
        train_config: the training ``config.yaml`` (or its dict); relative paths in it are relative
            to the current directory, as for training.
        model_file: the trained weights (``*.pth``); ``None`` keeps the trainable weights random (an
            architecture for ``--init_param``).
        device: ``cpu`` or ``cuda[:N]``.
        batch_size: utterances / images per forward pass.
        clip_weights: load CLIP's pretrained weights; ``False`` for users of the speech side only
            (no CLIP download; image and text embeddings are then meaningless).
        attention_mass: the time span of a K-token model's keyword holds this central share of the
            keyword's attention over the frames (see
            :func:`espnet_speechclip.evaluation.keyword_timing.attention_spans`).

    Raises:
        FileNotFoundError: a missing config or weights file.
        RuntimeError: weights that do not match the config's model (strict loading).
    """

    def __init__(
        self,
        train_config: Union[PathLike, Mapping],
        model_file: Optional[PathLike] = None,
        device: str = "cpu",
        batch_size: int = 16,
        clip_weights: bool = True,
        attention_mass: float = 0.9,
    ):
        from espnet_speechclip.config import read_config
        from espnet_speechclip.models.builder import build_model

        self.config = read_config(train_config)
        source = "config" if isinstance(train_config, Mapping) else str(train_config)
        self.source = source if model_file is None else str(model_file)
        model = build_model(self.config, clip_weights=clip_weights)
        if model_file is not None:
            if not Path(model_file).is_file():
                raise FileNotFoundError(f"SpeechCLIP model file {model_file} does not exist")
            state = torch.load(model_file, map_location="cpu", weights_only=True)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise RuntimeError(f"{model_file} does not match the model of {source}: {e}") from e
        self.device = str(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.attention_mass = attention_mass
        self._image_encoder = model.image_encoder

    @classmethod
    def from_pretrained(
        cls,
        source: PathLike,
        model_file: Optional[PathLike] = None,
        cache_dir: Optional[PathLike] = None,
        **kwargs: Any,
    ) -> Speech2Image:
        """Load a packed archive (.zip of ``espnet_speechclip.bin.pack``, extracted once into the unpack
        cache) or an experiment folder (``config.yaml`` + ``model_file``, default
        ``valid.mean_r10.best.pth``, else ``latest.pth``). ``kwargs`` go to the constructor.

        Raises:
            FileNotFoundError: no such archive / folder / config / weights.
            PackError: a corrupt or tampered archive.
        """
        from espnet_speechclip.inference.loader import resolve_model

        config, weights = resolve_model(source, model_file, cache_dir)
        s2i = cls(config, weights, **kwargs)
        s2i.source = str(source)
        return s2i

    @property
    def branches(self) -> List[str]:
        return list(self.model.branches)

    @property
    def clip_conf(self) -> dict:
        return dict(self.config["clip_conf"])

    # ------------------------------------------------------------------------------------ inputs
    def _load_speech(self, item: SpeechInput, name: str) -> np.ndarray:
        """One input -> mono float32 16 kHz waveform (T,), checked; errors start with ``name``."""
        from espnet_speechclip.models.speech_encoder import check_min_samples

        if isinstance(item, (str, Path)):
            try:
                wav = load_audio(item)  # resamples; names the file on any failure
            except MediaError as e:
                raise MediaError(str(e) if name == str(item) else f"{name}: {e}") from e
        elif isinstance(item, tuple):
            wav, rate = item
            if int(rate) <= 0:
                raise ValueError(f"{name}: sample rate must be positive, got {rate}")
            wav = self._mono(wav, name)
            if wav.size:
                wav = resample(wav, int(rate))
        elif isinstance(item, (np.ndarray, torch.Tensor)):
            wav = self._mono(item, name)
        else:
            raise TypeError(
                f"{name}: expected a file path, a 16 kHz waveform or "
                f"(waveform, sample_rate), got {type(item).__name__}"
            )
        if wav.size == 0:
            raise MediaError(f"{name} is empty")
        if not np.isfinite(wav).all():
            raise MediaError(f"{name} contains NaN or infinite samples")
        check_min_samples(len(wav), self.model.speech_encoder.min_samples, name)
        return wav

    @staticmethod
    def _mono(wav: Any, name: str) -> np.ndarray:
        if isinstance(wav, torch.Tensor):
            wav = wav.detach().cpu().numpy()
        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1:
            raise ValueError(
                f"{name}: expected a mono waveform (T,), got shape {wav.shape}; "
                f"give several utterances as a list"
            )
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
    @torch.no_grad()
    def __call__(
        self, speech: Union[SpeechInput, Sequence[SpeechInput]], names: Optional[Sequence[str]] = None
    ) -> Dict[str, np.ndarray]:
        """Utterances -> ``{branch: (N, D_c)}`` normalised embeddings, plus for a cascaded branch
        ``keyword_ids`` (N, K) CLIP ids, ``keyword_scores`` (N, K) cosine scores and ``keyword_spans``
        (N, K, 2) the (start, end) seconds each keyword came from (see :class:`Keyword`). A CIF model
        (cascaded+ / hybrid+) gives each utterance its own number of keywords, ``keyword_lengths`` (N,):
        K is the largest, and the slots beyond an utterance's keywords hold id -1, score 0 and span NaN.
        One utterance gives N = 1.

        Inputs are file paths (any rate, resampled), 16 kHz waveforms (T,), or (waveform, rate);
        ``names`` (one per input, e.g. utterance ids) label them in error messages.
        """
        items = _as_list(speech, _is_one_speech(speech))
        if not items:
            raise ValueError("Speech2Image needs at least one utterance")
        if names is not None and len(names) != len(items):
            raise ValueError(f"{len(names)} names for {len(items)} utterances")
        labels = (
            list(names)
            if names is not None
            else [str(x) if isinstance(x, (str, Path)) else f"speech input #{i}" for i, x in enumerate(items)]
        )
        wavs = [self._load_speech(x, n) for x, n in zip(items, labels)]
        chunks: Dict[str, List[np.ndarray]] = {}
        for start in range(0, len(wavs), self.batch_size):
            padded, lengths = pad_batch(wavs[start : start + self.batch_size])
            out = self.model.encode_speech(
                padded.to(self.device), lengths.to(self.device), keyword_timing=True
            )
            batch = {b: out[b].float().cpu().numpy() for b in self.branches}
            if "keyword_ids" in out:
                batch.update(self._keyword_outputs(out, lengths))
            for k, v in batch.items():
                chunks.setdefault(k, []).append(v)
        return {k: concat_padded(v, KEYWORD_PADDING.get(k)) for k, v in chunks.items()}

    def _keyword_outputs(
        self, out: Dict[str, torch.Tensor], num_samples: torch.Tensor
    ) -> Dict[str, np.ndarray]:
        """Keyword ids, scores, spans in seconds (and counts, CIF) of one batch of ``encode_speech``."""
        from espnet_speechclip.data.media import SAMPLE_RATE

        ids = out["keyword_ids"].cpu()
        shift, offset = self.model.speech_encoder.frame_times()
        if "keyword_frames" in out:  # CIF: the fractional frames each unit integrated
            spans = out["keyword_frames"].double().cpu() * shift + offset
        else:
            from espnet_speechclip.evaluation.keyword_timing import attention_spans

            att, frames = out["keyword_attention"].cpu(), out["frame_lengths"].cpu()
            spans = torch.tensor(
                [
                    attention_spans(att[b, :, : int(frames[b])], 1.0 / shift, self.attention_mass, offset)
                    for b in range(ids.size(0))
                ],
                dtype=torch.float64,
            ).view(ids.size(0), ids.size(1), 2)
        # a span never leaves its utterance (the first and last frames' nominal spans can)
        duration = (num_samples.double() / SAMPLE_RATE).view(-1, 1, 1)
        spans = torch.minimum(spans.clamp_min(0.0), duration)
        spans[ids < 0] = float("nan")
        result = {
            "keyword_ids": ids.numpy(),
            "keyword_scores": out["keyword_scores"].float().cpu().numpy(),
            "keyword_spans": spans.numpy(),
        }
        if "keyword_lengths" in out:
            result["keyword_lengths"] = out["keyword_lengths"].cpu().numpy()
        return result

    embed_speech = __call__

    def _image_tower(self):
        if self._image_encoder is None:
            # trained on cached image embeddings: build the tower from the config once
            from espnet_speechclip.models.clip import CLIPImageEncoder

            self._image_encoder = CLIPImageEncoder.from_config(self.clip_conf).to(self.device)
        return self._image_encoder

    def embed_images(self, images: Union[ImageInput, Sequence[ImageInput]]) -> np.ndarray:
        """Image files or PIL images -> (M, D_c) normalised CLIP image embeddings."""
        items = _as_list(images, _is_one_image(images))
        if not items:
            raise ValueError("embed_images needs at least one image")
        tower = self._image_tower()
        out = []
        for start in range(0, len(items), self.batch_size):
            # loaded one batch at a time: a corpus' images need not fit in memory at once
            pil = [
                self._load_image(x, str(x) if isinstance(x, (str, Path)) else f"#{start + i}")
                for i, x in enumerate(items[start : start + self.batch_size])
            ]
            out.append(tower.embed_images(pil, device=torch.device(self.device)).float().cpu().numpy())
        return np.concatenate(out)

    def embed_texts(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """Texts -> (N, D_c) normalised CLIP text embeddings (zero-shot side)."""
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
            raise TypeError(
                f"{what} takes one utterance as the query (a path, a waveform or "
                f"(waveform, rate)), got {type(speech).__name__}"
            )
        return speech

    def retrieve_images(
        self,
        speech: SpeechInput,
        images: Sequence[ImageInput],
        topk: Optional[int] = 5,
        branch: Optional[str] = None,
    ) -> List[Hit]:
        """Rank ``images`` for one utterance (``branch``: default the model's first)."""
        branch = self._check_branch(branch)
        query = self.embed_speech(self._one_speech(speech, "retrieve_images"))[branch][0]
        items = _as_list(images, _is_one_image(images))
        return self._rank(query, self.embed_images(items), items, topk)

    def retrieve_speech(
        self,
        image: ImageInput,
        speech_items: Sequence[SpeechInput],
        topk: Optional[int] = 5,
        branch: Optional[str] = None,
    ) -> List[Hit]:
        """Rank utterances for one image."""
        branch = self._check_branch(branch)
        items = _as_list(speech_items, _is_one_speech(speech_items))
        query = self.embed_images([image])[0]
        return self._rank(query, self.embed_speech(items)[branch], items, topk)

    def retrieve_texts(
        self, speech: SpeechInput, texts: Sequence[str], topk: Optional[int] = 5, branch: Optional[str] = None
    ) -> List[Hit]:
        """Rank texts for one utterance (zero-shot, through CLIP's text tower)."""
        branch = self._check_branch(branch)
        query = self.embed_speech(self._one_speech(speech, "retrieve_texts"))[branch][0]
        items = [texts] if isinstance(texts, str) else list(texts)
        return self._rank(query, self.embed_texts(items), items, topk)

    # ------------------------------------------------------------------------------- keywords
    def keywords(
        self, speech: Union[SpeechInput, Sequence[SpeechInput]]
    ) -> Union[List[Keyword], List[List[Keyword]]]:
        """The cascaded branch's keywords of one utterance (a list of :class:`Keyword`, in order, with
        their time spans), or of each utterance of a list (a list of such lists)."""
        if "cascaded" not in self.branches:
            raise ValueError(
                f"{self.source} is a {'/'.join(self.branches)} model: keywords need a cascaded "
                f"or hybrid SpeechCLIP"
            )
        rows = _keywords_of(self.embed_speech(speech))
        return rows[0] if _is_one_speech(speech) else rows

    # ---------------------------------------------------------------------------------- query
    def query(
        self,
        speech: SpeechInput,
        images: Sequence[ImageInput] = (),
        texts: Sequence[str] = (),
        topk: Optional[int] = 5,
        branch: Optional[str] = None,
    ) -> QueryResult:
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
    """What :meth:`Speech2Image.query` found for one utterance."""

    branch: str
    images: List[Hit]
    texts: List[Hit]
    keywords: Optional[List[Keyword]]


def _keywords_of(out: Dict[str, np.ndarray]) -> List[List[Keyword]]:
    """embed_speech output -> per utterance, its keywords as the inference entry writes them."""
    from espnet_speechclip.models.clip import decode_token

    return [
        [
            Keyword(decode_token(int(i)), int(i), float(s), float(span[0]), float(span[1]))
            for i, s, span in zip(ids, scores, spans)
            if i >= 0  # padding of CIF models' shorter keyword sequences
        ]
        for ids, scores, spans in zip(out["keyword_ids"], out["keyword_scores"], out["keyword_spans"])
    ]


def pad_batch(wavs: List[np.ndarray]) -> Tuple[torch.Tensor, torch.Tensor]:
    """List of (T_i,) -> zero-padded (B, T_max), lengths (B,)."""
    lengths = torch.tensor([len(w) for w in wavs])
    out = torch.zeros(len(wavs), int(lengths.max()))
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(w)
    return out, lengths
