"""Every op x backend x dtype against the float64 reference: forward, input gradient, parameter gradients.

Inputs: random values plus NaN, +-inf, -0.0, huge and tiny values; odd sizes, 0-d, empty and non-contiguous tensors.
"""
import pytest
import torch

import glo_kernels
from glo_kernels._registry import OPS
from glo_kernels.ops.unary import UNARY
from helpers import (EPS, assert_matches_reference, assert_same_bits, make_input, non_contiguous, seeded,
                     with_torch_nan)
from bounds import sum_gamma
from conftest import DTYPES

SHAPES = [(), (1,), (31,), (33,), (1000,), (7, 13), (2, 3, 5, 7), (4, 6, 1, 9), (0,), (3, 0, 2)]


def _cases(op, shape):
    for kwargs in op.cases_for(shape):
        for per_channel in (False, True) if op.param_names else (False,):
            if per_channel and len(shape) < 2:
                continue
            yield kwargs, per_channel


def _channel_abs_sum(contrib: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-channel sum of |terms| of a parameter gradient, shaped like the parameter."""
    from glo_kernels._layout import reduce_to_param

    return reduce_to_param(contrib.abs(), weight)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)) or "scalar")
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_matches_reference(op, backend, dtype, shape, layout):
    name, device = backend
    gen = seeded(op.name, name, str(dtype), shape, layout)
    for kwargs, per_channel in _cases(op, shape):
        x = make_input(shape, dtype, device, generator=gen)
        if layout == "strided":
            x = non_contiguous(x)
        params = op.make_params(shape, dtype, device, per_channel)
        what = f"{op.name}[{name}, {dtype}, {shape}, {layout}, {kwargs}, per_channel={per_channel}]"

        # ours
        xo = x.detach().clone().requires_grad_()
        po = [p.detach().clone().requires_grad_() for p in params]
        y = op.fn(xo, *po, **kwargs)
        dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
        grads = torch.autograd.grad(y, [xo, *po], dy)
        assert_same_bits(xo, x, f"{what}: input modified")  # (bit patterns: NaN positions and payloads, -0.0)

        # float64 reference on the same (rounded) values, and eager's own result in this dtype
        x64 = x.detach().double().cpu().requires_grad_()
        p64 = [p.detach().double().cpu().requires_grad_() for p in params]
        y64 = op.reference(x64, *p64, **kwargs)
        g64 = torch.autograd.grad(y64, [x64, *p64], dy.double().cpu())
        xe = x.detach().cpu().clone().requires_grad_()
        pe = [p.detach().cpu().clone().requires_grad_() for p in params]
        ye = (op.eager or op.reference)(xe, *pe, **kwargs)  # PyTorch's own kernel: the error baseline
        ge = torch.autograd.grad(ye, [xe, *pe], dy.cpu())

        assert y.device == x.device
        rel = op.ulps * EPS[dtype]
        if op.gated is not None:  # (0 * inf in float32: NaN, as torch's composite; see with_torch_nan)
            y64 = with_torch_nan(y64, y, ye)
            g64 = (with_torch_nan(g64[0], grads[0], ge[0]), *g64[1:])
        assert_matches_reference(y, y64, dtype, eager=ye, rel=rel, what=f"{what} forward")
        # Backward from a saved output (sigmoid, tanh, in-place ELU) loses relative accuracy where the derivative is
        # tiny (1 - y*y near saturation): the error is bounded by a few roundings of |dy| instead.
        atol = 0.0 if op.exact else op.ulps * EPS[dtype] * op.grad_error_scale(x64.detach(), dy.double().cpu())
        assert_matches_reference(grads[0], g64[0], dtype, eager=ge[0], rel=rel, atol=atol, what=f"{what} grad x")
        for pname, p, g, gref, geager in zip(op.param_names, params, grads[1:], g64[1:], ge[1:]):
            # A parameter gradient sums x.numel() / p.numel() terms per element (opmath accumulators, any order): its
            # error is within gamma(n - 1) of the sum of |terms| (tests/bounds.py), besides each term's own rel.
            n = x.numel() // max(p.numel(), 1)
            terms_of = op.param_terms or _param_terms
            terms = torch.zeros_like(gref) if x.numel() == 0 else terms_of(op, x64, p64, dy, kwargs, pname)
            acc = sum_gamma(n, dtype, contiguous=False) + rel
            assert_matches_reference(g, gref, dtype, eager=geager, atol=acc * terms, what=f"{what} grad {pname}")


def _param_terms(op, x64, p64, dy, kwargs, pname):
    """Sum over each parameter's elements of |d out / d param * dy|, from the reference (float64).

    The partial derivative of every op here keeps one sign on each side of its kink (PReLU: x or 0; PELU: a, b
    partials of (a/b)x and a(exp(x/b) - 1)), so with |dy| restricted to one side the gradient is a sum of terms of
    one sign: its magnitude is the sum of their magnitudes. Both sides together bound the sum of |terms|."""
    x = x64.detach()
    dy = dy.double().cpu().abs()
    total = 0
    for side in (x >= 0, ~(x >= 0)):
        params = [p.detach().clone().requires_grad_() for p in p64]
        y = op.reference(x, *params, **kwargs)
        (g,) = torch.autograd.grad(y, [params[op.param_names.index(pname)]], torch.where(side, dy, 0.0))
        total = total + g.abs()
    return total


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_dropin_exact_float32(op, backend):
    """Same numbers as the torch.nn twin in float32: bit for bit (sign of zero, NaN, gradient conventions) for ops
    without transcendentals; within a few ulp otherwise (exp/tanh implementations differ), same NaN and signs."""
    name, device = backend
    x = make_input((64, 33), torch.float32, device)
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, float("nan"), 1e-45, -1e-45, float("inf")])
    for kwargs, per_channel in _cases(op, x.shape):
        params = op.make_params(x.shape, torch.float32, device, per_channel)
        xo = x.clone().requires_grad_()
        y = op.fn(xo, *params, **kwargs)
        dy = make_input(y.shape, torch.float32, device, specials=False)
        (gx,) = torch.autograd.grad(y, xo, dy)
        xt = x.clone().requires_grad_()
        yt = op.reference(xt, *params, **kwargs)
        (gt,) = torch.autograd.grad(yt, xt, dy)
        num = ~torch.isnan(yt)  # (the sign bit of a NaN carries no meaning)
        assert torch.equal(y.signbit()[num], yt.signbit()[num]), f"{op.name}: sign of results differs"
        tol = 0.0 if op.exact else op.ulps * EPS[torch.float32]
        torch.testing.assert_close(y, yt, rtol=tol, atol=tol * 1e-30, equal_nan=True)
        torch.testing.assert_close(gx, gt, rtol=tol, atol=tol * dy.abs().max().item(), equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("spec", [s for s in UNARY if s.bitwise], ids=lambda s: s.name)
def test_unary_bitwise_twin(spec, backend, dtype):
    """Ops that compute exactly what torch computes (UnarySpec.bitwise: the hard activations): values, and where
    declared input gradients, bit for bit torch's twin in every dtype (16-bit: both in float32, rounded once), on a
    dense input (torch's vectorized loop), specials included; gradients at NaN inputs aside (torch's vectorized and
    scalar loops disagree there)."""
    name, device = backend
    gen = seeded("bitwise-twin", spec.name, name, str(dtype))
    x = make_input((64, 33), dtype, "cpu", generator=gen, scale=4.0)
    x.view(-1)[:8] = torch.tensor([-3.0, 3.0, -0.0, 0.0, -1.5, 2.0**-20, -6.0, 6.0], dtype=dtype)
    xo, xt = x.to(device).requires_grad_(), x.clone().requires_grad_()
    y, yt = getattr(glo_kernels, spec.name)(xo), spec.twin(xt)
    num = ~torch.isnan(yt)  # (a NaN's sign and payload carry no meaning)
    assert torch.equal(torch.isnan(y.cpu()), ~num), f"{spec.name}[{name}, {dtype}]: NaN positions"
    assert_same_bits(y.detach().cpu()[num], yt.detach()[num], f"{spec.name}[{name}, {dtype}] values")
    if "grads" in spec.bitwise:
        dy = make_input(y.shape, dtype, "cpu", specials=False, generator=gen)
        (g,) = torch.autograd.grad(y, xo, dy.to(device))
        (gt,) = torch.autograd.grad(yt, xt, dy)
        keep = ~torch.isnan(x)
        assert_same_bits(g.cpu()[keep], gt[keep], f"{spec.name}[{name}, {dtype}] input gradient")


@pytest.mark.parametrize("op", [op for op in OPS if op.inplace], ids=lambda op: op.name)
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_inplace(op, backend, layout):
    """inplace=True returns the same storage, changes x exactly as the out-of-place op would, and autograd stays
    right (same gradient as the reference, bit for bit for exact ops)."""
    name, device = backend
    tol = 0.0 if op.exact else op.ulps * EPS[torch.float32]
    for kwargs, _ in _cases(op, (5, 40)):
        x = make_input((5, 40), torch.float32, device)
        if layout == "strided":
            x = non_contiguous(x)
        expected = op.fn(x.clone(), **kwargs)
        # without autograd
        xi = x.clone() if layout == "contiguous" else non_contiguous(x)
        out = op.fn(xi, inplace=True, **kwargs)
        assert out.data_ptr() == xi.data_ptr() and out is xi
        torch.testing.assert_close(xi, expected, rtol=0, atol=0, equal_nan=True)
        # with autograd: a non-leaf input (as after a linear layer)
        leaf = x.clone().requires_grad_()
        h = leaf * 1.0
        h_ptr = h.data_ptr()
        out = op.fn(h, inplace=True, **kwargs)
        assert out.data_ptr() == h_ptr
        dy = torch.randn_like(out)
        (g,) = torch.autograd.grad(out, leaf, dy)
        leaf2 = x.clone().requires_grad_()
        (g_ref,) = torch.autograd.grad(op.reference(leaf2, **kwargs), leaf2, dy)
        torch.testing.assert_close(g, g_ref, rtol=tol, atol=tol * dy.abs().max().item(), equal_nan=True)


def test_inplace_leaf_requiring_grad_raises(backend):
    x = torch.randn(8, requires_grad=True, device=backend[1])
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        glo_kernels.relu(x, inplace=True)


def test_inplace_on_saved_tensor_detected(backend):
    """Overwriting in place a value that autograd saved is caught at backward, as with torch's own ops."""
    x = torch.randn(8, requires_grad=True, device=backend[1])
    h = x * 1.0
    z = h.sin()  # saves h
    glo_kernels.relu(h, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()


def test_leaky_inplace_negative_slope_backward(backend):
    """torch refuses in-place leaky_relu backward with a negative slope; the 1-bit mask makes ours right."""
    x = make_input((100,), torch.float32, backend[1], specials=False)
    leaf = x.clone().requires_grad_()
    out = glo_kernels.leaky_relu(leaf * 1.0, -0.5, inplace=True)
    (g,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
    torch.testing.assert_close(g, torch.where(x > 0, 1.0, -0.5))


def test_outputs_do_not_alias_inputs(backend):
    x = torch.randn(4, 8, device=backend[1])
    for op in OPS:
        params = op.make_params(x.shape, x.dtype, x.device, True)
        for kwargs in op.cases_for(x.shape):
            y = op.fn(x, *params, **kwargs)
            assert y.data_ptr() != x.data_ptr()


def test_empty_and_scalar_gradients(backend):
    device = backend[1]
    for op in OPS:
        for shape in [(0,), (2, 0, 3), ()]:
            for kwargs in op.cases_for(shape)[:1]:
                x = torch.randn(shape, device=device, requires_grad=True)
                params = [p.requires_grad_() for p in op.make_params(shape, torch.float32, device, False)]
                y = op.fn(x, *params, **kwargs)
                assert y.shape == op.reference(x.detach(), *params, **kwargs).shape
                grads = torch.autograd.grad(y.sum(), [x, *params])
                assert grads[0].shape == x.shape
                for p, g in zip(params, grads[1:]):
                    assert g.shape == p.shape
                    if x.numel() == 0:
                        assert torch.equal(g, torch.zeros_like(p))
