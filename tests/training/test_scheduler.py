"""piecewiselinearholdlr: ESPnet's piecewise-linear schedule, holding its last rate."""

import pytest
import torch
from espnet2.schedulers.piecewise_linear_warmup_lr import PiecewiseLinearWarmupLR

from espnet_speechclip.training.scheduler import SCHEDULER_NAME, PiecewiseLinearHoldLR, register_scheduler

PAPER = dict(warmup_steps_list=[0, 5000, 50000], warmup_lr_list=[0.0, 1.0e-4, 1.0e-8])


def optimizer():
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)


def lr_at(scheduler, step: int) -> float:
    scheduler.last_epoch = step - 1
    return scheduler.get_lr()[0]


def test_equal_to_espnet_inside_the_breakpoints_and_held_after():
    ours, espnet = PiecewiseLinearHoldLR(optimizer(), **PAPER), PiecewiseLinearWarmupLR(optimizer(), **PAPER)
    for step in (1, 2500, 5000, 5001, 30000, 49999, 50000):
        assert lr_at(ours, step) == pytest.approx(lr_at(espnet, step), rel=1e-12, abs=0), step
    assert lr_at(espnet, 50001) > 9e-5  # ESPnet's restarts near the peak rate
    assert lr_at(ours, 50001) == lr_at(ours, 500000) == 1e-8


def test_stepping_sets_the_optimizer_rate_and_resumes_from_its_state():
    opt = optimizer()
    scheduler = PiecewiseLinearHoldLR(opt, warmup_steps_list=[0, 2, 4], warmup_lr_list=[0.0, 1.0, 0.5])
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(6):
        opt.step()
        scheduler.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.5, 1.0, 0.75, 0.5, 0.5, 0.5, 0.5])
    opt2 = optimizer()
    resumed = PiecewiseLinearHoldLR(opt2, warmup_steps_list=[0, 2, 4], warmup_lr_list=[0.0, 1.0, 0.5])
    resumed.load_state_dict(scheduler.state_dict())
    opt2.step()
    resumed.step()
    assert opt2.param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize(
    "steps,rates,match",
    [
        ([0, 10], [0.0], "same number"),
        ([0], [0.0], "same number"),
        ([0, 10, 10], [0.0, 1.0, 0.5], "must increase"),
        ([0, 10], [0.0, -1.0], ">= 0"),
    ],
)
def test_bad_breakpoints_are_named(steps, rates, match):
    with pytest.raises(ValueError, match=match):
        PiecewiseLinearHoldLR(optimizer(), warmup_steps_list=steps, warmup_lr_list=rates)


def test_registered_with_espnet_scheduler_choices():
    from espnet2.tasks.abs_task import scheduler_classes

    register_scheduler()
    assert scheduler_classes[SCHEDULER_NAME] is PiecewiseLinearHoldLR
