"""How fast is this machine's CPU for torch work? One fixed workload, independent of this project's code.

Wall times measured on different machines only compare after scaling by the machines' speed. This
prints the median seconds of one forward + backward pass of a small fixed transformer (2 post-norm
layers of width 256, 4 heads, feed-forward 1024, no dropout; a batch of 16 x 200 random frames) on
2 torch threads, after 2 untimed passes:

    python bench/calibrate.py          # e.g. "calibration step_s 0.264"

Report ``wall / step_s`` next to a wall time, and run it right before or after the timed run: on a
machine shared with other jobs the figure rises with the load, which is the point.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import List, Optional, Sequence

import torch

WIDTH, HEADS, FEED_FORWARD, LAYERS = 256, 4, 1024, 2
BATCH, FRAMES = 16, 200


def step_seconds(passes: int = 6, warmup: int = 2, threads: int = 2) -> List[float]:
    """Seconds of each of ``passes`` timed forward + backward passes of the fixed workload (on
    ``threads`` torch threads; the caller's thread count is restored after)."""
    torch.manual_seed(0)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        layer = torch.nn.TransformerEncoderLayer(WIDTH, HEADS, FEED_FORWARD, dropout=0.0, batch_first=True)
        model = torch.nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        x = torch.randn(BATCH, FRAMES, WIDTH)
        times = []
        for i in range(warmup + passes):
            start = time.perf_counter()
            model(x).square().mean().backward()
            model.zero_grad(set_to_none=True)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(caller_threads)
    return times


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=6, help="timed passes (the median is printed)")
    args = parser.parse_args(argv)
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    print(f"calibration step_s {statistics.median(step_seconds(args.passes)):.3f}")


if __name__ == "__main__":
    main()
