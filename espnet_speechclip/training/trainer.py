"""ESPnet Trainer whose validation is corpus-level retrieval over the whole dev set.

In-batch accuracy depends on the batch size and composition; the paper selects checkpoints by dev
recall over all dev utterances and images. Each rank embeds its shard, the shards are gathered, and
R@1/5/10 in both directions (and their mean R@10, usable as ``--best_model_criterion valid mean_r10 max``)
are registered once per epoch. CIF models (cascaded+ / hybrid+) also report their unit counts on the dev
set: ``loss_quantity``, ``units`` and ``unit_error`` (mean |units - target|, without the training-time
scaling of the alphas).
"""

from __future__ import annotations

from typing import Dict, Iterable, List

import torch
from espnet2.torch_utils.device_funcs import to_device
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer

from espnet_speechclip.evaluation.retrieval import grouped_recall, mean_r10, retrieval_recall
from espnet_speechclip.models.loss import masked_infonce
from espnet_speechclip.models.speechclip import unit_stats


def corpus_retrieval(speech: torch.Tensor, image: torch.Tensor, image_ids: torch.Tensor) -> Dict[str, float]:
    """speech (N, D), image (N, D) per-utterance image embeddings, image_ids (N,) -> flat recall stats
    ``s2i_r1 ... i2s_r10, mean_r10`` over the unique images."""
    unique, first, inverse = _unique_first(image_ids)
    sim = speech.float() @ image[first].float().t()
    result = retrieval_recall(sim, inverse)
    stats = {}
    for direction, short in (("speech_to_image", "s2i"), ("image_to_speech", "i2s")):
        for k, v in result[direction].items():
            stats[f"{short}_r{k[2:]}"] = v
    stats["mean_r10"] = mean_r10(result)
    return stats


def _unique_first(ids: torch.Tensor):
    """Unique ids, index of each one's first occurrence, and each element's unique index."""
    unique, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((unique.numel(),), ids.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(ids.numel()), reduce="amin")
    return unique, first, inverse


def _gather_cpu(tensors: List[torch.Tensor], distributed: bool) -> List[torch.Tensor]:
    if not distributed:
        return tensors
    parts: List = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(parts, [t.cpu() for t in tensors])
    return [torch.cat([p[i] for p in parts]) for i in range(len(tensors))]


class RetrievalTrainer(Trainer):
    @classmethod
    @torch.no_grad()
    def validate_one_epoch(
        cls, model: torch.nn.Module, iterator: Iterable, reporter: SubReporter, options, distributed_option
    ) -> None:
        core = model.module if hasattr(model, "module") else model
        distributed = distributed_option.distributed
        device = "cuda" if options.ngpu > 0 else "cpu"
        model.eval()
        scale = core.loss.scale().to(device)
        collected: Dict[str, List[torch.Tensor]] = {b: [] for b in core.branches}
        images: List[torch.Tensor] = []
        ids: List[torch.Tensor] = []
        texts: List[torch.Tensor] = []
        for _, batch in iterator:
            batch = to_device(batch, device)
            with torch.autocast(device, enabled=options.use_amp):
                out = core.encode_speech(batch["speech"], batch["speech_lengths"], batch.get("text_lengths"))
                img = core.encode_image(batch.get("image"), batch.get("image_emb"))
            image_id = batch["image_id"].view(-1)
            stats = {}
            for b in core.branches:
                # per-batch loss without the cross-rank gather: dev shards may differ in size
                stats[f"loss_{b}"] = masked_infonce(out[b], img, image_id, scale).item()
                collected[b].append(out[b].float().cpu())
            if "quantity_loss" in out:
                stats.update({k: v.item() for k, v in unit_stats(out).items()})
            reporter.register(stats, weight=image_id.numel())
            reporter.next()
            images.append(img.float().cpu())
            ids.append(image_id.cpu())
            if "text" in batch:
                texts.append(core.text_encoder(batch["text"]).float().cpu())
        local = [torch.cat(images), torch.cat(ids)] + [torch.cat(collected[b]) for b in core.branches]
        if texts:
            local.append(torch.cat(texts))
        tensors = _gather_cpu(local, distributed)
        image, image_ids = tensors[0], tensors[1]
        speech = tensors[2 : 2 + len(core.branches)]
        stats = {}
        for b, emb in zip(core.branches, speech):
            for k, v in corpus_retrieval(emb, image, image_ids).items():
                stats[f"{b}_{k}"] = v
            if texts:  # zero-shot: any transcript of the utterance's image is right
                s2t = grouped_recall(emb.float() @ tensors[-1].t(), image_ids, image_ids)
                for k, v in s2t.items():
                    stats[f"{b}_s2t_r{k[2:]}"] = v
        stats["mean_r10"] = sum(stats[f"{b}_mean_r10"] for b in core.branches) / len(core.branches)
        reporter.register(stats)
        reporter.next()
