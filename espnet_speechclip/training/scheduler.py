"""A piecewise-linear learning-rate schedule that holds its last rate, registered as an ESPnet scheduler.

The paper trains with a linear warm-up to 1e-4 over 5k steps, a linear decay to 1e-8 at 50k steps, and
nothing after. ESPnet's ``piecewiselinearwarmuplr`` takes the same breakpoints but, past the last one,
continues as a Noam decay from the FIRST rate scale (``base_lr * sqrt(last_step / step)``): 1e-4 just
after step 50k instead of 1e-8. Raising ``max_epoch``, or resuming a finished run with more epochs, would
then restart training near the peak rate. ``piecewiselinearholdlr`` keeps ESPnet's breakpoints and
configuration keys and holds the last rate instead::

    scheduler: piecewiselinearholdlr
    scheduler_conf:
        warmup_steps_list: [0, 5000, 50000]
        warmup_lr_list: [0.0, 1.0e-4, 1.0e-8]
"""

from __future__ import annotations

from typing import List, Sequence, Union

import numpy as np
import torch
from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR

from espnet_speechclip.errors import InputError

SCHEDULER_NAME = "piecewiselinearholdlr"


class PiecewiseLinearHoldLR(PiecewiseLinearWarmupLR):
    """Learning rate linear between ``(warmup_steps_list[i], warmup_lr_list[i])`` points, constant at the
    first rate before the first point and at the last rate after the last one. Stepped once per batch.

    The rates are absolute (as in ESPnet's ``piecewiselinearwarmuplr``); the optimiser's ``lr`` is not
    used. Raises ValueError for lists of different lengths, fewer than two points, steps that do not
    increase, or negative rates.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps_list: Sequence[Union[int, float]] = (0, 25000),
        warmup_lr_list: Sequence[float] = (0.0, 0.001),
        last_epoch: int = -1,
    ):
        steps, rates = list(warmup_steps_list), list(warmup_lr_list)
        if len(steps) != len(rates) or len(steps) < 2:
            raise InputError(
                f"{SCHEDULER_NAME}: warmup_steps_list and warmup_lr_list need the same number (>= 2) of "
                f"points, got {steps} and {rates}"
            )
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise InputError(f"{SCHEDULER_NAME}: warmup_steps_list must increase, got {steps}")
        if any(r < 0 for r in rates):
            raise InputError(f"{SCHEDULER_NAME}: learning rates must be >= 0, got {rates}")
        super().__init__(optimizer, steps, rates, last_epoch)

    def get_lr(self) -> List[float]:
        step_num = self.last_epoch + 1
        # np.interp holds the end values outside the breakpoints
        lr = float(np.interp(step_num, self.warmup_steps_list, self.warmup_lr_list))
        return [lr for _ in self.base_lrs]


def register_scheduler() -> None:
    """Add ``piecewiselinearholdlr`` to ESPnet's scheduler choices (before a task builds its parser)."""
    from espnet2.tasks import abs_task

    abs_task.scheduler_classes.setdefault(SCHEDULER_NAME, PiecewiseLinearHoldLR)
