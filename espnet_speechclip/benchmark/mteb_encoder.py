"""A SpeechCLIP model as an MTEB encoder: speech, images and text in the shared CLIP space.

    from espnet_speechclip.benchmark.mteb_encoder import SpeechCLIPEncoder

    encoder = SpeechCLIPEncoder("exp/synth_parallel", device="cuda")   # or a .zip, a Hub id, ...
    mteb.evaluate(encoder, mteb.get_tasks(tasks=["SpokenCOCOA2IRetrieval"]))

Any model :meth:`Speech2Image.from_pretrained` loads works (an experiment folder, a packed archive or
folder, a Hub repo id, an imported authors' checkpoint). MTEB hands :meth:`SpeechCLIPEncoder.encode` a
DataLoader of batches (``{"audio": [...]}``, ``{"image": [...]}`` or ``{"text": [...]}``); each batch goes
through :class:`Speech2Image`'s public embedding methods, so the vectors are exactly ``Speech2Image``'s
(normalised, (N, D_c)) whenever MTEB's batch size is a multiple of the model's ``batch_size``: features
of HuBERT-style upstreams move slightly with the padding inside a batch.

Speech comes from the model's branch ``branch`` (default its first: ``parallel`` for hybrid models).
An input holding several modalities at once (an image with its caption) is embedded per modality and
the normalised sum is returned, the usual fusion of CLIP-style models in MTEB.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, List, Optional, Tuple

import numpy as np
from mteb.models.abs_encoder import AbsEncoder

from espnet_speechclip.errors import InputError

if TYPE_CHECKING:
    from mteb import TaskMetadata
    from mteb.types import Array, BatchedInput, PromptType
    from torch.utils.data import DataLoader

    from espnet_speechclip.inference.speech2image import Speech2Image

# The columns MTEB names each modality by, in the order a fused input's parts are summed.
MODALITIES = ("audio", "image", "text")


class SpeechCLIPEncoder(AbsEncoder):
    """MTEB's encoder interface over :class:`Speech2Image`.

    Args:
        model_name: what to load when ``source`` is not given (a Hub repo id, as MTEB's loader passes
            the ModelMeta's name), else only the name.
        revision: MTEB's revision of the model (recorded in the ModelMeta, not used for loading).
        source: what :meth:`Speech2Image.from_pretrained` loads (default ``model_name``).
        hub_revision: branch, tag or commit of a Hub ``source``.
        model_file: the checkpoint of an experiment folder ``source`` (default its best).
        device: ``cpu`` or ``cuda[:N]`` (default: CUDA when available).
        branch: the speech branch (default the model's first).
        batch_size: utterances / images per forward pass of :class:`Speech2Image`.
        speech2image: an already loaded model (then nothing is loaded).
    """

    def __init__(
        self,
        model_name: str,
        revision: Optional[str] = None,
        *,
        source: Optional[str] = None,
        hub_revision: Optional[str] = None,
        model_file: Optional[str] = None,
        device: Optional[str] = None,
        branch: Optional[str] = None,
        batch_size: int = 16,
        speech2image: Optional[Speech2Image] = None,
        **kwargs: Any,
    ) -> None:
        if speech2image is None:
            import torch

            from espnet_speechclip.inference.speech2image import Speech2Image

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            speech2image = Speech2Image.from_pretrained(
                source or model_name, model_file, revision=hub_revision, device=device, batch_size=batch_size
            )
        self.speech2image = speech2image
        # where the model came from, for its ModelMeta (mteb_meta)
        self.source = str(source or model_name)
        self.hub_revision = hub_revision
        self.model_file = None if model_file is None else str(model_file)
        self.model_name = model_name
        self.revision = revision
        branch = branch or speech2image.branches[0]
        if branch not in speech2image.branches:
            raise InputError(f"{speech2image.source} has branch(es) {speech2image.branches}, not {branch!r}")
        self.branch = branch

    # ------------------------------------------------------------------------------ modalities
    def embed_audio(self, items: List[Any], names: Optional[List[str]] = None) -> np.ndarray:
        """MTEB audio items (``{"array", "sampling_rate"}`` dicts or datasets' decoders) -> (N, D_c)."""
        return self.speech2image([_waveform(x) for x in items], names=names)[self.branch]

    def embed_images(self, images: List[Any]) -> np.ndarray:
        """PIL images -> (N, D_c) normalised CLIP image embeddings."""
        return self.speech2image.embed_images(images)

    def embed_texts(self, texts: List[str]) -> np.ndarray:
        """Texts -> (N, D_c) normalised CLIP text embeddings."""
        return self.speech2image.embed_texts(texts)

    def _embed_batch(self, batch: dict, modalities: Tuple[str, ...]) -> np.ndarray:
        """One MTEB batch -> (B, D_c): one modality's embeddings, or the normalised sum of several."""
        parts = []
        for modality in modalities:
            if modality == "audio":
                ids = batch.get("id")
                parts.append(self.embed_audio(list(batch["audio"]), [str(i) for i in ids] if ids else None))
            elif modality == "image":
                parts.append(self.embed_images(list(batch["image"])))
            else:
                parts.append(self.embed_texts([str(t) for t in batch["text"]]))
        if len(parts) == 1:
            return parts[0]
        fused = np.sum(parts, axis=0)
        return fused / np.linalg.norm(fused, axis=-1, keepdims=True)

    def encode(
        self,
        inputs: DataLoader[BatchedInput],
        *,
        task_metadata: TaskMetadata,
        hf_split: str,
        hf_subset: str,
        prompt_type: Optional[PromptType] = None,
        **kwargs: Any,
    ) -> Array:
        """Every batch of ``inputs`` -> (N, D_c) float32 normalised embeddings, in order.

        Raises:
            ValueError: the inputs hold none of audio, image and text (e.g. video), naming the task.
        """
        from tqdm.auto import tqdm

        columns = set(inputs.dataset.column_names)
        modalities = tuple(m for m in MODALITIES if m in columns)
        if not modalities:
            raise InputError(
                f"{task_metadata.name}: SpeechCLIP embeds audio, image and text; the inputs hold "
                f"{sorted(columns)}"
            )
        show = bool(kwargs.get("show_progress_bar", False))
        out = [
            self._embed_batch(batch, modalities)
            for batch in tqdm(inputs, desc=f"SpeechCLIP {'+'.join(modalities)}", disable=not show)
        ]
        return np.concatenate(out).astype(np.float32, copy=False)


def _waveform(item: Any) -> Tuple[np.ndarray, int]:
    """An MTEB audio item -> (mono waveform (T,), sample rate); channels (C, T) are averaged, as MTEB's
    own audio collator does."""
    wav = np.asarray(item["array"], dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=0)
    return wav, int(item["sampling_rate"])
