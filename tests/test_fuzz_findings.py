"""What the property-based fuzzing (tests/test_fuzz.py) found, as fixed examples on every backend.

Hypothesis deletes a saved example from tests/hypothesis-db/ once it passes, so each finding that led to a fix is kept
here as a plain test that fails without that fix. Expected values follow docs/softmax_contract.md.
"""
import math

import pytest
import torch
import torch.nn.functional as F

import glo_kernels

INF, NAN = math.inf, math.nan
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's inf/NaN notices in the Triton interpreter


def _loss_and_grads(s, t, temperature, reduction):
    s = s.clone().requires_grad_()
    t = t.clone().requires_grad_()
    loss = glo_kernels.distillation_loss(s, t, temperature, reduction)
    gs, gt = torch.autograd.grad(loss, [s, t], torch.ones_like(loss))
    return loss.detach(), gs, gt


@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean"])
@pytest.mark.parametrize("bad", [NAN, INF])
def test_distillation_nan_student_row_is_nan_also_where_teacher_probability_is_zero(backend, reduction, bad):
    """A student row holding NaN (or +inf) is NaN in every output of that row, also where the teacher's probability
    underflows to 0 (the kernels used to write 0 there: a NaN silently dropped). The other row is unaffected."""
    _, device = backend
    s = torch.tensor([[bad, 0.0, 1.0], [0.5, 0.0, 1.0]], device=device)
    t = torch.tensor([[0.0, -1e4, 1.0], [0.0, -1e4, 1.0]], device=device)  # p = 0 at column 1
    loss, gs, gt = _loss_and_grads(s, t, 1.0, reduction)
    if reduction == "none":
        assert torch.isnan(loss[0]).all(), loss
        assert torch.isfinite(loss[1]).all() and loss[1, 1] == 0, loss
    else:
        assert torch.isnan(loss), loss
    assert torch.isnan(gs[0]).all() and torch.isnan(gt[0]).all(), (gs, gt)
    if reduction == "none":  # (a reduced loss is NaN: every gradient of it is NaN)
        assert torch.isfinite(gs[1]).all() and torch.isfinite(gt[1]).all() and gt[1, 1] == 0, (gs, gt)


@pytest.mark.parametrize("reduction", ["none", "sum", "batchmean"])
def test_distillation_teacher_grad_where_teacher_probability_underflows(backend, reduction):
    """p_j underflows to 0: that term and its gradients are 0, and the rest of the row's teacher gradient is finite
    (the reference backend used F.kl_div, whose xlogy derivative log 0 + 1 made the whole row NaN)."""
    _, device = backend
    s = torch.tensor([[4.623, -0.8803, 0.25]], device=device)
    t = torch.tensor([[30.0, -90.0, 29.0]], device=device)  # p_1 = exp(-120) = 0 in float32
    loss, gs, gt = _loss_and_grads(s, t, 1.0, reduction)
    s64, t64 = s.double().cpu().requires_grad_(), t.double().cpu().requires_grad_()
    p = torch.softmax(t64, -1)
    kl = p * (torch.log_softmax(t64, -1) - torch.log_softmax(s64, -1))
    ref = kl if reduction == "none" else kl.sum()
    gs64, gt64 = torch.autograd.grad(ref, [s64, t64], torch.ones_like(ref))
    torch.testing.assert_close(loss.cpu().double(), ref.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gs.cpu().double(), gs64, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gt.cpu().double(), gt64, rtol=1e-5, atol=1e-6)
    assert gt[0, 1] == 0


def test_distillation_minus_inf_in_student_and_teacher_at_one_position(backend):
    """s_j = t_j = -inf: p_j = 0, so the term is 0, not 0 * (-inf - -inf) = NaN (the reference backend gave NaN)."""
    _, device = backend
    s = torch.tensor([[0.5, -INF, 0.3]], device=device)
    t = torch.tensor([[0.0, -INF, 1.0]], device=device)
    loss, gs, gt = _loss_and_grads(s, t, 1.0, "sum")
    s2, t2 = s[:, [0, 2]], t[:, [0, 2]]  # the same loss without the -inf column
    loss2, gs2, gt2 = _loss_and_grads(s2, t2, 1.0, "sum")
    torch.testing.assert_close(loss, loss2)
    torch.testing.assert_close(gs[:, [0, 2]], gs2)
    torch.testing.assert_close(gt[:, [0, 2]], gt2)
    assert gs[0, 1] == 0 and gt[0, 1] == 0


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_large_logits_small_temperature(backend, op):
    """|x| / T beyond the float32 range: (x - max) / T is formed, never x / T (the reference backend gave NaN)."""
    _, device = backend
    fn = getattr(glo_kernels, op)
    x = torch.tensor([[1e36, 0.0, 1e36 - 1e30]], device=device)
    y = fn(x, -1, 1e-3).cpu()
    gap = (x[0, 2] - x[0, 0]).item() * 1e3  # exact in float32 (Sterbenz), about -1e33 once divided by T
    expected = torch.tensor([[1.0, 0.0, 0.0]]) if op == "softmax" else torch.tensor([[0.0, -INF, gap]])
    torch.testing.assert_close(y, expected)
    one = fn(torch.tensor([-1.0831777e36], device=device), 0, 1e-3).cpu()
    assert one.item() == (1.0 if op == "softmax" else 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_leaky_relu_negative_zero_slope_sign_of_zero(backend, dtype):
    """negative_slope = -0.0: bit for bit torch's leaky_relu, signs of zero included (the Triton interpreter turned
    a float argument -0.0 into the constant +0.0), forward and backward."""
    _, device = backend
    x = torch.tensor([-0.88, -0.0, 0.0, 2.0, -INF], dtype=dtype, device=device)
    y = glo_kernels.leaky_relu(x, -0.0).cpu()
    expected = F.leaky_relu(x.cpu(), -0.0)
    assert [math.copysign(1.0, v) for v in y.tolist()] == [math.copysign(1.0, v) for v in expected.tolist()], y
    assert torch.equal(torch.isnan(y), torch.isnan(expected))
    xg = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(glo_kernels.leaky_relu(xg, -0.0), xg, torch.full_like(x, 3.0))
    xe = x.cpu().clone().requires_grad_()
    (ge,) = torch.autograd.grad(F.leaky_relu(xe, -0.0), xe, torch.full_like(xe, 3.0))
    assert [math.copysign(1.0, v) for v in g.cpu().tolist()] == [math.copysign(1.0, v) for v in ge.tolist()], g


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_elu_negative_zero_alpha_sign_of_zero(backend, dtype):
    """alpha = -0.0 (the same Triton argument issue as the slope): the signs of zero of x < 0 ? alpha * expm1(x) : x."""
    _, device = backend
    x = torch.tensor([-0.5, -0.0, 0.0, 1.0], dtype=dtype, device=device)
    y = glo_kernels.elu(x, alpha=-0.0).cpu()
    # -0.5 -> -0.0 * expm1(-0.5) = +0.0; -0.0 and 0.0 are not < 0: x itself; 1.0 -> 1.0
    assert [math.copysign(1.0, v) for v in y.tolist()] == [1.0, -1.0, 1.0, 1.0], y.tolist()
    assert y.abs().tolist() == [0.0, 0.0, 0.0, 1.0]
