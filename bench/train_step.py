"""Throughput of the SpeechCLIP training step and inference pass, against the frozen-upstream bound.

For every ``--config`` the model is built with random frozen weights (``models.random_weights.build_random``:
nothing is downloaded) and four things are timed on one synthetic batch of ``--batch_size`` utterances
of ``--seconds`` (capped at the config's training crop, which is what the upstream sees in training):

- ``bound``: the frozen speech upstream alone, under no_grad, in ``--dtype``: the most a training step
  built around it could reach, since every step must run it;
- ``step``: the training step as this package runs it under ESPnet (cached image embeddings, K+2-position
  keyword text pass, frozen upstream under no_grad, autocast in ``--dtype`` with ESPnet's GradScaler,
  gradient clipping at the config's ``grad_clip``, the config's optimizer);
- ``authors_step``: the same step the way the authors' code runs it: the CLIP image tower on
  preprocessed pixels every step, the keyword sequence padded to CLIP's full 77-position context and
  every position run, fp16 autocast with a GradScaler (on a GPU; a CPU has no fp16 arithmetic and
  emulates it many times slower, so there it runs in ``--dtype`` and the ratio measures the image tower
  and the text pass alone);
- ``inference``: ``encode_speech`` in eval mode under inference_mode, in ``--dtype``.

Each is warmed up, then every iteration is timed alone (device synchronised) and the median is reported
as ms/iteration and utterances/s, with the peak memory of that phase (``torch.cuda.max_memory_allocated``
on GPU; the process's peak RSS on CPU, reset per phase through /proc/self/clear_refs where allowed).

    python bench/train_step.py --config conf/paper/parallel_large.yaml --device cuda --batch_size 64 \\
        --seconds 6.4 --dtype bf16 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_RATE = 16000
DTYPES: Dict[str, Optional[torch.dtype]] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}
VARIANTS = ("bound", "step", "authors_step", "inference")


# ------------------------------------------------------------------------------------------ config
def load_config(path: str | Path) -> dict:
    """A training config; a relative CLIP ``config_file`` is looked up from the working directory, then
    from the repository root (the tiny configs name ``conf/clip/tiny-clip.json``)."""
    from espnet_speechclip.config import read_config

    config = read_config(path)
    clip = config["clip_conf"]
    if (
        clip.get("config_file")
        and not Path(clip["config_file"]).is_file()
        and (ROOT / clip["config_file"]).is_file()
    ):
        clip["config_file"] = str(ROOT / clip["config_file"])
    return config


def task_default(name: str):
    """ESPnet's default for a training option the config leaves out (e.g. grad_clip 5.0)."""
    from espnet_speechclip.training.task import SpeechCLIPTask

    return SpeechCLIPTask.get_parser().get_default(name)


# ------------------------------------------------------------------------------------------ measuring
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    # Writing 5 to clear_refs resets the kernel's peak-RSS mark (VmHWM) of this process (Linux >= 4.0).
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def time_iterations(fn: Callable[[], object], warmup: int, steps: int, device: torch.device) -> List[float]:
    """Seconds of each of ``steps`` calls of ``fn`` after ``warmup`` untimed ones, each synchronised."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


# ------------------------------------------------------------------------------------------ the variants
def full_context_encode(text, emb: torch.Tensor) -> torch.Tensor:
    """The authors' keyword text pass: [SOT, kw_1..kw_K, EOT] (B, K+2, D_t) padded with the pad token's
    embedding to the full context (B, 77, D_t); all 77 positions run, the EOT position is read out.
    Same result as ``CLIPTextEncoder.encode_embeddings`` (the causal mask hides the padding from EOT),
    at 77 / (K+2) times the cost. -> (B, D_c) normalised."""
    from espnet_speechclip.models.clip import PAD_ID

    b, length, _ = emb.shape
    pad = text.token_embedding.weight[PAD_ID].to(emb.dtype).expand(b, text.context_length - length, -1)
    x = torch.cat([emb, pad], dim=1) + text.positional_embedding.to(emb.dtype)
    x = text.transformer(x, attn_mask=text.attn_mask)
    x = text.ln_final(x[:, length - 1])
    p = text.text_projection
    x = p(x) if isinstance(p, torch.nn.Linear) else x @ p
    return F.normalize(x, dim=-1)


@contextlib.contextmanager
def authors_text_pass(model) -> Iterator[None]:
    """Route the cascaded branch's keyword pass through :func:`full_context_encode` (an instance
    attribute shadows the method; deleting it restores the K+2-position pass)."""
    text = model.text_encoder
    text.encode_embeddings = functools.partial(full_context_encode, text)
    try:
        yield
    finally:
        del text.encode_embeddings


def make_batch(
    batch_size: int, samples: int, embed_dim: int, image_size, device: torch.device, seed: int = 0
) -> Dict[str, torch.Tensor]:
    """Random inputs: speech (B, T) at 16 kHz, speech_lengths (B,) all T, image_id (B,) all distinct,
    image_emb (B, D_c) normalised, image (B, 3, H, W) preprocessed-pixel-like values."""
    g = torch.Generator().manual_seed(seed)
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    batch = dict(
        speech=0.1 * torch.randn(batch_size, samples, generator=g),
        speech_lengths=torch.full((batch_size,), samples, dtype=torch.long),
        image_id=torch.arange(batch_size),
        image_emb=F.normalize(torch.randn(batch_size, embed_dim, generator=g), dim=-1),
        image=torch.randn(batch_size, 3, h, w, generator=g),
    )
    return {k: v.to(device) for k, v in batch.items()}


def make_train_step(
    model,
    batch: Dict[str, torch.Tensor],
    device: torch.device,
    config: dict,
    dtype: Optional[torch.dtype],
    pixels: bool,
) -> Callable[[], None]:
    """One ESPnet-style optimisation step (espnet2.train.trainer): forward under autocast, scaled
    backward, unscale, clip, skip on a non-finite norm, optimizer step, zero_grad. With ``--use_amp``
    ESPnet uses a GradScaler for bf16 too, so the scaler is on whenever autocast is."""
    from espnet2.tasks.abs_task import optim_classes

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = optim_classes[config.get("optim", task_default("optim"))](
        params, **config.get("optim_conf", {})
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is not None)
    grad_clip = config.get("grad_clip", task_default("grad_clip"))
    inputs = {k: batch[k] for k in ("speech", "speech_lengths", "image_id")}
    inputs["image" if pixels else "image_emb"] = batch["image" if pixels else "image_emb"]

    def step() -> None:
        with autocast(device, dtype):
            loss, _, _ = model(**inputs)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        if torch.isfinite(norm):
            scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    return step


def bench_config(path: str, args: argparse.Namespace, device: torch.device, workdir: Path) -> List[dict]:
    """Time the four variants of one config; returns one result dict per variant."""
    from espnet_speechclip.models.random_weights import build_random, count_parameters

    config = load_config(path)
    torch.manual_seed(0)
    model = build_random(config, workdir=workdir, image_tower=True)
    params = count_parameters(model)
    # The image tower belongs to the authors' variant only: keep it off the device otherwise, so the
    # other phases' peak memory is what training with cached embeddings holds.
    tower, model.image_encoder = model.image_encoder, None
    model.to(device).train()
    crop = model.speech_encoder.max_train_samples
    samples = round(args.seconds * SAMPLE_RATE)
    if crop is not None:
        samples = min(samples, crop)
    batch = make_batch(
        args.batch_size, samples, model.text_encoder.embed_dim, tower.preprocess_cfg["size"], device
    )
    dtype = DTYPES[args.dtype]
    upstream = model.speech_encoder.upstream

    def bound() -> None:
        with torch.no_grad(), autocast(device, dtype):
            upstream(batch["speech"], batch["speech_lengths"])

    def inference() -> None:
        with torch.inference_mode(), autocast(device, dtype):
            model.encode_speech(batch["speech"], batch["speech_lengths"])

    results = []
    base = dict(
        config=path,
        model=config.get("model", "parallel"),
        batch_size=args.batch_size,
        seconds=samples / SAMPLE_RATE,
        trainable_params=params["trainable"],
        total_params=params["total"],
    )

    def run(variant: str, fn: Callable[[], None], dtype_name: str) -> None:
        reset_peak_memory(device)
        times = time_iterations(fn, args.warmup, args.steps, device)
        median = statistics.median(times)
        results.append(
            dict(
                base,
                variant=variant,
                dtype=dtype_name,
                ms_per_iter=1000 * median,
                ms_min=1000 * min(times),
                ms_max=1000 * max(times),
                utt_per_s=args.batch_size / median,
                peak_mem_mib=peak_memory_mib(device),
            )
        )

    run("bound", bound, args.dtype)
    step = make_train_step(model, batch, device, config, dtype, pixels=False)
    run("step", step, args.dtype)
    if args.profile:
        profile_step(
            step,
            device,
            f"{path} step, {args.dtype}, {args.batch_size} x {samples / SAMPLE_RATE:g} s",
            args.profile,
        )
    del step  # and with it its optimizer state, before the authors' step allocates its own
    model.image_encoder = tower.to(device)
    with authors_text_pass(model):
        authors_dtype = "fp16" if device.type == "cuda" else args.dtype
        run(
            "authors_step",
            make_train_step(model, batch, device, config, DTYPES[authors_dtype], pixels=True),
            authors_dtype,
        )
    model.image_encoder = None
    tower.to("cpu")
    model.eval()
    run("inference", inference, args.dtype)
    bound_rate = results[0]["utt_per_s"]
    for r in results:
        r["ratio_to_bound"] = r["utt_per_s"] / bound_rate
    return results


def profile_step(fn: Callable[[], None], device: torch.device, title: str, path: str, steps: int = 3) -> None:
    """Append to ``path`` the operators of ``steps`` training steps ranked by device time (self time on
    the GPU, CPU time on the CPU): where a step spends what the bound does not."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, acc_events=True) as prof:
        for _ in range(steps):
            fn()
        synchronize(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"## {title}: {steps} steps\n\n{prof.key_averages().table(sort_by=key, row_limit=30)}\n\n")


def summarise(results: List[dict]) -> List[dict]:
    """Per config: step / bound, step / authors' step, inference / bound."""
    out = []
    for config in dict.fromkeys(r["config"] for r in results):
        rate = {r["variant"]: r["utt_per_s"] for r in results if r["config"] == config}
        out.append(
            dict(
                config=config,
                step_over_bound=rate["step"] / rate["bound"],
                step_over_authors=rate["step"] / rate["authors_step"],
                inference_over_bound=rate["inference"] / rate["bound"],
            )
        )
    return out


def markdown(results: List[dict], summary: List[dict]) -> str:
    lines = [
        "| config | variant | dtype | batch x s | ms/iter | utt/s | peak MiB | x bound |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['config']} | {r['variant']} | {r['dtype']} | {r['batch_size']} x {r['seconds']:g} | "
            f"{r['ms_per_iter']:.1f} | {r['utt_per_s']:.1f} | {r['peak_mem_mib']:.0f} | "
            f"{r['ratio_to_bound']:.2f} |"
        )
    lines += [
        "",
        "| config | step / bound | step / authors' step | inference / bound |",
        "|---|---:|---:|---:|",
    ]
    for s in summary:
        lines.append(
            f"| {s['config']} | {s['step_over_bound']:.2f} | {s['step_over_authors']:.2f} | "
            f"{s['inference_over_bound']:.2f} |"
        )
    return "\n".join(lines)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs visible"
    )


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", action="append", required=True, help="training config (repeatable)")
    parser.add_argument(
        "--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--batch_size", type=int, default=64, help="utterances per step (one GPU's share)")
    parser.add_argument(
        "--seconds",
        type=float,
        default=6.4,
        help="utterance length; capped at the config's max_train_samples",
    )
    parser.add_argument("--steps", type=int, default=20, help="timed iterations per variant")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations before them")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default=None,
        help="autocast dtype of bound, step and inference (default: bf16 on cuda, fp32 on cpu); "
        "the authors' step is fp16 on cuda, --dtype on cpu",
    )
    parser.add_argument("--json", help="write the results here as JSON")
    parser.add_argument(
        "--profile", help="append an operator profile of 3 training steps per config to this file"
    )
    args = parser.parse_args(argv)
    if args.dtype is None:
        args.dtype = "bf16" if args.device == "cuda" else "fp32"
    if args.batch_size < 2 or args.steps < 1 or args.warmup < 0:
        parser.error("need batch_size >= 2 (a contrastive batch), steps >= 1, warmup >= 0")
    return args


def import_seconds() -> float:
    """Seconds to import what a training step runs on (ESPnet, s3prl, open_clip, the task), timed once
    per process before anything else: on a machine whose packages come from wheels, a broken install
    stops here."""
    start = time.perf_counter()
    import espnet2  # noqa: F401
    import open_clip  # noqa: F401
    import s3prl  # noqa: F401

    from espnet_speechclip.training.task import SpeechCLIPTask  # noqa: F401

    return time.perf_counter() - start


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    imports = import_seconds()
    print(f"imports: {imports:.1f} s", flush=True)
    device = torch.device(args.device)
    results: List[dict] = []
    with tempfile.TemporaryDirectory(prefix="speechclip_bench_") as workdir:
        for path in args.config:
            results += bench_config(path, args, device, Path(workdir))
            # the model is unreachable now: free it before the next one, so peaks do not add up
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    summary = summarise(results)
    report = dict(
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        device=args.device,
        machine=machine(device),
        torch=torch.__version__,
        import_s=round(imports, 2),
        steps=args.steps,
        warmup=args.warmup,
        results=results,
        summary=summary,
    )
    print(markdown(results, summary))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
