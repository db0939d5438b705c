"""SpeechCLIPTask: SpeechCLIP as an ESPnet task (config/CLI parsing, Trainer, checkpoints, DDP, resume).

Data names:
- ``speech`` (``sound`` / ``sound_16k``): 16 kHz waveforms;
- ``image_id`` (``text``): the utterance's image key (captions of one image share it);
- ``image_emb`` (``npy`` / ``kaldi_ark``): cached CLIP image embeddings, or ``image`` (``image``): files;
- ``text`` (``text``, optional): transcripts; on the dev set they score zero-shot speech->text, and a CIF
  model (cascaded+ / hybrid+) with ``cascaded_conf.unit_target: caption`` trains its number of keywords
  towards their CLIP token counts (it needs them in the training data, and in the dev data for its
  quantity loss there).
"""

from __future__ import annotations

import argparse
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.iterators.sequence_iter_factory import SequenceIterFactory
from espnet2.tasks.abs_task import AbsTask, IteratorOptions
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str2bool

from espnet_speechclip.config import TASK_DEFAULTS
from espnet_speechclip.data.datadir import read_kv
from espnet_speechclip.data.media import MediaError
from espnet_speechclip.errors import InputError
from espnet_speechclip.locks import folder_lock
from espnet_speechclip.models.builder import (
    build_model,
    check_clip_conf,
    model_choices,
    speech_encoder_choices,
)
from espnet_speechclip.models.clip import image_transform, preprocess_cfg_from_config, text_context_length
from espnet_speechclip.models.speech_encoder import check_min_samples
from espnet_speechclip.models.speechclip import SpeechCLIP, branch_conf_defaults
from espnet_speechclip.training.data_check import SPEECH_SHAPE_FILES
from espnet_speechclip.training.experiment import guard_experiment, process_rank
from espnet_speechclip.training.preprocessor import SpeechCLIPPreprocessor
from espnet_speechclip.training.readers import register_data_types
from espnet_speechclip.training.sampler import EpochShuffleSampler
from espnet_speechclip.training.scheduler import register_scheduler
from espnet_speechclip.training.trainer import RetrievalTrainer

logger = logging.getLogger(__name__)


class SpeechCLIPTask(AbsTask):
    num_optimizers: int = 1
    class_choices_list = [speech_encoder_choices, model_choices]
    trainer = RetrievalTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group(description="SpeechCLIP related")
        group.add_argument(
            "--clip_conf",
            action=NestedDictAction,
            default=dict(TASK_DEFAULTS["clip_conf"]),
            help="The frozen CLIP: model_name (open_clip architecture), pretrained (tag or local file), "
            "config_file (open_clip JSON for a custom architecture)",
        )
        group.add_argument(
            "--image_input",
            type=str,
            default=TASK_DEFAULTS["image_input"],
            choices=["embedding", "pixels"],
            help="embedding: images come as cached CLIP embeddings (image_emb), the image tower is not "
            "built; pixels: images come as files (image) and run through the image tower every step",
        )
        group.add_argument(
            "--use_preprocessor",
            type=str2bool,
            default=TASK_DEFAULTS["use_preprocessor"],
            help="Apply the preprocessor",
        )
        group.add_argument(
            "--length_group_batches",
            type=int,
            default=TASK_DEFAULTS["length_group_batches"],
            help="Training batches: 1 = plain random batches (the paper's). N > 1 is a speed option: draw N "
            "batches' worth of random utterances at a time, sort them by length and cut them into batches, "
            "so batches are new every epoch but hold little padding (random batches of utterances of "
            "2-6.4 s are about 1/3 padding, groups of 50 about 1%%); each batch then holds utterances of "
            "nearly one length, which changes the contrastive negatives and the batch statistics of the "
            "cascaded keyword BatchNorm",
        )
        for class_choices in cls.class_choices_list:
            class_choices.add_arguments(group)

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        # ESPnet's dataset resolves data types from its DATA_TYPES table, and the parser takes its
        # scheduler choices from abs_task's table: ours must be in them before any dataset or parser is
        # built, and every run of the task starts by building its parser.
        register_data_types()
        register_scheduler()
        parser = super().get_parser()
        # Defaults a SpeechCLIP user wants: TensorBoard logs in <output_dir>/tensorboard/ (ESPnet's
        # default, tensorboard is a dependency), no attention plots (matplotlib is not), and random
        # batches (see EpochShuffleSampler), selected by dev retrieval.
        parser.set_defaults(
            use_tensorboard=True,
            use_matplotlib=False,
            batch_type="unsorted",
            best_model_criterion=[["valid", "mean_r10", "max"]],
            keep_nbest_models=1,
        )
        return parser

    @classmethod
    def main_worker(cls, args: argparse.Namespace):
        # Spawned workers (ESPnet's multi-GPU mode) start from a fresh interpreter: register again.
        register_data_types()
        # ESPnet configures logging inside main_worker; the checks below log, so configure it the same
        # way first (ESPnet's own basicConfig call is then a no-op).
        rank0 = process_rank(args) == 0
        host = os.uname()[1].split(".")[0]
        logging.basicConfig(
            level=args.log_level if rank0 else "ERROR",
            format=f"[{host}] %(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s",
        )
        # One training per experiment folder (rank 0 holds it for the run's ranks), taken before ESPnet
        # rewrites config.yaml; then refuse unusable data and a changed experiment.
        lock = folder_lock(args.output_dir, "training") if rank0 and args.output_dir else nullcontext()
        with lock:
            guard_experiment(args)
            super().main_worker(args)

    @classmethod
    def get_default_config(cls) -> Dict[str, Any]:
        """What ``--print_config`` prints: ESPnet's defaults, plus the options of the model's branches
        (ESPnet reads ``model_conf`` off the model class, where a branch conf defaults to None)."""
        config = super().get_default_config()
        model_conf = config["model_conf"]
        for key, defaults in branch_conf_defaults(model_choices.get_class(config["model"])).items():
            given = model_conf.get(key) or {}
            model_conf[key] = {**defaults, **given}
            for sub, sub_defaults in defaults.items():  # nested options (cif_conf): given over defaults
                if isinstance(sub_defaults, dict) and isinstance(given.get(sub), dict):
                    model_conf[key][sub] = {**sub_defaults, **given[sub]}
        return config

    @classmethod
    def build_collate_fn(cls, args: argparse.Namespace, train: bool) -> Callable:
        return CommonCollateFn(
            float_pad_value=0.0, int_pad_value=0, not_sequence=["image_id", "image_emb", "image"]
        )

    @classmethod
    def build_preprocess_fn(cls, args: argparse.Namespace, train: bool) -> Optional[Callable]:
        if not args.use_preprocessor:
            return None
        clip_conf = check_clip_conf(args.clip_conf, need_weights=False)
        transform = None
        if args.image_input == "pixels":
            transform = image_transform(preprocess_cfg_from_config(**clip_conf))
        # The receptive field needs the upstream; 400 samples (25 ms) is the smallest of every s3prl
        # upstream, and the model re-checks its own exact bound on each batch.
        return SpeechCLIPPreprocessor(
            min_samples=400,
            image_transform=transform,
            text_context=text_context_length(clip_conf["model_name"], clip_conf.get("config_file")),
        )

    @classmethod
    def required_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        return ("speech",) if inference else ("speech", "image_id")

    @classmethod
    def optional_data_names(cls, train: bool = True, inference: bool = False) -> Tuple[str, ...]:
        # text: transcripts, optional; when given, validation also scores zero-shot speech->text
        return ("image_emb", "image", "image_id", "text")

    @classmethod
    def build_sequence_iter_factory(
        cls, args: argparse.Namespace, iter_options: IteratorOptions, mode: str
    ) -> AbsIterFactory:
        if not iter_options.train:
            return super().build_sequence_iter_factory(args, iter_options, mode)
        if iter_options.batch_type != "unsorted":
            raise InputError(
                f"SpeechCLIP draws new random training batches every epoch: use batch_type "
                f"unsorted with batch_size, not {iter_options.batch_type}"
            )
        # utt2num_samples (or speech_shape) lines: "<utt> <samples>[,<dims>]"
        lengths = {k: int(v.split(",")[0]) for k, v in read_kv(iter_options.shape_files[0]).items()}
        keys = list(lengths)
        rank, world = 0, 1
        if iter_options.distributed:
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        sampler = EpochShuffleSampler(
            keys, iter_options.batch_size, rank, world, lengths=lengths, group=args.length_group_batches
        )
        logger.info(f"[{mode}] Batch sampler: {sampler}")
        dataset = cls.build_dataset(args, iter_options, set(keys))
        return SequenceIterFactory(
            dataset=dataset,
            batches=sampler,
            seed=args.seed,
            num_iters_per_epoch=iter_options.num_iters_per_epoch,
            shuffle=False,
            num_workers=args.num_workers,
            collate_fn=iter_options.collate_fn,
            pin_memory=args.ngpu > 0,
        )

    @classmethod
    def build_model(cls, args: argparse.Namespace) -> SpeechCLIP:
        check_unit_target_data(args)
        model = build_model(vars(args))
        for shape_file in _speech_shape_files(args):
            check_min_length(shape_file, model.speech_encoder.min_samples)
        return model


def check_unit_target_data(args: argparse.Namespace) -> None:
    """A CIF model trained towards caption lengths needs the transcripts among its training data: say so
    before any model is built rather than at the first step."""
    cascaded = (getattr(args, "model_conf", None) or {}).get("cascaded_conf") or {}
    if cascaded.get("unit_target") != "caption":
        return
    train_data = getattr(args, "train_data_path_and_name_and_type", None)
    if not train_data:  # not training (a model rebuilt from its config)
        return
    if "text" not in [entry[1] for entry in train_data]:
        raise InputError(
            "cascaded_conf.unit_target is caption: the number of keywords is trained towards each "
            "caption's CLIP token count, so the training data must list the transcripts, e.g. "
            "--train_data_path_and_name_and_type dump/raw/<train set>/text,text,text"
        )


def _speech_shape_files(args: argparse.Namespace) -> List[str]:
    files = list(getattr(args, "train_shape_file", None) or []) + list(
        getattr(args, "valid_shape_file", None) or []
    )
    # Files that do not exist here are skipped: a model rebuilt from its config for inference elsewhere
    # has no training data at hand (and ESPnet itself fails on a missing shape file when training).
    return [
        f for f in files if any(str(f).endswith(name) for name in SPEECH_SHAPE_FILES) and Path(f).is_file()
    ]


def check_min_length(shape_file: str, min_samples: int) -> None:
    """Fail before training if any utterance in ``shape_file`` is shorter than ``min_samples``."""
    short = []
    for utt, value in read_kv(shape_file).items():
        try:
            check_min_samples(int(value.split(",")[0]), min_samples, f"utterance {utt}")
        except MediaError as e:
            short.append(str(e))
    if short:
        raise MediaError(
            f"{shape_file}: {len(short)} utterance(s) too short for the speech encoder: "
            f"{'; '.join(short[:5])}{' ...' if len(short) > 5 else ''}"
        )
