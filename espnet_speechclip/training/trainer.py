"""ESPnet Trainer whose validation is corpus-level retrieval over the whole dev set.

In-batch accuracy depends on the batch size and composition; the paper selects checkpoints by dev
recall over all dev utterances and images. Each rank embeds its shard, the shards are gathered, and
R@1/5/10 in both directions (and their mean R@10, usable as ``--best_model_criterion valid mean_r10 max``)
are registered once per epoch. CIF models (cascaded+ / hybrid+) also report their unit counts on the dev
set: ``loss_quantity``, ``units`` and ``unit_error`` (mean |units - target|, without the training-time
scaling of the alphas).

Training steps and validation run in one precision, the config's ``amp_dtype`` (see
:mod:`espnet_speechclip.precision`): ESPnet's Trainer takes its training autocast dtype from
``espnet2.train.trainer.autocast_args`` (bf16 wherever the GPU supports it), so each training epoch
sets it to ``amp_dtype`` and puts it back after.

Its checkpoints survive ``kill -9``: see :func:`espnet_speechclip.training.experiment.atomic_torch_save`
and :func:`espnet_speechclip.training.experiment.repair_interrupted_epoch`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path
from typing import Dict, Iterable, Iterator, List

import torch
from espnet2.torch_utils.device_funcs import to_device
from espnet2.train import trainer as espnet_trainer
from espnet2.train.reporter import SubReporter
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass

from espnet_speechclip.config import TASK_DEFAULTS
from espnet_speechclip.evaluation.retrieval import grouped_recall, mean_r10, retrieval_recall
from espnet_speechclip.models.loss import masked_infonce
from espnet_speechclip.precision import AMP_DTYPES, amp_dtype, autocast, check_amp_dtype
from espnet_speechclip.training.experiment import atomic_torch_save, repair_interrupted_epoch


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


@dataclasses.dataclass
class RetrievalTrainerOptions(TrainerOptions):
    amp_dtype: str = TASK_DEFAULTS["amp_dtype"]


@contextlib.contextmanager
def espnet_training_precision(dtype_name: str) -> Iterator[None]:
    """ESPnet's training autocast in ``dtype_name`` for the duration (its module-level ``autocast_args``,
    which its Trainer reads at every step), restored after."""
    saved = dict(espnet_trainer.autocast_args)
    espnet_trainer.autocast_args.clear()
    espnet_trainer.autocast_args["dtype"] = amp_dtype(dtype_name)
    try:
        yield
    finally:
        espnet_trainer.autocast_args.clear()
        espnet_trainer.autocast_args.update(saved)


class RetrievalTrainer(Trainer):
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("SpeechCLIP trainer related")
        group.add_argument(
            "--amp_dtype",
            type=str,
            default=TASK_DEFAULTS["amp_dtype"],
            choices=list(AMP_DTYPES),
            help="With --use_amp true: the autocast dtype of training, validation and inference on GPU "
            "(the paper: float16). ESPnet alone would train in bfloat16 wherever the GPU supports it",
        )

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> RetrievalTrainerOptions:
        options = build_dataclass(RetrievalTrainerOptions, args)
        check_amp_dtype(options.amp_dtype, options.use_amp and options.ngpu > 0)
        return options

    @classmethod
    def train_one_epoch(
        cls,
        model,
        iterator,
        optimizers,
        schedulers,
        scaler,
        reporter,
        summary_writer,
        options,
        distributed_option,
    ) -> bool:
        with espnet_training_precision(options.amp_dtype):
            return super().train_one_epoch(
                model=model,
                iterator=iterator,
                optimizers=optimizers,
                schedulers=schedulers,
                scaler=scaler,
                reporter=reporter,
                summary_writer=summary_writer,
                options=options,
                distributed_option=distributed_option,
            )

    @classmethod
    def run(
        cls,
        model,
        optimizers,
        schedulers,
        train_iter_factory,
        valid_iter_factory,
        plot_attention_iter_factory,
        trainer_options,
        distributed_option,
    ) -> None:
        """ESPnet's training loop, with checkpoints that survive ``kill -9``: every file is written
        atomically, and a resumed run first completes what the killed one left undone (see
        :mod:`espnet_speechclip.training.experiment`)."""
        rank0 = not distributed_option.distributed or distributed_option.dist_rank == 0
        if trainer_options.resume and rank0:
            repair_interrupted_epoch(Path(trainer_options.output_dir), trainer_options.best_model_criterion)
        with atomic_torch_save():
            super().run(
                model=model,
                optimizers=optimizers,
                schedulers=schedulers,
                train_iter_factory=train_iter_factory,
                valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options,
                distributed_option=distributed_option,
            )

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
            # the precision of the training steps (and of inference): the config's amp_dtype
            with autocast(device, options.use_amp, options.amp_dtype):
                out, unit_count = core.forward_speech(
                    batch["speech"], batch["speech_lengths"], batch.get("text_lengths")
                )
                img = core.encode_image(batch.get("image"), batch.get("image_emb"))
                text = core.text_encoder(batch["text"]) if "text" in batch else None
            image_id = batch["image_id"].view(-1)
            stats = {}
            for b in core.branches:
                # per-batch loss without the cross-rank gather: dev shards may differ in size
                emb = out.branch(b)
                stats[f"loss_{b}"] = masked_infonce(emb, img, image_id, scale).item()
                collected[b].append(emb.float().cpu())
            if unit_count is not None:
                stats.update({k: v.item() for k, v in unit_count.stats().items()})
            reporter.register(stats, weight=image_id.numel())
            reporter.next()
            images.append(img.float().cpu())
            ids.append(image_id.cpu())
            if text is not None:
                texts.append(text.float().cpu())
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
