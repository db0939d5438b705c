"""Speech2Image: the one door to a trained SpeechCLIP, shaped like ESPnet's ``Speech2Text``.

    from espnet_speechclip.inference import Speech2Image

    s2i = Speech2Image.from_pretrained("exp/synth_parallel/packed/model.zip", device="cpu")
    s2i("a.wav")                                   # {"parallel": (1, D_c)}; + keyword_ids/scores (cascaded)
    s2i(["a.wav", (wave_8k, 8000)])                # a batch: files, 16 kHz arrays or (array, rate)
    s2i.retrieve_images("a.wav", ["x.jpg", "y.jpg"], topk=1)
    s2i.keywords("a.wav")                          # cascaded / hybrid models (and their + versions)
    s2i.keywords("a.wav", timing=True)             # ... with where each was heard (start, end seconds)
    s2i.keyword_timing("a.wav").attention          # (K, T) each keyword's weight over the frames

``Speech2Image(train_config, model_file)`` rebuilds the model from its training config (the frozen
towers from their own names or files) and loads the trainable weights strictly;
:meth:`Speech2Image.from_pretrained` resolves a packed archive, an experiment folder or a Hub repo id
(``Speech2Image.from_pretrained("<namespace>/<name>", revision="v1")``) first. The
inference entry point, the query CLI, the ESPnet frontend, packing and the model card all go through
this class, so their numbers agree. (Features of HuBERT-style upstreams move slightly with the padding
in a batch: HuBERT's GroupNorm feature extractor sees it. The same ``batch_size``, 16 by default, gives
the same numbers.) On a GPU, a model trained with ``use_amp`` runs under autocast in its config's
``amp_dtype``, the precision its checkpoint was trained and selected in (see
:mod:`espnet_speechclip.precision`); on CPU it runs in fp32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet_speechclip.config import config_value, read_config
from espnet_speechclip.data.media import MEL_HOP, SAMPLE_RATE, log_mel
from espnet_speechclip.errors import InputError, RunError
from espnet_speechclip.evaluation.keyword_spans import (
    CIF_SECONDS_PER_SEGMENT,
    CIF_SEGMENT_MIN_GAP,
    MIN_CONTRAST,
    SPAN_SEGMENTS,
    change_boundaries,
    occlusion_spans,
    segment_windows,
    unit_segment_spans,
)
from espnet_speechclip.inference.inputs import (
    ImageInput,
    PathLike,
    SpeechInput,
    as_list,
    is_one_image,
    is_one_speech,
    load_image_input,
    load_speech_inputs,
)
from espnet_speechclip.inference.loader import resolve_model
from espnet_speechclip.inference.result_types import (
    KEYWORD_PADDING,
    Hit,
    Keyword,
    KeywordTiming,
    QueryResult,
    concat_padded,
    keywords_of,
    pad_batch,
    rank,
)
from espnet_speechclip.precision import autocast, check_amp_dtype
from espnet_speechclip.weights import load_weights


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
        span_segments, min_contrast: a K-token model's keyword span is the stretch of
            ``span_segments`` consecutive segments of the signal that the model reads the keyword from
            (kept alone, it keeps the keyword closest to its subword; removed, it moves the keyword
            furthest away), and only when it beats the median stretch by ``min_contrast`` (see
            :func:`espnet_speechclip.evaluation.keyword_spans.occlusion_spans`).

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
        span_segments: int = SPAN_SEGMENTS,
        min_contrast: float = MIN_CONTRAST,
    ):
        # the model classes (ESPnet, s3prl, open_clip) load with the first model, not with the package
        from espnet_speechclip.models.builder import build_model

        if span_segments < 1 or min_contrast < 0:
            raise InputError(
                f"span_segments must be >= 1 and min_contrast >= 0, got {span_segments}, {min_contrast}"
            )
        self.config = read_config(train_config)
        source = "config" if isinstance(train_config, Mapping) else str(train_config)
        self.source = source if model_file is None else str(model_file)
        self.model_file = None if model_file is None else Path(model_file)  # identifies the model (index)
        # the weights first: an unusable file is refused before the towers are built
        state = None if model_file is None else load_weights(model_file, "SpeechCLIP model file")
        model = build_model(self.config, clip_weights=clip_weights)
        if state is not None:
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise RunError(f"{model_file} does not match the model of {source}: {e}") from e
        self.device = str(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size
        self.span_segments = span_segments
        self.min_contrast = min_contrast
        self._image_encoder = model.image_encoder
        self._use_amp = bool(config_value(self.config, "use_amp", False))
        self._amp_dtype = config_value(self.config, "amp_dtype")
        check_amp_dtype(self._amp_dtype, self._use_amp and self.device.startswith("cuda"))

    def _precision(self):
        """The training run's autocast (CUDA only), for every pass through the model."""
        return autocast(self.device, self._use_amp, self._amp_dtype)

    @classmethod
    def from_pretrained(
        cls,
        source: PathLike,
        model_file: Optional[PathLike] = None,
        cache_dir: Optional[PathLike] = None,
        revision: Optional[str] = None,
        **kwargs: Any,
    ) -> Speech2Image:
        """Load a trained model from anywhere :func:`espnet_speechclip.inference.loader.resolve_model`
        resolves: an experiment folder (``config.yaml`` + ``model_file``, default
        ``valid.mean_r10.best.pth``, else ``latest.pth``), a packed archive (.zip of
        ``espnet_speechclip.bin.pack``, extracted once into the unpack cache ``cache_dir``, default
        :func:`espnet_speechclip.inference.archive.default_cache_dir`: ``$ESPNET_SPEECHCLIP_CACHE``, else
        ``$XDG_CACHE_HOME/espnet_speechclip``, else ``~/.cache/espnet_speechclip``), a packed folder, or a
        Hugging Face Hub repo id ``<namespace>/<name>`` at ``revision`` (the Hub's cache,
        ``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` / ``HF_HOME`` apply). ``kwargs`` go to the constructor.

        Raises:
            FileNotFoundError: no such archive / folder / config / weights.
            PackError: a corrupt or tampered packed model.
            HubError: a Hub repo that cannot be fetched.
        """
        config, weights = resolve_model(source, model_file, cache_dir, revision)
        s2i = cls(config, weights, **kwargs)
        s2i.source = str(source) if revision is None else f"{source}@{revision}"
        return s2i

    @property
    def branches(self) -> List[str]:
        return list(self.model.branches)

    @property
    def clip_conf(self) -> dict:
        return dict(self.config["clip_conf"])

    # ------------------------------------------------------------------------------------ inputs
    def _check_branch(self, branch: Optional[str]) -> str:
        branch = branch or self.branches[0]
        if branch not in self.branches:
            raise InputError(f"{self.source} has branch(es) {self.branches}, not {branch!r}")
        return branch

    # ----------------------------------------------------------------------------- embeddings
    def _load_all(
        self, speech: Union[SpeechInput, Sequence[SpeechInput]], names: Optional[Sequence[str]]
    ) -> List[np.ndarray]:
        """One or a list of inputs -> their checked 16 kHz waveforms, at least as long as the speech
        encoder needs; errors name the input."""
        return load_speech_inputs(speech, names, self.model.speech_encoder.min_samples)

    @torch.no_grad()
    def _encode(
        self, wavs: List[np.ndarray], attention: bool = False, progress: bool = False
    ) -> Tuple[Dict[str, np.ndarray], Optional[List[Tuple[np.ndarray, np.ndarray]]]]:
        """Waveforms -> the model's per-utterance outputs (N, ...; the keyword axis of CIF models padded
        as :data:`KEYWORD_PADDING` says) and, with ``attention`` (cascaded models), per utterance its
        keywords' weights over its own frames (K_i, T_i) and their spans (K_i, 2) in seconds, cut to
        the utterance."""
        from tqdm import tqdm

        chunks: Dict[str, List[np.ndarray]] = {}
        rows: List[Tuple[np.ndarray, np.ndarray]] = []
        want = attention and self.model.cascaded is not None
        starts = range(0, len(wavs), self.batch_size)
        with tqdm(total=len(wavs), desc="embedding utterances", unit="utt", disable=not progress) as bar:
            for start in starts:
                padded, lengths = pad_batch(wavs[start : start + self.batch_size])
                with self._precision():
                    out = self.model.encode_speech(
                        padded.to(self.device), lengths.to(self.device), keyword_attention=want
                    )
                if want:
                    att, frames = out.keyword_attention, out.frame_lengths
                    n = (
                        out.keyword_lengths
                        if out.keyword_lengths is not None
                        else torch.full_like(frames, att.size(1))
                    )
                    unit_frames = out.keyword_frames  # CIF: (B, K, 2) fractional frames
                    for b in range(len(lengths)):
                        k, t = int(n[b]), int(frames[b])
                        rows.append(
                            self._spans(
                                att[b, :k, :t].float().cpu().numpy(),
                                None if unit_frames is None else unit_frames[b, :k].double().cpu().numpy(),
                                out.frame_features[b, :t],
                                out.keyword_ids[b, :k],
                                wavs[start + b],
                            )
                        )
                for k, v in out.per_utterance().items():
                    chunks.setdefault(k, []).append(
                        v.float().cpu().numpy() if v.is_floating_point() else v.cpu().numpy()
                    )
                bar.update(len(lengths))
        merged = {k: concat_padded(v, KEYWORD_PADDING.get(k)) for k, v in chunks.items()}
        return merged, (rows if want else None)

    def _spans(
        self,
        attention: np.ndarray,
        unit_frames: Optional[np.ndarray],
        frames: torch.Tensor,
        keyword_ids: torch.Tensor,
        wav: np.ndarray,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """One utterance's keyword attention (K, T), CIF units' (start, end) frames (K, 2) (None for a
        K-token model), its speech frames (T, D_a), keyword ids (K,) and 16 kHz waveform (S,) ->
        (attention (K, T) float32, spans (K, 2) float64 seconds within the utterance).

        Both kinds of span start and end where the signal changes (:func:`change_boundaries`: spectral
        change and energy dips of the log-mel spectrum). K-token keyword: the stretch of
        ``span_segments`` segments the model reads it from (:func:`segment_windows`,
        :meth:`CascadedBranch.keyword_cosines`, :func:`occlusion_spans`). CIF unit: the segments its
        firing interval covers, cut a little coarser (:func:`unit_segment_spans`)."""
        encoder = self.model.speech_encoder
        rate, offset = encoder.frame_rate, encoder.frame_offset
        hop = MEL_HOP / SAMPLE_RATE
        if unit_frames is not None:
            bounds = change_boundaries(
                log_mel(wav), hop, CIF_SECONDS_PER_SEGMENT, min_gap=CIF_SEGMENT_MIN_GAP
            )
            spans = unit_segment_spans(unit_frames, attention.shape[1], bounds, rate, offset)
        else:
            bounds = change_boundaries(log_mel(wav), hop)
            inside, times = segment_windows(bounds, attention.shape[1], rate, offset, self.span_segments)
            w = len(inside)
            hidden = torch.from_numpy(np.vstack([np.zeros((1, inside.shape[1]), bool), ~inside, inside]))
            with self._precision():  # the frames come from a pass under the training's autocast
                cos = self.model.cascaded.keyword_cosines(frames, keyword_ids, hidden)
            cos = cos.float().cpu().numpy()
            # row 0: the whole utterance; rows 1..W: each stretch alone; rows W+1..2W: without it
            spans = occlusion_spans(cos[0], cos[1 : w + 1], cos[w + 1 :], times, self.min_contrast)
        # a span never leaves its utterance (the first and last frames' nominal spans can); NaN, no
        # confident span, stays NaN
        spans = np.clip(spans.reshape(-1, 2), 0.0, len(wav) / SAMPLE_RATE)
        return attention.astype(np.float32), spans

    def __call__(
        self,
        speech: Union[SpeechInput, Sequence[SpeechInput]],
        names: Optional[Sequence[str]] = None,
        timing: bool = False,
        progress: bool = False,
    ) -> Dict[str, np.ndarray]:
        """Utterances -> ``{branch: (N, D_c)}`` normalised embeddings, plus for a cascaded branch
        ``keyword_ids`` (N, K) CLIP ids, ``keyword_scores`` (N, K) cosine scores and
        ``keyword_neighbour_ids`` (N, K, 5) each keyword's nearest codebook subwords. A CIF model
        (cascaded+ / hybrid+) gives each utterance its own number of keywords, ``keyword_lengths`` (N,):
        K is the largest, and the slots beyond an utterance's own keywords hold id -1 and score 0. One
        utterance gives N = 1.

        Inputs are file paths (any rate, resampled), 16 kHz waveforms (T,), or (waveform, rate);
        ``names`` (one per input, e.g. utterance ids) label them in error messages. With ``timing``
        (cascaded branch) also ``keyword_spans`` (N, K, 2) float32: where each keyword was heard, start
        and end in seconds (see :class:`KeywordTiming`; NaN beyond an utterance's own keywords and for a
        keyword without a confident span).
        ``progress`` shows a progress bar on stderr.
        """
        wavs = self._load_all(speech, names)
        out, rows = self._encode(wavs, attention=timing, progress=progress)
        if rows is not None:
            width = out["keyword_ids"].shape[1]
            spans = np.full((len(wavs), width, 2), np.nan, np.float32)
            for i, (_, row) in enumerate(rows):
                spans[i, : len(row)] = row
            out["keyword_spans"] = spans
        return out

    embed_speech = __call__

    def _image_tower(self):
        if self._image_encoder is None:
            # trained on cached image embeddings: build the tower from the config once
            from espnet_speechclip.models.clip import CLIPImageEncoder

            self._image_encoder = CLIPImageEncoder.from_config(self.clip_conf).to(self.device)
        return self._image_encoder

    def embed_images(
        self, images: Union[ImageInput, Sequence[ImageInput]], progress: bool = False
    ) -> np.ndarray:
        """Image files or PIL images -> (M, D_c) normalised CLIP image embeddings (``progress``: a
        progress bar on stderr)."""
        from tqdm import tqdm

        items = as_list(images, is_one_image(images))
        if not items:
            raise InputError("embed_images needs at least one image")
        tower = self._image_tower()
        out = []
        with tqdm(total=len(items), desc="embedding images", unit="img", disable=not progress) as bar:
            for start in range(0, len(items), self.batch_size):
                # loaded one batch at a time: a corpus' images need not fit in memory at once
                pil = [
                    load_image_input(x, str(x) if isinstance(x, (str, Path)) else f"#{start + i}")
                    for i, x in enumerate(items[start : start + self.batch_size])
                ]
                with self._precision():
                    emb = tower.embed_images(pil, device=torch.device(self.device))
                out.append(emb.float().cpu().numpy())
                bar.update(len(pil))
        return np.concatenate(out)

    def embed_texts(self, texts: Union[str, Sequence[str]]) -> np.ndarray:
        """Texts -> (N, D_c) normalised CLIP text embeddings (zero-shot side)."""
        items = [texts] if isinstance(texts, str) else list(texts)
        bad = [i for i, t in enumerate(items) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"text input #{bad[0]} is a {type(items[bad[0]]).__name__}, not a string")
        if not items:
            raise InputError("embed_texts needs at least one text")
        with torch.no_grad(), self._precision():
            emb = self.model.encode_text(items)
        return emb.float().cpu().numpy()

    # ------------------------------------------------------------------------------ retrieval
    def _one_speech(self, speech: SpeechInput, what: str) -> SpeechInput:
        if not is_one_speech(speech):
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
        items = as_list(images, is_one_image(images))
        return rank(query, self.embed_images(items), items, topk)

    def retrieve_speech(
        self,
        image: ImageInput,
        speech_items: Sequence[SpeechInput],
        topk: Optional[int] = 5,
        branch: Optional[str] = None,
    ) -> List[Hit]:
        """Rank utterances for one image."""
        branch = self._check_branch(branch)
        items = as_list(speech_items, is_one_speech(speech_items))
        query = self.embed_images([image])[0]
        return rank(query, self.embed_speech(items)[branch], items, topk)

    def retrieve_texts(
        self, speech: SpeechInput, texts: Sequence[str], topk: Optional[int] = 5, branch: Optional[str] = None
    ) -> List[Hit]:
        """Rank texts for one utterance (zero-shot, through CLIP's text tower)."""
        branch = self._check_branch(branch)
        query = self.embed_speech(self._one_speech(speech, "retrieve_texts"))[branch][0]
        items = [texts] if isinstance(texts, str) else list(texts)
        return rank(query, self.embed_texts(items), items, topk)

    def search(
        self,
        index: Any,
        speech: Optional[SpeechInput] = None,
        text: Optional[str] = None,
        image: Optional[ImageInput] = None,
        topk: int = 5,
        branch: Optional[str] = None,
    ) -> List[Hit]:
        """One query (exactly one of ``speech``, ``text``, ``image``) through a prebuilt index of a
        collection (:class:`espnet_speechclip.index.search.EmbeddingIndex`): its ``topk`` hits, best
        first, carrying the files' paths. The index refuses a model it was not built with."""
        given = [x is not None for x in (speech, text, image)]
        if sum(given) != 1:
            raise InputError("search takes exactly one of speech, text, image")
        index.check(self)
        if speech is not None:
            query = self.embed_speech(self._one_speech(speech, "search"))[self._check_branch(branch)]
        elif text is not None:
            query = self.embed_texts([text])
        else:
            query = self.embed_images([image])
        return index.search(query, topk)[0]

    # ------------------------------------------------------------------------------- keywords
    def _check_keywords(self) -> None:
        if "cascaded" not in self.branches:
            raise InputError(
                f"{self.source} is a {'/'.join(self.branches)} model: keywords need a cascaded "
                f"or hybrid SpeechCLIP"
            )

    def keywords(
        self, speech: Union[SpeechInput, Sequence[SpeechInput]], timing: bool = False
    ) -> Union[List[Keyword], List[List[Keyword]]]:
        """The cascaded branch's keywords of one utterance (a list of :class:`Keyword`, in order; K of
        them, or for a CIF model as many as it heard units), or of each utterance of a list (a list of
        such lists); with ``timing`` each keyword carries its span
        (``start``, ``end`` in seconds, see :class:`KeywordTiming`)."""
        self._check_keywords()
        if timing:
            timings = self.keyword_timing(speech)
            return timings.keywords if is_one_speech(speech) else [t.keywords for t in timings]
        rows = keywords_of(self.embed_speech(speech))
        return rows[0] if is_one_speech(speech) else rows

    def keyword_timing(
        self, speech: Union[SpeechInput, Sequence[SpeechInput]], names: Optional[Sequence[str]] = None
    ) -> Union[KeywordTiming, List[KeywordTiming]]:
        """Where each keyword of one utterance was heard (a :class:`KeywordTiming`: keywords with spans,
        their attention over the frames), or of each utterance of a list (a list of them)."""
        self._check_keywords()
        wavs = self._load_all(speech, names)
        out, rows = self._encode(wavs, attention=True)
        timings = self._timings(out, rows, wavs)
        return timings[0] if is_one_speech(speech) else timings

    def _timings(
        self, out: Dict[str, np.ndarray], rows: List[Tuple[np.ndarray, np.ndarray]], wavs: List[np.ndarray]
    ) -> List[KeywordTiming]:
        """_encode's outputs -> one KeywordTiming per utterance."""
        encoder = self.model.speech_encoder
        timings = []
        for keywords, (att, spans), wav in zip(keywords_of(out), rows, wavs):
            timed = [
                k if np.isnan(a) or np.isnan(b) else k._replace(start=float(a), end=float(b))
                for k, (a, b) in zip(keywords, spans)
            ]
            timings.append(
                KeywordTiming(timed, att, encoder.frame_rate, len(wav) / SAMPLE_RATE, encoder.frame_offset)
            )
        return timings

    # ---------------------------------------------------------------------------------- query
    def query(
        self,
        speech: SpeechInput,
        images: Sequence[ImageInput] = (),
        texts: Sequence[str] = (),
        topk: Optional[int] = 5,
        branch: Optional[str] = None,
        timing: bool = False,
        name: Optional[str] = None,
    ) -> QueryResult:
        """One utterance against candidate images and texts, with one speech pass: its embedding,
        ranked images, ranked texts and (cascaded / hybrid models) the keywords, with ``timing`` also
        where each was heard (:attr:`QueryResult.timing`, and spans on the keywords). ``name`` labels
        the utterance in error messages."""
        branch = self._check_branch(branch)
        wavs = self._load_all(self._one_speech(speech, "query"), None if name is None else [name])
        out, rows = self._encode(wavs, attention=timing)
        query = out[branch][0]
        images = as_list(images, is_one_image(images))
        texts = [texts] if isinstance(texts, str) else list(texts)
        keyword_timing = self._timings(out, rows, wavs)[0] if rows is not None else None
        keywords = None
        if keyword_timing is not None:
            keywords = keyword_timing.keywords
        elif "keyword_ids" in out:
            keywords = keywords_of(out)[0]
        return QueryResult(
            branch=branch,
            embedding=query,
            images=rank(query, self.embed_images(images), images, topk) if images else [],
            texts=rank(query, self.embed_texts(texts), texts, topk) if texts else [],
            keywords=keywords,
            timing=keyword_timing,
        )
