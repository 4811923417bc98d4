"""Element-wise ops (PReLU and PELU with per-channel parameters included) keep channels_last / channels_last_3d
inputs in that format, as PyTorch's own element-wise ops do: no copy in, the output in the input's format, gradients
right whatever the upstream gradient's format."""
import pytest
import torch

import glo_kernels
from glo_kernels._layout import dense_format
from bounds import UNIT_ROUNDOFF, sum_gamma
from op_db import UNARY

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

OPS = {
    "relu": lambda x: glo_kernels.relu(x),
    "leaky_relu": lambda x: glo_kernels.leaky_relu(x, 0.2),
    "elu": lambda x: glo_kernels.elu(x, 0.7),
    **{spec.name: getattr(glo_kernels, spec.name) for spec in UNARY},
}
INPLACE = {
    "relu": lambda x: glo_kernels.relu(x, inplace=True),
    "leaky_relu": lambda x: glo_kernels.leaky_relu(x, 0.2, inplace=True),
    "elu": lambda x: glo_kernels.elu(x, 0.7, inplace=True),
    **{spec.name: (lambda x, fn=getattr(glo_kernels, spec.name): fn(x, inplace=True)) for spec in UNARY},
}
# Ops with learned parameters: (function of x and the parameters, parameter count, a parameter's values).
PARAM_OPS = {
    "prelu": (lambda x, p: glo_kernels.prelu(x, *p), 1, lambda n, g: torch.randn(n, generator=g) * 0.5),
    "pelu": (lambda x, p: glo_kernels.pelu(x, *p), 2, lambda n, g: torch.rand(n, generator=g) * 2 + 0.2),
}
FORMATS = [((2, 3, 5, 7), torch.channels_last), ((2, 3, 2, 5, 3), torch.channels_last_3d)]


def _bits_equal(a, b, backend):
    """Equal bit for bit (signs of zero included), NaN where the other has NaN (any payload). The reference backend
    is PyTorch's own ops, whose vectorized and tail loops differ by an ulp with the layout: close there."""
    a, b = a.detach().contiguous(), b.detach().contiguous()
    if backend[0] == "reference":
        torch.testing.assert_close(a, b, equal_nan=True)
        return True
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    nan = torch.isnan(a)
    return torch.equal(nan, torch.isnan(b)) and torch.equal(a.view(ints)[~nan], b.view(ints)[~nan])


@pytest.mark.parametrize("shape,fmt", FORMATS, ids=["channels_last", "channels_last_3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(OPS))
def test_output_keeps_the_format_and_matches_contiguous(backend, name, dtype, shape, fmt):
    _, device = backend
    torch.manual_seed(0)
    base = torch.randn(shape, dtype=dtype, device=device) * 3
    base.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, 0.0])
    x = base.to(memory_format=fmt).requires_grad_()
    xc = base.contiguous().requires_grad_()
    y, yc = OPS[name](x), OPS[name](xc)
    assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous(), y.stride()
    assert dense_format(y) == fmt
    assert _bits_equal(y, yc, backend), "values differ from the contiguous computation"
    for g_fmt in (fmt, torch.contiguous_format):  # upstream gradient in the same and in the contiguous format
        g = torch.randn(shape, dtype=dtype, device=device)
        (dx,) = torch.autograd.grad(y, x, g.contiguous(memory_format=g_fmt), retain_graph=True)
        (dxc,) = torch.autograd.grad(yc, xc, g, retain_graph=True)
        assert _bits_equal(dx, dxc, backend), f"gradient differs (upstream gradient in {g_fmt})"


def _abs_param_terms(fn, base, params, g):
    """Per parameter element, the sum of |d y_j / d p * g_j| (float64): each op's partials keep one sign on each
    side of x = 0, so the gradient of each side with |g| is that side's sum of |terms|."""
    x64 = base.detach().double().cpu()
    x64 = torch.where(torch.isfinite(x64), x64, torch.zeros_like(x64))  # (non-finite terms make NaN / inf sums)
    g64 = g.detach().double().cpu().abs()
    total = None
    for side in (x64 >= 0, x64 < 0):
        p64 = [p.detach().double().cpu().requires_grad_() for p in params]
        with glo_kernels.use_backend("reference"):
            y = fn(x64, p64)
        parts = torch.autograd.grad(y, p64, torch.where(side, g64, 0.0))
        parts = [q.abs() for q in parts]
        total = parts if total is None else [a + b for a, b in zip(total, parts)]
    return total


@pytest.mark.parametrize("shared", [False, True], ids=["per_channel", "shared"])
@pytest.mark.parametrize("shape,fmt", FORMATS, ids=["channels_last", "channels_last_3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", list(PARAM_OPS))
def test_parameter_ops_keep_the_format(backend, name, dtype, shape, fmt, shared):
    """PReLU / PELU on channels_last: output in that format, equal bit for bit to the contiguous computation, dx too;
    the parameters' gradients are sums taken in another order (storage order): equal to a few roundings."""
    _, device = backend
    fn, count, values = PARAM_OPS[name]
    gen = torch.Generator().manual_seed(torch.initial_seed())
    base = (torch.randn(shape, generator=gen) * 3).to(dtype=dtype, device=device)
    base.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, 0.0])
    n = 1 if shared else shape[1]
    params = [values(n, gen).to(dtype=dtype, device=device).requires_grad_() for _ in range(count)]
    x = base.to(memory_format=fmt).requires_grad_()
    xc = base.contiguous().requires_grad_()
    y, yc = fn(x, params), fn(xc, params)
    assert y.is_contiguous(memory_format=fmt) and not y.is_contiguous(), y.stride()
    assert _bits_equal(y, yc, backend), "values differ from the contiguous computation"
    for g_fmt in (fmt, torch.contiguous_format):
        g = torch.randn(shape, generator=gen).to(dtype=dtype, device=device)
        g.view(-1)[0] = 0.0  # (the NaN input's gradient term: keep the parameter sums finite)
        grads = torch.autograd.grad(y, [x, *params], g.contiguous(memory_format=g_fmt), retain_graph=True)
        grads_c = torch.autograd.grad(yc, [xc, *params], g, retain_graph=True)
        assert grads[0].is_contiguous(memory_format=fmt), grads[0].stride()
        assert _bits_equal(grads[0], grads_c[0], backend), f"dx differs (upstream gradient in {g_fmt})"
        terms = _abs_param_terms(fn, base, params, g)
        for k, (dp, dpc) in enumerate(zip(grads[1:], grads_c[1:])):
            assert dp.shape == dpc.shape
            # Two sums of the same terms in different orders: each within gamma(n - 1) sum |terms| of the exact sum
            # (tests/bounds.py), and each rounded once to dtype (bfloat16): their difference is within twice that.
            n_terms = base.numel() // dp.numel()
            tol = 2 * (sum_gamma(n_terms, dtype, contiguous=False) * terms[k] + UNIT_ROUNDOFF[dtype] * dp.double().abs().cpu())
            diff = (dp.double() - dpc.double()).abs().cpu()
            ok = (diff <= tol) | (torch.isnan(dp.cpu()) & torch.isnan(dpc.cpu())) | (dp.cpu() == dpc.cpu())
            assert ok.all(), f"parameter {k}'s gradient: {dp.tolist()} vs {dpc.tolist()} (allowed {tol.tolist()})"


@pytest.mark.parametrize("shape,fmt", FORMATS, ids=["channels_last", "channels_last_3d"])
@pytest.mark.parametrize("name", list(INPLACE))
def test_inplace_on_channels_last(backend, name, shape, fmt):
    _, device = backend
    torch.manual_seed(1)
    base = torch.randn(shape, device=device)
    w = torch.randn(shape, device=device, requires_grad=True)
    wc = w.detach().clone().requires_grad_()
    x = (base.to(memory_format=fmt) * w.to(memory_format=fmt))  # not a leaf: in place under autograd
    xc = base * wc
    ptr, strides = x.data_ptr(), x.stride()
    y, yc = INPLACE[name](x), INPLACE[name](xc)
    assert y is x and x.data_ptr() == ptr and x.stride() == strides
    assert _bits_equal(y, yc, backend)
    g = torch.randn(shape, device=device)
    (dw,) = torch.autograd.grad(y, w, g.contiguous(memory_format=fmt))
    (dwc,) = torch.autograd.grad(yc, wc, g)
    assert _bits_equal(dw, dwc, backend)


def test_strided_non_dense_input_gives_a_contiguous_output(backend):
    _, device = backend
    x = torch.randn(4, 6, 5, 8, device=device).to(memory_format=torch.channels_last)[:, ::2]
    w = torch.rand(3, device=device) + 0.5
    fns = {**OPS, "prelu": lambda x: glo_kernels.prelu(x, w), "pelu": lambda x: glo_kernels.pelu(x, w, w)}
    for name, fn in fns.items():
        y = fn(x)
        assert _bits_equal(y, fn(x.contiguous()), backend), name
        if backend[0] != "reference":
            assert y.is_contiguous(), (name, y.stride())


@pytest.mark.parametrize("pieces", [2, 3])
@pytest.mark.parametrize("shape,fmt", [((2, 6, 5, 7), torch.channels_last), ((2, 6, 2, 5, 3), torch.channels_last_3d)],
                         ids=["channels_last", "channels_last_3d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_maxout_over_channels_keeps_the_format(backend, dtype, shape, fmt, pieces):
    """Maxout over dim 1 of a channels_last input: the groups of pieces are consecutive in storage, so y, the saved
    indices and dx come out in that format without a copy, equal bit for bit to the contiguous computation."""
    _, device = backend
    gen = torch.Generator().manual_seed(torch.initial_seed())
    base = (torch.randn(shape, generator=gen) * 3).to(dtype=dtype, device=device)
    base.view(-1)[:4] = torch.tensor([float("nan"), float("inf"), -0.0, 0.0])
    base.view(-1)[8:12] = 1.0  # ties: the first piece wins, in either layout
    x = base.to(memory_format=fmt).requires_grad_()
    xc = base.contiguous().requires_grad_()
    y, yc = glo_kernels.maxout(x, pieces, dim=1), glo_kernels.maxout(xc, pieces, dim=1)
    if backend[0] != "reference":
        assert y.is_contiguous(memory_format=fmt), y.stride()
    assert _bits_equal(y, yc, backend), "values differ from the contiguous computation"
    for g_fmt in (fmt, torch.contiguous_format):
        g = torch.randn(y.shape, generator=gen).to(dtype=dtype, device=device)
        (dx,) = torch.autograd.grad(y, x, g.contiguous(memory_format=g_fmt), retain_graph=True)
        (dxc,) = torch.autograd.grad(yc, xc, g, retain_graph=True)
        if backend[0] != "reference":
            assert dx.is_contiguous(memory_format=fmt), dx.stride()
        assert _bits_equal(dx, dxc, backend), f"dx differs (upstream gradient in {g_fmt})"
    for dim in (2, -1):  # other dims: computed through a contiguous copy, still right
        p = shape[dim]
        assert _bits_equal(glo_kernels.maxout(x, p, dim=dim), glo_kernels.maxout(xc, p, dim=dim), backend)
