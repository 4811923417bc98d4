"""The softmax family (softmax, log_softmax, grouped_softmax, distillation_loss) on every backend that runs here,
against float64 references: values, gradients (input, learned temperature, teacher), special values, properties,
gradcheck / gradgradcheck, torch.compile, modules and bad inputs. The contract is docs/softmax_contract.md."""
import math
import warnings

import pytest
import torch
import torch.nn.functional as TF

import glo_kernels
from glo_kernels import reference
from helpers import assert_matches_reference, assert_same_bits, make_input, non_contiguous, seeded
from bounds import (distillation_bounds, softmax_backward_atol, softmax_forward_atol, softmax_tol, temperature_grad_atol,
                    row_scale as _row_scale_g)
from conftest import DTYPES

# (shape, dim): row lengths 1, 7, 33, 1000, 70000; contiguous (inner == 1) and strided (inner > 1) dims; 0-d, empty.
CASES = [
    ((1,), 0), ((7,), -1), ((3, 1), 1), ((5, 33), -1), ((4, 1000), 1), ((2, 3, 1000), -1), ((6, 7, 5), 1),
    ((300, 3), 0), ((2, 9, 4, 3), 2), ((), 0), ((0, 5), 1), ((3, 0), 1), ((2, 70000), -1),
]
TEMPERATURES = (1.0, 2.0, 0.05, 30.0)
SOFTMAXES = ("softmax", "log_softmax")


def _ids(case):
    shape, dim = case
    return ("x".join(map(str, shape)) or "scalar") + f"-d{dim}"


def _is_slow(name, shape, dtype):
    """Long rows under the Triton interpreter cost seconds: only float32 there."""
    n = math.prod(shape) if shape else 1
    return name == "triton" and n > 10000 and dtype != torch.float32


def _row_scale(t: torch.Tensor, dim: int) -> torch.Tensor:
    """max |t| over each row, broadcast back: the normwise error floor of row-wise ops."""
    return _row_scale_g(t, dim)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax_matches_reference(op, backend, dtype, case, layout):
    name, device = backend
    shape, dim = case
    if _is_slow(name, shape, dtype):
        pytest.skip("long rows run under the Triton interpreter in float32 only (time)")
    gen = seeded(op, name, str(dtype), shape, layout)
    fn, ref, eager = getattr(glo_kernels, op), getattr(reference, op), getattr(torch, op)
    for temperature in TEMPERATURES[:2] if math.prod(shape or (1,)) > 10000 else TEMPERATURES:
        x = make_input(shape, dtype, device, generator=gen)
        if layout == "strided":
            x = non_contiguous(x)
        x_before = x.clone()
        what = f"{op}[{name}, {dtype}, {shape}, dim={dim}, {layout}, T={temperature}]"
        xo = x.clone().requires_grad_()
        y = fn(xo, dim, temperature)
        dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
        (gx,) = torch.autograd.grad(y, xo, dy)
        assert_same_bits(x, x_before, f"{what}: input modified")

        x64 = x.detach().double().cpu().requires_grad_()
        y64 = ref(x64, dim, temperature)
        (g64,) = torch.autograd.grad(y64, x64, dy.double().cpu())
        xe = x.detach().cpu().clone().requires_grad_()
        ye = eager(xe / temperature, dim) if x.dim() > 0 else eager(xe.reshape(1) / temperature, 0).reshape(())
        (ge,) = torch.autograd.grad(ye, xe, dy.cpu())
        d = dim % max(x.dim(), 1)
        tol, log = softmax_tol(dtype), op == "log_softmax"
        assert_matches_reference(y, y64, dtype, eager=ye, rel=tol, what=f"{what} fwd",
                                 atol=softmax_forward_atol(x64, y64, d, temperature, dtype, log, backend=name))
        assert_matches_reference(gx, g64, dtype, eager=ge, rel=tol, what=f"{what} grad",
                                 atol=softmax_backward_atol(x64, y64, g64, dy, d, temperature, dtype, log, backend=name))


GROUP_CASES = [((4, 10), -1, [3, 1, 6]), ((2, 5, 3), 1, [2, 3]), ((3, 1000), 1, [1] * 10 + [490, 500]),
               ((2, 7), -1, [7]), ((0, 4), 1, [1, 3]), ((7,), 0, [1] * 7), ((2, 70000), -1, [69000, 1000])]


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("case", GROUP_CASES, ids=lambda c: "x".join(map(str, c[0])) + f"-d{c[1]}-g{len(c[2])}")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_grouped_softmax_matches_reference(backend, dtype, case, layout):
    name, device = backend
    shape, dim, groups = case
    if _is_slow(name, shape, dtype):
        pytest.skip("long rows run under the Triton interpreter in float32 only (time)")
    gen = seeded(name, str(dtype), shape, layout)
    x = make_input(shape, dtype, device, generator=gen)
    if layout == "strided":
        x = non_contiguous(x)
    xo = x.clone().requires_grad_()
    y = glo_kernels.grouped_softmax(xo, groups, dim, 1.5)
    dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
    (gx,) = torch.autograd.grad(y, xo, dy)
    x64 = x.detach().double().cpu().requires_grad_()
    y64 = reference.grouped_softmax(x64, groups, dim, 1.5)
    (g64,) = torch.autograd.grad(y64, x64, dy.double().cpu())
    xe = x.detach().cpu().clone().requires_grad_()
    ye = reference.grouped_softmax_eager(xe, groups, dim, 1.5)
    (ge,) = torch.autograd.grad(ye, xe, dy.cpu())
    tol, d = softmax_tol(dtype), dim % x.dim()
    what = f"grouped_softmax[{name}, {dtype}, {shape}, {groups[:4]}..., {layout}]"
    assert_matches_reference(y, y64, dtype, eager=ye, rel=tol, what=what,
                             atol=softmax_forward_atol(x64, y64, d, 1.5, dtype, False, groups, name))
    assert_matches_reference(gx, g64, dtype, eager=ge, rel=tol, what=what + " grad",
                             atol=softmax_backward_atol(x64, y64, g64, dy, d, 1.5, dtype, False, groups, name))
    if x.numel():  # every group sums to 1 (rows without NaN/inf): each y_j within tol y_j + its atol, summed exactly
        sums = torch.cat([p.double().sum(dim, keepdim=True) for p in y.split(groups, dim)], d)
        allowed = torch.cat([(tol * q.double().abs() + a).sum(dim, keepdim=True) for q, a in zip(
            y.detach().cpu().split(groups, dim), softmax_forward_atol(x64, y64, d, 1.5, dtype, False, groups, name).split(groups, dim))], d)
        ok = torch.isfinite(sums)
        assert ((sums[ok].cpu() - 1).abs() <= allowed[ok]).all(), f"{what}: a group does not sum to 1"


def test_special_rows(backend):
    """NaN or +inf in a row: NaN row; a row of -inf: NaN; -inf among finite values: 0 (log: -inf); huge logits and
    extreme temperatures stay finite; all of it as torch.softmax in float64."""
    name, device = backend
    inf, nan = float("inf"), float("nan")
    rows = torch.tensor([
        [1.0, 2.0, 3.0, -inf], [1.0, nan, 3.0, 0.0], [1.0, inf, 3.0, 0.0], [-inf, -inf, -inf, -inf],
        [1e4, -1e4, 1e4 - 1, 0.0], [-1e4, -1e4, -1e4 + 0.5, -1e4 + 2], [-0.0, 0.0, -0.0, 0.0], [inf, inf, 0.0, 1.0],
    ], dtype=torch.float64)
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        x = rows.to(dtype)
        for temperature in (1e-3, 1.0, 1e3):
            for op in SOFTMAXES:
                y = getattr(glo_kernels, op)(x.to(device), -1, temperature)
                y64 = getattr(torch, op)(x.double() / temperature, -1)
                assert_matches_reference(y, y64, dtype, rel=softmax_tol(dtype), what=f"{op}[{name}, {dtype}, T={temperature}]",
                                         atol=softmax_forward_atol(x.double(), y64, 1, temperature, dtype, op == "log_softmax", backend=name))
            y = glo_kernels.softmax(x.to(device), -1, temperature)
            assert torch.isfinite(y[4:7]).all(), "huge logits must stay finite"


@pytest.mark.parametrize("op", SOFTMAXES)
def test_properties(op, backend):
    """Rows sum to 1 (log: their exps), shift invariance, and a one-hot limit at tiny temperatures."""
    name, device = backend
    gen = torch.Generator().manual_seed(3)
    fn = getattr(glo_kernels, op)
    for scale, temperature in ((1.0, 1.0), (1e4, 1e-3), (1e4, 1e3), (3.0, 1e-3)):
        x = (torch.randn(16, 300, generator=gen) * scale).to(device)
        y = fn(x, -1, temperature)
        p = y.double().exp() if op == "log_softmax" else y.double()
        torch.testing.assert_close(p.sum(-1), torch.ones(16, dtype=torch.float64, device=device), rtol=0, atol=1e-5)
    # shift invariance: x and x + c hold exact values (multiples of 1/8), so both rows are the same function values
    x = (torch.randint(-80, 80, (8, 257), generator=gen).float() / 8).to(device)
    for c in (1000.0, -512.0):
        torch.testing.assert_close(fn(x + c, -1, 2.0), fn(x, -1, 2.0), rtol=1e-6, atol=1e-6)
    # T -> 0: the row's maximum gets probability 1
    x = torch.randn(8, 50, generator=gen).to(device)
    y = glo_kernels.softmax(x, -1, 1e-3)
    assert torch.equal(y.argmax(-1), x.argmax(-1)) and (y.amax(-1) > 0.999).all()


@pytest.mark.parametrize("op", SOFTMAXES + ("grouped_softmax",))
def test_learned_temperature(op, backend):
    """A temperature tensor that requires grad gets dL/dT (also in float32 and on a 1-element tensor)."""
    name, device = backend
    for dtype, tshape in ((torch.float64, ()), (torch.float32, (1,)), (torch.bfloat16, ())):
        gen = seeded("learned-temperature", op, name, str(dtype))
        x = make_input((5, 12), dtype, device, specials=False, generator=gen, scale=2.0)
        dy = make_input((5, 12), dtype, device, specials=False, generator=gen, scale=1.0)
        tdtype = torch.float32 if dtype != torch.float64 else dtype
        t = torch.full(tshape, 1.7, dtype=tdtype, device=device)
        args = ([4, 8],) if op == "grouped_softmax" else ()
        groups = args[0] if args else None
        xo, to = x.clone().requires_grad_(), t.clone().requires_grad_()
        y = getattr(glo_kernels, op)(xo, *args, -1, to)
        gx, gt = torch.autograd.grad(y, [xo, to], dy)
        x64, t64 = x.double().cpu().requires_grad_(), t.double().cpu().requires_grad_()
        y64 = getattr(reference, op)(x64, *args, -1, t64)
        gx64, gt64 = torch.autograd.grad(y64, [x64, t64], dy.double().cpu())
        assert gt.shape == t.shape and gt.dtype == t.dtype
        what, tol, log = f"{op}[{name}, {dtype}, learned T]", softmax_tol(dtype), op == "log_softmax"
        T = float(t.reshape(()).item())  # (1.7 rounded to the temperature's dtype)
        assert_matches_reference(y, y64, dtype, rel=tol, what=what + " fwd",
                                 atol=softmax_forward_atol(x64, y64, 1, T, dtype, log, groups, name))
        atol_g = softmax_backward_atol(x64, y64, gx64, dy, 1, T, dtype, log, groups, name)
        assert_matches_reference(gx, gx64, dtype, rel=tol, atol=atol_g, what=what + " grad x")
        assert_matches_reference(gt, gt64, tdtype, rel=2 * softmax_tol(tdtype), what=what + " grad T",
                                 atol=temperature_grad_atol(x64, gx64, atol_g, 1, T, dtype, groups))
        # A CPU temperature tensor that does not require grad acts as the number it holds: the same bits.
        assert_same_bits(getattr(glo_kernels, op)(x, *args, -1, t.detach().cpu()),
                         getattr(glo_kernels, op)(x, *args, -1, T), f"{what}: T as a CPU tensor")


REDUCTIONS = ("batchmean", "sum", "mean", "none")
DISTILL_SHAPES = [(4, 7), (3, 5, 33), (2, 1000), (1, 1), (5,), (0, 5), (3, 0), (2, 70000)]


@pytest.mark.parametrize("shape", DISTILL_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
def test_distillation_matches_kl_div(backend, dtype, shape):
    name, device = backend
    if _is_slow(name, shape, dtype):
        pytest.skip("long rows run under the Triton interpreter in float32 only (time)")
    gen = seeded(name, str(dtype), shape)
    for i, reduction in enumerate(REDUCTIONS):
        temperature = (1.0, 4.0, 0.5, 2.0)[i]
        s = make_input(shape, dtype, device, specials=False, generator=gen)
        t = make_input(shape, dtype, device, specials=False, generator=gen)
        if i % 2:
            s = non_contiguous(s)
        so, to = s.clone().requires_grad_(), t.clone().requires_grad_()
        loss = glo_kernels.distillation_loss(so, to, temperature, reduction)
        g = make_input(loss.shape, dtype, device, specials=False, generator=gen)
        gs, gt = torch.autograd.grad(loss, [so, to], g)
        s64, t64 = s.double().cpu().requires_grad_(), t.double().cpu().requires_grad_()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # F.kl_div's notice about "mean"
            ref = TF.kl_div(TF.log_softmax(s64 / temperature, -1), TF.softmax(t64 / temperature, -1),
                            reduction=reduction) * temperature**2
        gs64, gt64 = torch.autograd.grad(ref, [s64, t64], g.double().cpu()) if s.numel() else (s64, t64)
        what = f"distillation_loss[{name}, {dtype}, {shape}, {reduction}, T={temperature}]"
        assert loss.shape == ref.shape and loss.dtype == dtype, what
        # The loss sums terms of both signs whose logs share each row's log Z: bounds.distillation_bounds derives the
        # error from the terms' pieces and the row and reduction sums (the root of a CI failure at 2 x 70000 float32:
        # Z's rounding over 70000 exps moves every log of the row together, so the error grows with the KL).
        b = distillation_bounds(s64, t64, temperature, reduction, dtype, grad=g, backend=name)
        assert_matches_reference(loss, ref, dtype, rel=b.rel, atol=b.loss, what=what)
        if s.numel():
            assert_matches_reference(gs, gs64, dtype, rel=b.rel, atol=b.student, what=f"{what} d student")
            assert_matches_reference(gt, gt64, dtype, rel=b.rel, atol=b.teacher, what=f"{what} d teacher")


def test_distillation_teacher_without_grad_and_extremes(backend):
    name, device = backend
    s = torch.tensor([[1e4, -1e4, 0.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]], device=device)
    t = torch.tensor([[1e4, -1e4, 1.0], [5.0, 5.0, 5.0], [1.0, 2.0, 3.0]], device=device)
    for temperature in (1e-3, 1.0, 1e3):
        so = s.clone().requires_grad_()
        loss = glo_kernels.distillation_loss(so, t, temperature, "none")
        ref = TF.kl_div(TF.log_softmax(s.double() / temperature, -1), TF.softmax(t.double() / temperature, -1),
                        reduction="none") * temperature**2
        assert torch.isfinite(loss).all()
        torch.testing.assert_close(loss.double().cpu(), ref.cpu(), rtol=1e-4, atol=1e-4 * max(temperature**2, 1))
        assert (loss[1:].abs() <= 1e-5 * max(temperature**2, 1)).all(), "equal rows have zero loss"
        (gs,) = torch.autograd.grad(loss.sum(), so)
        assert torch.isfinite(gs).all()
    # teacher -inf entries: p = 0 there, terms are 0 (as xlogy), not NaN
    t2 = torch.tensor([[0.0, -float("inf"), 1.0]], device=device)
    s2 = torch.tensor([[0.5, 0.1, 0.3]], device=device)
    loss = glo_kernels.distillation_loss(s2, t2, 1.0, "sum")
    ref = TF.kl_div(TF.log_softmax(s2.double().cpu(), -1), TF.softmax(t2.double().cpu(), -1), reduction="sum")
    torch.testing.assert_close(loss.double().cpu(), ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=lambda d: str(d).replace("torch.", ""))
def test_distillation_inf_term_dropped_by_a_later_max(backend, dtype):
    """A student -inf (log q_j = -inf) early in a row whose teacher max comes later and is so large that p_j
    underflows to exactly 0: the term is 0 (docs/softmax_contract.md), not 0 * inf. The online forms rescale the term's
    running sum by exp((m_old - m_new) / T) = 0 there (GLO_TEST_SEED=661150937 found the CPU kernel giving NaN).
    A second row, whose p_j at the -inf stays > 0, has KL = +inf."""
    name, device = backend
    cols = 4097  # past the CPU kernels' first 4096-element chunk, and past one block of the Triton/CUDA loops
    gen = seeded(name, str(dtype), "inf term")
    s = make_input((2, cols), dtype, "cpu", specials=False, generator=gen)
    t = make_input((2, cols), dtype, "cpu", specials=False, generator=gen)
    s[:, 0] = -math.inf
    t[0, -1] = 1e4  # row 0: p_0 = exp((t_0 - 1e4) / T) / Z_t = 0, in float64 too
    s64, t64 = s.double(), t.double()
    p_min = 0.0 if dtype == torch.float64 else 2.0**-149  # (the reference's zero for float32 kernels, as test_fuzz)
    for reduction in ("none", "sum"):
        what = f"distillation_loss[{name}, {dtype}, {reduction}]"
        so, to = s[:1].to(device).requires_grad_(), t[:1].to(device).requires_grad_()
        loss = glo_kernels.distillation_loss(so, to, 1.0, reduction)
        ref = reference.distillation_loss(s64[:1], t64[:1], 1.0, reduction, p_min=p_min)
        assert torch.isfinite(loss).all(), f"{what}: row 0 {loss.sum().item()}"
        b = distillation_bounds(s64[:1], t64[:1], 1.0, reduction, dtype, backend=name)
        assert_matches_reference(loss, ref, dtype, rel=b.rel, atol=b.loss, what=what)
        gs, gt = torch.autograd.grad(loss.sum(), [so, to])
        assert torch.isfinite(gs).all() and torch.isfinite(gt).all(), f"{what}: gradients of row 0 not finite"
        both = glo_kernels.distillation_loss(s.to(device), t.to(device), 1.0, reduction)
        assert both[1:].sum().item() == math.inf if reduction == "none" else both.item() == math.inf, \
            f"{what}: row 1's KL is +inf"


def _fast(name, device):
    return name == "triton" and device == "cpu"


@pytest.mark.parametrize("op", SOFTMAXES + ("grouped_softmax",))
def test_gradcheck_softmax(op, backend):
    name, device = backend
    gen = torch.Generator().manual_seed(5)
    args = ([2, 1, 3],) if op == "grouped_softmax" else ()
    fn = getattr(glo_kernels, op)
    for shape, dim in (((3, 6), 1), ((6, 2, 3), 0)):
        x = torch.randn(shape, dtype=torch.float64, generator=gen).to(device).requires_grad_()
        t = torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True)
        f = lambda x, t: fn(x, *args, dim, t)  # noqa: E731
        assert torch.autograd.gradcheck(f, (x, t), fast_mode=_fast(name, device))
        assert torch.autograd.gradgradcheck(f, (x, t), fast_mode=_fast(name, device))
        g = lambda x: fn(x, *args, dim, 2.5)  # noqa: E731
        assert torch.autograd.gradcheck(g, (x,), fast_mode=_fast(name, device))
        assert torch.autograd.gradgradcheck(g, (x,), fast_mode=_fast(name, device))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_gradcheck_distillation(reduction, backend):
    name, device = backend
    gen = torch.Generator().manual_seed(6)
    s = torch.randn(3, 5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    t = torch.randn(3, 5, dtype=torch.float64, generator=gen).to(device).requires_grad_()
    f = lambda s, t: glo_kernels.distillation_loss(s, t, 1.7, reduction)  # noqa: E731
    assert torch.autograd.gradcheck(f, (s, t), fast_mode=_fast(name, device))
    assert torch.autograd.gradgradcheck(f, (s, t), fast_mode=_fast(name, device))
    h = lambda s: glo_kernels.distillation_loss(s, t.detach(), 0.6, reduction)  # noqa: E731
    assert torch.autograd.gradgradcheck(h, (s,), fast_mode=_fast(name, device))


class _Student(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 10)
        self.soft = glo_kernels.nn.Softmax(dim=-1, temperature=torch.nn.Parameter(torch.tensor(2.0)))
        self.logsoft = glo_kernels.nn.LogSoftmax(dim=1, temperature=0.5)
        self.group = glo_kernels.nn.GroupedSoftmax([3, 7], dim=-1)
        self.distill = glo_kernels.nn.DistillationLoss(temperature=3.0)

    def forward(self, x, teacher):
        h = self.lin(x)
        return (self.soft(h).square().sum() + self.logsoft(h).mean() + self.group(h).pow(3).sum()
                + self.distill(h, teacher))


def _compiled_matches_eager(device, compile_backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = _Student().to(device)
    x, teacher = torch.randn(6, 12, device=device), torch.randn(6, 10, device=device)
    out = model(x, teacher)
    grads = torch.autograd.grad(out, list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend=compile_backend)
    out_c = compiled(x, teacher)
    grads_c = torch.autograd.grad(out_c, list(model.parameters()))
    torch.testing.assert_close(out_c, out)
    for g, gc in zip(grads, grads_c):
        torch.testing.assert_close(gc, g)


def test_torch_compile_fullgraph(backend):
    """Softmax with a learned temperature, log-softmax, grouped softmax and the distillation loss trace with no graph
    break; compiled values and gradients equal eager ones."""
    _compiled_matches_eager(backend[1], "aot_eager")


def test_torch_compile_inductor_cpu():
    with glo_kernels.use_backend("cpu"):
        _compiled_matches_eager("cpu", "inductor")


def test_modules_match_torch_nn(backend):
    device = backend[1]
    torch.manual_seed(1)
    for ours_cls, torch_cls in ((glo_kernels.nn.Softmax, torch.nn.Softmax),
                                (glo_kernels.nn.LogSoftmax, torch.nn.LogSoftmax)):
        for shape in ((5,), (3, 4), (2, 3, 4), (2, 3, 4, 5)):
            x = torch.randn(shape, device=device)
            for dim in (None, 0, -1):
                with warnings.catch_warnings(record=True) as w_ours:
                    warnings.simplefilter("always")
                    y = ours_cls(dim)(x)
                with warnings.catch_warnings(record=True) as w_torch:
                    warnings.simplefilter("always")
                    yt = torch_cls(dim)(x)
                torch.testing.assert_close(y, yt, rtol=1e-5, atol=1e-6)
                implicit = lambda ws: [w for w in ws if "Implicit dimension" in str(w.message)]  # noqa: E731
                assert len(implicit(w_ours)) == len(implicit(w_torch)), "dim=None warns as torch.nn does"
        m = ours_cls(1)
        assert isinstance(m, torch_cls) and m.state_dict().keys() == torch_cls(1).state_dict().keys()
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Softmax(dim=1), torch.nn.LogSoftmax(dim=0))
    glo_kernels.nn.replace_activations(model)
    assert type(model[1]) is glo_kernels.nn.Softmax and model[1].dim == 1
    assert type(model[2]) is glo_kernels.nn.LogSoftmax and model[2].dim == 0
    loss = glo_kernels.nn.DistillationLoss(2.0, "sum")
    s, t = torch.randn(3, 5, device=device), torch.randn(3, 5, device=device)
    torch.testing.assert_close(loss(s, t), reference.distillation_loss(s, t, 2.0, "sum"), rtol=1e-5, atol=1e-6)


BAD_TEMPERATURES = (0.0, -1.0, float("nan"), float("inf"))


def test_bad_inputs(backend):
    device = backend[1]
    x = torch.randn(3, 4, device=device)
    for op in ("softmax", "log_softmax"):
        fn = getattr(glo_kernels, op)
        for bad in BAD_TEMPERATURES:
            with pytest.raises(ValueError, match="argument 'temperature'"):
                fn(x, -1, bad)
            with pytest.raises(ValueError, match="argument 'temperature'"):
                fn(x, -1, torch.tensor(bad))
        with pytest.raises(ValueError, match="argument 'temperature'"):
            fn(x, -1, torch.ones(2))
        with pytest.raises(ValueError, match="argument 'dim'"):
            fn(x, 2)
        with pytest.raises(TypeError, match="argument 'x'"):
            fn(torch.ones(3, dtype=torch.int64))
    for bad in ([1, 2], [2, 2, 1], [4, 0], []):
        with pytest.raises(ValueError, match="argument 'group_sizes'"):
            glo_kernels.grouped_softmax(x, bad)
    with pytest.raises(ValueError, match="argument 'temperature'"):
        glo_kernels.grouped_softmax(x, [4], -1, 0.0)
    t = torch.randn(3, 4, device=device)
    with pytest.raises(ValueError, match="argument 'teacher'"):
        glo_kernels.distillation_loss(x, torch.randn(3, 5, device=device))
    with pytest.raises(TypeError, match="argument 'teacher'"):
        glo_kernels.distillation_loss(x, t.double())
    with pytest.raises(ValueError, match="argument 'reduction'"):
        glo_kernels.distillation_loss(x, t, 1.0, "avg")
    for bad in BAD_TEMPERATURES:
        with pytest.raises(ValueError, match="argument 'temperature'"):
            glo_kernels.distillation_loss(x, t, bad)
    with pytest.raises(ValueError, match="argument 'student'"):
        glo_kernels.distillation_loss(torch.tensor(1.0), torch.tensor(1.0))


def test_registered_ops_check_their_arguments():
    """The operators themselves (below the Python checks) refuse bad arguments with the argument's name."""
    ops = torch.ops.glo_kernels
    x = torch.randn(3, 4)
    with pytest.raises(RuntimeError, match="argument 'temperature' must be a finite number > 0"):
        ops.softmax(x, -1, 0.0, None)
    with pytest.raises(RuntimeError, match="argument 'dim'"):
        ops.log_softmax(x, 3, 1.0, None)
    with pytest.raises(RuntimeError, match="argument 'group_sizes'"):
        ops.grouped_softmax(x, [1, 2], -1, 1.0, None)
    with pytest.raises(RuntimeError, match="argument 'temperature_tensor'"):
        ops.softmax(x, -1, 1.0, torch.ones(2))
    with pytest.raises(RuntimeError, match="argument 'y'"):
        ops.softmax_backward(x, torch.randn(3, 5), -1, 1.0, None)
    with pytest.raises(RuntimeError, match="argument 'reduction'"):
        ops.distillation_loss(x, x, 1.0, "avg")
    with pytest.raises(RuntimeError, match="argument 'stats'"):
        ops.distillation_loss_backward(torch.ones(()), x, x, torch.zeros(3, 4), 1.0, "sum", False)
