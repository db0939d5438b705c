import math
import os

import pytest
import torch
import torch.multiprocessing as mp

from espnet_speechclip.models.loss import InfoNCELoss, masked_infonce


def brute_force(a, b, ids, scale):
    """Plain-loop reference: for each query, softmax over the allowed candidates."""
    n = a.size(0)
    total = 0.0
    for direction in range(2):
        for i in range(n):
            terms, pos = [], None
            for j in range(n):
                if j != i and ids[j] == ids[i]:
                    continue  # another caption of the same image: neither positive nor negative
                s = scale * float(a[i] @ b[j]) if direction == 0 else scale * float(a[j] @ b[i])
                terms.append(s)
                if j == i:
                    pos = s
            m = max(terms)
            total += -(pos - (m + math.log(sum(math.exp(t - m) for t in terms))))
    return total / (2 * n)


@pytest.mark.parametrize("ids", [[0, 1, 2, 3, 4, 5], [0, 0, 1, 2, 2, 2], [7, 7, 7, 7, 1, 2]])
def test_loss_equals_brute_force_reference(ids):
    torch.manual_seed(len(ids) + sum(ids))
    a = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(6, 5, dtype=torch.float64), dim=-1)
    ids = torch.tensor(ids)
    loss = InfoNCELoss(temperature=0.07)(a, b, ids)
    assert loss.item() == pytest.approx(brute_force(a, b, ids, 1 / 0.07), rel=1e-6)


def test_learnable_temperature_is_clamped_and_trains():
    loss_fn = InfoNCELoss(temperature=0.07, learnable=True, max_scale=100.0)
    assert [n for n, _ in loss_fn.named_parameters()] == ["log_scale"]
    with torch.no_grad():
        loss_fn.log_scale.fill_(10.0)
    assert loss_fn.scale().item() == pytest.approx(100.0)
    a = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    InfoNCELoss(0.07, learnable=True)(a, a, torch.arange(4)).backward()
    # a fixed temperature has nothing in the state dict, in particular nothing batch-size dependent
    assert InfoNCELoss(0.07).state_dict() == {}


@pytest.mark.parametrize("start,used", [(200.0, 100.0), (0.5, 1.0), (30.0, 30.0)])
def test_learnable_scale_is_clamped_on_the_parameter_and_keeps_its_gradient(start, used):
    """CLIP clamps the parameter (logit_scale to [0, log 100]), not its exp: a clamp of exp(log_scale)
    would zero the gradient above the cap, and the parameter would drift there unseen."""
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 5), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(6, 5), dim=-1)
    ids = torch.tensor([0, 1, 1, 2, 3, 4])
    loss_fn = InfoNCELoss(0.07, learnable=True, max_scale=100.0)
    with torch.no_grad():
        loss_fn.log_scale.fill_(math.log(start))
    # two uses in one graph, as the hybrid model's two branch losses
    loss = loss_fn(a, b, ids) + loss_fn(b, a, ids)
    assert loss_fn.log_scale.item() == pytest.approx(math.log(used))  # the parameter itself is capped
    s = torch.tensor(used, requires_grad=True)
    ref = masked_infonce(a, b, ids, s) + masked_infonce(b, a, ids, s)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    loss.backward()
    ref.backward()
    # d loss / d log_scale = scale * d loss / d scale, at the cap too
    assert loss_fn.log_scale.grad.item() == pytest.approx(used * s.grad.item(), rel=1e-5)
    assert loss_fn.log_scale.grad.item() != 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_stable(dtype):
    torch.manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(64, 16), dim=-1)
    b = a.clone()  # perfect alignment drives logits to the scale limit
    ref = InfoNCELoss(0.01, max_scale=100.0)(a, b, torch.arange(64))
    out = InfoNCELoss(0.01, max_scale=100.0)(a.to(dtype), b.to(dtype), torch.arange(64))
    assert torch.isfinite(out) and out.dtype == torch.float32
    assert out.item() == pytest.approx(ref.item(), abs=2e-2)


def _worker(rank, world, port, x, y, ids, w, out):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    lin = torch.nn.Linear(x.size(1), 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    loss_fn = InfoNCELoss(0.07, learnable=True)
    shard = slice(rank * x.size(0) // world, (rank + 1) * x.size(0) // world)
    a = torch.nn.functional.normalize(lin(x[shard]), dim=-1)
    b = torch.nn.functional.normalize(y[shard], dim=-1)
    loss = loss_fn(a, b, ids[shard])
    loss.backward()
    grads = [lin.weight.grad, loss_fn.log_scale.grad]
    for g in grads:  # what DDP does: average gradients over ranks
        torch.distributed.all_reduce(g)
        g /= world
    out[rank] = (loss.item(), [g.clone() for g in grads])
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_on_the_concatenated_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 6), torch.randn(8, 4)
    ids = torch.tensor([0, 1, 1, 2, 3, 3, 3, 4])  # repeats across the rank boundary too
    w = torch.randn(4, 6)
    lin = torch.nn.Linear(6, 4, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    loss_fn = InfoNCELoss(0.07, learnable=True)
    ref = loss_fn(
        torch.nn.functional.normalize(lin(x), dim=-1), torch.nn.functional.normalize(y, dim=-1), ids
    )
    ref.backward()
    out = mp.Manager().dict()
    port = 29500 + os.getpid() % 1000
    mp.spawn(_worker, args=(2, port, x, y, ids, w, out), nprocs=2, join=True)
    for rank in range(2):
        loss, (gw, gs) = out[rank]
        assert loss == pytest.approx(ref.item(), rel=1e-5)
        torch.testing.assert_close(gw, lin.weight.grad, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(gs, loss_fn.log_scale.grad, rtol=1e-5, atol=1e-6)


def test_masked_pairs_do_not_change_with_batch_order():
    torch.manual_seed(1)
    a = torch.nn.functional.normalize(torch.randn(6, 5), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(6, 5), dim=-1)
    ids = torch.tensor([0, 0, 1, 2, 2, 3])
    perm = torch.randperm(6)
    s = torch.tensor(10.0)
    torch.testing.assert_close(masked_infonce(a, b, ids, s), masked_infonce(a[perm], b[perm], ids[perm], s))
