"""Whole models on glo_kernels modules: a torchvision ResNet-18 after replace_activations, and DDP training.

(a) ResNet-18 (float64, train mode, so BatchNorm uses batch statistics and updates its running buffers): the model
    with its ReLUs swapped for glo_kernels.nn.ReLU gives the outputs, loss, parameter gradients and, after an SGD
    step, the parameters and buffers of the torch.nn model; and it runs under
    torch.compile(fullgraph=True, backend="aot_eager") with the same outputs and gradients.
(b) A small MLP with glo_kernels.nn.PReLU / ELU / LogSoftmax and glo_kernels.distillation_loss in the loss, trained
    under DistributedDataParallel (gloo, two processes on this machine, each with half of a fixed batch): the
    parameters stay identical across ranks and equal those of a single-process run on the whole batch.
    The ranks run this file as a script (``python tests/test_models.py --ddp-worker RANK WORLD INIT_FILE OUT``).
(c) A GPT-2-style MLP block with nn.GELU (tanh and erf forms) swapped by replace_activations: a float64 training
    step as the torch.nn block's, and the same under torch.compile(fullgraph=True, backend="aot_eager").
(d) A LLaMA-style MLP block with glo_kernels.nn.SwiGLU (fused up projection, and gate / up projections apart): a
    float64 training step as the torch.nn block's (F.silu(a) * b), and the same compiled.
"""
from __future__ import annotations

import copy
import datetime
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import glo_kernels as gk

# ---------------------------------------------------------------------------------------------------------------
# (a) torchvision ResNet-18
# ---------------------------------------------------------------------------------------------------------------
TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def _train_step(model, x, y, lr=0.1):
    """One SGD step (momentum 0.9, weight decay 5e-4); returns (logits, loss, {name: grad})."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    opt.zero_grad()
    out = model(x)
    loss = F.cross_entropy(out, y)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()
    return out.detach(), loss.detach(), grads


def _assert_same_state(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], **TIGHT, msg=lambda m, k=k: f"{k}: {m}")


def _assert_compiled_step_matches(base, x, y, out_ref):
    """torch.compile(fullgraph=True, backend="aot_eager") of the swapped model: the whole model as one graph, from
    base's initial state; its outputs, loss, gradients and state after a step as the eager swapped model's."""
    eager = gk.nn.replace_activations(copy.deepcopy(base))
    compiled_module = gk.nn.replace_activations(copy.deepcopy(base))
    torch._dynamo.reset()
    compiled = torch.compile(compiled_module, backend="aot_eager", fullgraph=True)
    out_e, loss_e, grads_e = _train_step(eager, x, y)
    out_c, loss_c, grads_c = _train_step(compiled, x, y)
    torch.testing.assert_close(out_c, out_e, **TIGHT)
    torch.testing.assert_close(out_c, out_ref, **TIGHT)
    torch.testing.assert_close(loss_c, loss_e, **TIGHT)
    assert grads_c.keys() == {f"_orig_mod.{n}" for n in grads_e} or grads_c.keys() == grads_e.keys()
    for n in grads_e:
        gc = grads_c.get(n, grads_c.get(f"_orig_mod.{n}"))
        torch.testing.assert_close(gc, grads_e[n], **TIGHT, msg=lambda m, n=n: f"compiled grad of {n}: {m}")
    _assert_same_state(eager, compiled_module)
    torch._dynamo.reset()


def test_resnet18_replace_activations_matches_torch_and_compiles():
    import torchvision  # noqa: PLC0415  (only this test needs it)

    torch.manual_seed(0)
    ref = torchvision.models.resnet18(weights=None, num_classes=10).to(torch.float64).train()
    base = copy.deepcopy(ref)
    ours = gk.nn.replace_activations(copy.deepcopy(ref))

    # every torch.nn.ReLU became a glo_kernels.nn.ReLU with the same inplace flag; nothing else changed
    ref_relus = {n: m for n, m in ref.named_modules() if isinstance(m, torch.nn.ReLU)}
    our_relus = {n: m for n, m in ours.named_modules() if isinstance(m, torch.nn.ReLU)}
    assert len(ref_relus) == 9 and ref_relus.keys() == our_relus.keys()  # the stem + one per BasicBlock
    for n, m in our_relus.items():
        assert type(m) is gk.nn.ReLU, n
        assert type(ref_relus[n]) is torch.nn.ReLU
        assert m.inplace == ref_relus[n].inplace is True, n
        assert m.training
    assert [type(m) for m in ref.modules() if not isinstance(m, torch.nn.ReLU)] == \
        [type(m) for m in ours.modules() if not isinstance(m, torch.nn.ReLU)]
    _assert_same_state(ref, ours)

    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    y = torch.tensor([3, 7])

    out_ref, loss_ref, grads_ref = _train_step(ref, x, y)
    out_ours, loss_ours, grads_ours = _train_step(ours, x, y)
    torch.testing.assert_close(out_ours, out_ref, **TIGHT)
    torch.testing.assert_close(loss_ours, loss_ref, **TIGHT)
    assert grads_ours.keys() == grads_ref.keys() and len(grads_ref) == 62
    for n in grads_ref:
        assert grads_ref[n].abs().sum() > 0, n  # a real gradient everywhere
        torch.testing.assert_close(grads_ours[n], grads_ref[n], **TIGHT, msg=lambda m, n=n: f"grad of {n}: {m}")
    _assert_same_state(ref, ours)  # parameters after the SGD step, and BatchNorm's running buffers

    # torch.compile: the whole swapped model as one graph; outputs and gradients as eager
    _assert_compiled_step_matches(base, x, y, out_ref)


# ---------------------------------------------------------------------------------------------------------------
# (c) A GPT-2-style block (pre-LayerNorm MLP with a residual: Linear(d, 4d) -> GELU -> Linear(4d, d)), torch.nn and
#     after replace_activations, in a float64 training step and under torch.compile(fullgraph=True)
# ---------------------------------------------------------------------------------------------------------------
class _GPT2MLP(torch.nn.Module):
    def __init__(self, d: int, approximate: str):
        super().__init__()
        self.ln = torch.nn.LayerNorm(d)
        self.fc = torch.nn.Linear(d, 4 * d)
        self.act = torch.nn.GELU(approximate=approximate)
        self.proj = torch.nn.Linear(4 * d, d)
        self.head = torch.nn.Linear(d, 5)

    def forward(self, x):
        x = x + self.proj(self.act(self.fc(self.ln(x))))
        return self.head(x).mean(dim=1)


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_gpt2_mlp_block_replace_activations_matches_torch_and_compiles(approximate):
    torch.manual_seed(0)
    ref = _GPT2MLP(16, approximate).to(torch.float64).train()
    base = copy.deepcopy(ref)
    ours = gk.nn.replace_activations(copy.deepcopy(ref))
    assert type(ours.act) is gk.nn.GELU and ours.act.approximate == approximate
    assert repr(ours.act) == repr(ref.act)
    _assert_same_state(ref, ours)

    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 7, 16, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1, 4])
    out_ref = _assert_step_matches(ref, ours, x, y)
    _assert_compiled_step_matches(base, x, y, out_ref)


def _assert_step_matches(ref, ours, x, y):
    """One SGD step of both models on (x, y): the same outputs, loss, (non-zero) gradients and state after it.
    Returns the outputs."""
    out_ref, loss_ref, grads_ref = _train_step(ref, x, y)
    out_ours, loss_ours, grads_ours = _train_step(ours, x, y)
    torch.testing.assert_close(out_ours, out_ref, **TIGHT)
    torch.testing.assert_close(loss_ours, loss_ref, **TIGHT)
    assert grads_ours.keys() == grads_ref.keys()
    for n in grads_ref:
        assert grads_ref[n].abs().sum() > 0, n
        torch.testing.assert_close(grads_ours[n], grads_ref[n], **TIGHT, msg=lambda m, n=n: f"grad of {n}: {m}")
    _assert_same_state(ref, ours)
    return out_ref


# ---------------------------------------------------------------------------------------------------------------
# (d) A LLaMA-style MLP block (RMSNorm, Linear(d, 2h) -> SwiGLU -> Linear(h, d), residual): torch.nn has no SwiGLU
# module, so the torch.nn block computes F.silu(a) * b itself; ours holds glo_kernels.nn.SwiGLU. Also with the gate
# and up projections kept apart (LLaMA's gate_proj / up_proj), through the two-tensor form.
# ---------------------------------------------------------------------------------------------------------------
class _LlamaMLP(torch.nn.Module):
    def __init__(self, d: int, h: int, fused: bool, act: torch.nn.Module | None):
        super().__init__()
        self.norm = torch.nn.RMSNorm(d)
        self.fused = fused
        if fused:
            self.up = torch.nn.Linear(d, 2 * h, bias=False)
        else:
            self.gate_proj = torch.nn.Linear(d, h, bias=False)
            self.up_proj = torch.nn.Linear(d, h, bias=False)
        self.act = act  # None: torch's composite
        self.down = torch.nn.Linear(h, d, bias=False)
        self.head = torch.nn.Linear(d, 5)

    def forward(self, x):
        n = self.norm(x)
        if self.act is not None and self.fused:  # the one-tensor form: SwiGLU splits the projection itself
            m = self.act(self.up(n))
        else:
            a, b = self.up(n).chunk(2, dim=-1) if self.fused else (self.gate_proj(n), self.up_proj(n))
            m = F.silu(a) * b if self.act is None else self.act(a, b)
        return self.head(x + self.down(m)).mean(dim=1)


@pytest.mark.parametrize("fused", [True, False], ids=["fused-up", "gate-and-up"])
def test_llama_mlp_block_swiglu_matches_torch_and_compiles(fused):
    torch.manual_seed(0)
    ref = _LlamaMLP(16, 24, fused, None).to(torch.float64).train()
    ours = copy.deepcopy(ref)
    ours.act = gk.nn.SwiGLU()
    _assert_same_state(ref, ours)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 7, 16, generator=g, dtype=torch.float64) * 2
    y = torch.tensor([0, 3, 1, 4])
    base = copy.deepcopy(ours)
    out_ref = _assert_step_matches(ref, ours, x, y)
    _assert_compiled_step_matches(base, x, y, out_ref)


# ---------------------------------------------------------------------------------------------------------------
# (b) DistributedDataParallel on gloo, two processes
# ---------------------------------------------------------------------------------------------------------------
WORLD = 2
BATCH = 16  # split in WORLD equal shards: the mean of the shards' mean losses is the mean loss of the batch
STEPS = 5
TEMPERATURE = 2.0
DDP_TIMEOUT_S = 90


def _ddp_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16), gk.nn.PReLU(16, init=0.2),
        torch.nn.Linear(16, 16), gk.nn.ELU(alpha=0.7),
        torch.nn.Linear(16, 5),
    ).to(torch.float64)


def _ddp_batch():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(BATCH, 8, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (BATCH,), generator=g)
    teacher = 3 * torch.randn(BATCH, 5, generator=g, dtype=torch.float64)
    return x, y, teacher


_LOG_SOFTMAX = gk.nn.LogSoftmax(dim=1, temperature=1.5)


def _ddp_loss(model, x, y, teacher):
    """Mean over the rows given: cross-entropy with a tempered glo_kernels LogSoftmax + a distillation term."""
    logits = model(x)
    return F.nll_loss(_LOG_SOFTMAX(logits), y) + 0.5 * gk.distillation_loss(logits, teacher, TEMPERATURE)


def _optimizer(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def _ddp_worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist  # noqa: PLC0415
    from torch.nn.parallel import DistributedDataParallel  # noqa: PLC0415

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    try:
        model = DistributedDataParallel(_ddp_model())
        opt = _optimizer(model)
        x, y, teacher = _ddp_batch()
        shard = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        losses = []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = _ddp_loss(model, x[shard], y[shard], teacher[shard])
            loss.backward()  # DDP all-reduces and averages the gradients over the ranks
            opt.step()
            losses.append(loss.item())
        flat = torch.nn.utils.parameters_to_vector(model.module.parameters()).detach()
        gathered = [torch.empty_like(flat) for _ in range(world)]
        dist.all_gather(gathered, flat)
        torch.save({"state": model.module.state_dict(), "gathered": gathered, "losses": losses}, out)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_ddp_gloo_two_processes_matches_single_process(tmp_path):
    init_file = str(tmp_path / "ddp_init")
    outs = [str(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # the loopback interface: no network needed
    env["OMP_NUM_THREADS"] = "1"
    procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ddp-worker", str(r), str(WORLD),
                               init_file, outs[r]], cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for r in range(WORLD)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=DDP_TIMEOUT_S)[0])
    finally:
        for p in procs:
            if p.poll() is None:  # a hung rank: kill it rather than hang the test run
                p.kill()
                p.communicate()
    for r, p in enumerate(procs):
        assert p.returncode == 0, f"rank {r} failed (rc {p.returncode}):\n{logs[r] if r < len(logs) else ''}"

    # the single-process reference: the same initial model and optimizer, the whole batch, the mean loss
    ref = _ddp_model()
    opt = _optimizer(ref)
    x, y, teacher = _ddp_batch()
    for _ in range(STEPS):
        opt.zero_grad()
        _ddp_loss(ref, x, y, teacher).backward()
        opt.step()
    init = torch.nn.utils.parameters_to_vector(_ddp_model().parameters())
    ref_flat = torch.nn.utils.parameters_to_vector(ref.parameters()).detach()
    assert (ref_flat - init).abs().max() > 1e-3  # training moved the parameters

    results = [torch.load(o) for o in outs]
    for res in results:
        g0, g1 = res["gathered"]
        assert torch.equal(g0, g1), "the ranks' parameters differ"
        assert all(torch.isfinite(torch.tensor(res["losses"])))
    assert torch.equal(results[0]["gathered"][0], results[1]["gathered"][0])
    assert results[0]["losses"] != results[1]["losses"]  # the ranks really saw different shards
    for k, v in ref.state_dict().items():
        for r, res in enumerate(results):
            assert torch.equal(res["state"][k], results[0]["state"][k]), (k, r)
            torch.testing.assert_close(res["state"][k], v, rtol=1e-10, atol=1e-12, msg=lambda m, k=k: f"{k}: {m}")


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--ddp-worker":
        _ddp_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        sys.exit(f"usage: python {sys.argv[0]} --ddp-worker RANK WORLD INIT_FILE OUT (run by pytest)")
