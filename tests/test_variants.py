"""Variants users call (issue 12, part 4) on every backend that runs here, and two reference-backend ELU regressions:

- the unary family (sigmoid, tanh, ...: glo_kernels/ops/unary.py) with ``inplace=True`` (as ``torch.sigmoid_`` /
  ``Tensor.tanh_``): the very tensor returned, values bit for bit the out-of-place op's, any strides and dtype,
  autograd right (non-leaf inputs; leaves refused; for ops whose backward reads the output, a later in-place change
  of it caught at backward);
- softmax / log_softmax with ``dtype=`` (as ``torch.softmax(x, dim, dtype=...)``): the result is softmax(x.to(dtype)) in
  dtype, gradients in x's dtype, for every (input, output) dtype pair; the fused pairs (bfloat16 / float16 -> float32)
  give bit for bit what the cast and the op give; learned temperature, torch.compile, opcheck, bad dtypes;
- the reference backend's ELU: a finite double backward for large positive x, and 16-bit inputs computed in float32.

Inputs are random (helpers.seeded / make_input: fresh every run, replayable with GLO_TEST_SEED); every tolerance is an
error bound of the computation, stated where it is formed.
"""
import inspect
import math

import pytest
import torch

import glo_kernels
from conftest import DTYPES
from glo_kernels import reference
from glo_kernels._layout import fused_dtype_pair
from helpers import EPS, assert_matches_reference, assert_same_bits, make_input, non_contiguous, seeded
from bounds import finite as _fin, sum_gamma
from op_db import UNARY, UNARY_BY_NAME, UNARY_NAMES

_IDS = {torch.float64: "f64", torch.float32: "f32", torch.bfloat16: "bf16", torch.float16: "f16"}


def _dtype_id(d):
    return _IDS.get(d, str(d))


def _eps_op(dtype):
    """The unit roundoff of the opmath type that computes dtype (float64 for float64, else float32)."""
    return EPS[torch.float64] if dtype == torch.float64 else EPS[torch.float32]


def _bits(t: torch.Tensor) -> torch.Tensor:
    """t's bit patterns (as integers), in a contiguous copy."""
    ints = {2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()]
    return t.detach().contiguous().view(ints)


def _assert_same_bits(a: torch.Tensor, b: torch.Tensor, what: str):
    """Equal bit for bit (signs of zero included), NaN where the other has NaN (any payload or sign: converting a
    NaN to bfloat16 gives 0x7FC0 in our kernels, the sign kept by torch's vectorized conversion)."""
    assert a.shape == b.shape and a.dtype == b.dtype, f"{what}: {a.dtype} {tuple(a.shape)} vs {b.dtype} {tuple(b.shape)}"
    nan_a, nan_b = torch.isnan(a.detach()), torch.isnan(b.detach())
    same = (_bits(a) == _bits(b)) | (nan_a & nan_b).contiguous()
    assert bool(same.all()), (f"{what}: {int((~same).sum())} elements differ; first: "
                              f"{a.detach().reshape(-1)[~same.reshape(-1)][:3].tolist()} vs "
                              f"{b.detach().reshape(-1)[~same.reshape(-1)][:3].tolist()}")


# ---------------------------------------------------------------------------------------------------------------
# 1. the unary family in place
# ---------------------------------------------------------------------------------------------------------------
LAYOUTS = ("contiguous", "strided", "transposed", "channels_last", "offset", "scalar", "empty")


def _layout_input(layout, dtype, device, gen):
    """(x, base): x in the given layout, a view of base (whose elements outside x must stay untouched)."""
    if layout == "scalar":
        x = make_input((), dtype, device, generator=gen)
        return x, x
    if layout == "empty":
        x = make_input((3, 0, 2), dtype, device, generator=gen)
        return x, x
    if layout == "channels_last":
        x = make_input((2, 3, 4, 5), dtype, device, generator=gen).to(memory_format=torch.channels_last)
        return x, x
    x = make_input((6, 17), dtype, device, generator=gen)
    if layout == "strided":  # every other element of a buffer whose gaps hold NaN
        x = non_contiguous(x)
        return x, x._base
    if layout == "transposed":  # dense, not contiguous
        x = x.t().contiguous().t()
        return x, x
    if layout == "offset":  # a view with a storage offset that breaks 16-byte alignment, inside a larger buffer
        buf = make_input((6 * 17 + 5,), dtype, device, generator=gen)
        return buf[3:3 + 6 * 17].view(6, 17), buf
    return x, x


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name", UNARY_NAMES)
def test_inplace_equals_out_of_place(backend, name, dtype, layout):
    """inplace=True returns x itself (same storage, strides unchanged), holding bit for bit what the out-of-place op
    returns for the same x, and writes nothing outside x; inplace=False leaves x alone."""
    bname, device = backend
    fn = getattr(glo_kernels, name)
    x, base = _layout_input(layout, dtype, device, seeded("inplace-values", name, bname, str(dtype), layout))
    base_before = base.clone()
    expected = fn(x)
    _assert_same_bits(base, base_before, f"{name}[{bname}, {dtype}, {layout}] out of place modified x")
    ptr, strides = x.data_ptr(), x.stride()
    out = fn(x, inplace=True)
    what = f"{name}[{bname}, {dtype}, {layout}] in place"
    assert out is x and x.data_ptr() == ptr and x.stride() == strides, what
    _assert_same_bits(x, expected, what)
    if base is not x:  # the rest of the buffer keeps its bits (the NaN gaps of a strided view, the margins)
        mask = torch.ones(base.numel(), dtype=torch.bool, device=device)
        mask.as_strided(x.shape, x.stride(), x.storage_offset() - base.storage_offset()).fill_(False)
        _assert_same_bits(base.reshape(-1)[mask], base_before.reshape(-1)[mask], f"{what}: wrote outside x")


def _saved_output_grad64(name, x64, dy64):
    """The float64 reference's gradient (glo_kernels.reference on float64 copies: torch's twin, or its formula where
    torch's float64 gradient is off or its loops disagree at NaN)."""
    x64 = x64.detach().requires_grad_()
    (g,) = torch.autograd.grad(getattr(reference, name)(x64), x64, dy64)
    return g


@pytest.mark.parametrize("layout", ("contiguous", "strided", "channels_last"))
@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("name", UNARY_NAMES)
def test_inplace_autograd(backend, name, dtype, layout):
    """In place on a non-leaf (as after a layer): the gradient reaching the leaf is the op's, against float64."""
    bname, device = backend
    gen = seeded("inplace-grad", name, bname, str(dtype), layout)
    x, _ = _layout_input(layout, dtype, device, gen)
    leaf = x.detach().clone(memory_format=torch.preserve_format).requires_grad_()
    h = leaf * 1.0  # a non-leaf in x's layout
    if layout == "strided":
        h = non_contiguous(h)  # (a strided view of a non-leaf: autograd records the copy and the in-place op on it)
    ptr = h.data_ptr()
    y = getattr(glo_kernels, name)(h, inplace=True)
    assert y is h and y.data_ptr() == ptr
    dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
    (g,) = torch.autograd.grad(y, leaf, dy)
    assert g.dtype == dtype and g.shape == x.shape
    x64, dy64 = x.detach().double().cpu(), dy.double().cpu()
    spec = UNARY_BY_NAME[name]
    y64 = getattr(reference, name)(x64)
    g64 = _saved_output_grad64(name, x64, dy64)
    # y: within spec.ulps roundings of the exact value (op.ulps of the op table).
    rel = spec.ulps * EPS[dtype]
    assert_matches_reference(y, y64, dtype, rel=rel, what=f"{name}[{bname}, {dtype}, {layout}] in place, value")
    if spec.saved == "y":
        # dx = g(y) dy from that y, g(y) = (1 - y) y (sigmoid), 1 - y^2 (tanh): |d dx / d y| <= 2 |dy| (|g'| <= 2
        # where |y| <= 1, checked here) times y's error ulps eps |y|, plus 3 opmath roundings and dx's own rounding.
        assert bool((_fin(y64).abs() <= 1).all()), f"{name}: the bound below assumes |y| <= 1"
        atol = 2 * rel * dy64.abs()
    else:
        # from the input: the out-of-place backward on a copy of x, within the op's ulps of dx, and of |dy| where dx
        # cancels (as tests/test_fuzz.py's element-wise bound)
        atol = rel * dy64.abs()
    assert_matches_reference(g, g64, dtype, rel=rel + 3 * _eps_op(dtype), atol=atol,
                             what=f"{name}[{bname}, {dtype}, {layout}] in place, gradient")


@pytest.mark.parametrize("name", UNARY_NAMES)
def test_inplace_double_backward(backend, name):
    """The in-place op's backward is itself differentiable (its saved output enters the backward op's autograd)."""
    bname, device = backend
    gen = seeded("inplace-gradgrad", name, bname)
    x = make_input((3, 5), torch.float64, device, specials=False, generator=gen)
    fn = getattr(glo_kernels, name)

    def f(v):
        return fn(v * 1.0, inplace=True)

    assert torch.autograd.gradcheck(f, (x.requires_grad_(),), fast_mode=bname == "triton")
    assert torch.autograd.gradgradcheck(f, (x,), fast_mode=bname == "triton")


@pytest.mark.parametrize("name", UNARY_NAMES)
def test_inplace_autograd_errors(backend, name):
    """As torch's in-place ops: a leaf requiring grad (or a view of one) raises before anything is written; an
    overwritten tensor that autograd saved, or a later in-place change of the output, is caught at backward."""
    bname, device = backend
    fn = getattr(glo_kernels, name)
    leaf = make_input((4, 6), torch.float32, device, specials=False, generator=seeded("errors", name, bname))
    leaf.requires_grad_()
    before = leaf.detach().clone()
    for target in (leaf, leaf[1:]):
        with pytest.raises(RuntimeError, match=rf"glo_kernels\.{name}: argument 'x' .*leaf Variable that requires grad"):
            fn(target, inplace=True)
    _assert_same_bits(leaf, before, f"{name}[{bname}]: a refused call wrote x")
    # torch allows it without grad mode, as its own ops do
    with torch.no_grad():
        assert fn(leaf.detach().clone(), inplace=True) is not None
    # x saved by an earlier op (sin saves its input), then overwritten: backward refuses
    h = leaf * 1.0
    z = h.sin()
    fn(h, inplace=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        z.sum().backward()
    if UNARY_BY_NAME[name].saved == "y":  # the output (which our backward reads) changed in place: backward refuses
        h = leaf * 1.0
        y = fn(h, inplace=True)
        y.mul_(2.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            y.sum().backward()
    # bad x
    with pytest.raises(TypeError, match=rf"glo_kernels\.{name}: argument 'x'"):
        fn(torch.arange(4, device=device), inplace=True)
    with pytest.raises(TypeError, match=rf"glo_kernels\.{name}: argument 'x'"):
        fn([1.0, 2.0], inplace=True)


def test_inplace_modules_stay_torch_twins():
    """The modules of the unary family keep torch.nn's signature: an inplace argument where the twin has one
    (nn.SiLU), none where it has none (nn.Sigmoid, nn.Tanh); same state, same repr, inplace passed on."""
    for spec in UNARY:
        ours, twin = getattr(glo_kernels.nn, spec.module_name), spec.torch_module
        assert issubclass(ours, twin)
        assert repr(ours()) == repr(twin()) and ours().state_dict().keys() == twin().state_dict().keys()
        if "inplace" in inspect.signature(twin.__init__).parameters:
            m = ours(inplace=True)
            assert repr(m) == repr(twin(inplace=True))
            x = torch.randn(3, 4)
            assert m(x) is x
        else:
            with pytest.raises(TypeError):
                ours(inplace=True)


@pytest.mark.parametrize("name", UNARY_NAMES)
def test_inplace_torch_compile(backend, name):
    """An in-place op of the unary family after a layer traces with no graph break; values and gradients equal
    eager's."""
    bname, device = backend
    torch._dynamo.reset()
    gen = seeded("inplace-compile", name, bname)
    lin = torch.nn.Linear(8, 8).to(device)
    x = make_input((5, 8), torch.float32, device, specials=False, generator=gen)

    def f(v):
        return getattr(glo_kernels, name)(lin(v), inplace=True).square().sum()

    out = f(x)
    grads = torch.autograd.grad(out, list(lin.parameters()))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out_c = compiled(x)
    grads_c = torch.autograd.grad(out_c, list(lin.parameters()))
    torch.testing.assert_close(out_c, out)
    for a, b in zip(grads_c, grads):
        torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------------------------
# 2. softmax / log_softmax with an output dtype
# ---------------------------------------------------------------------------------------------------------------
SOFTMAXES = ("softmax", "log_softmax")
PAIRS = [(s, d) for s in DTYPES for d in DTYPES]
# (shape, dim, layout): contiguous rows (inner == 1), a strided dim (inner > 1), a non-contiguous input, a long-ish
# row (several CPU lanes), 0-d and empty.
SOFTMAX_CASES = [((6, 37), -1, "contiguous"), ((3, 5, 9), 1, "contiguous"), ((4, 24), -1, "strided"),
                 ((2, 300), 1, "contiguous"), ((), 0, "contiguous"), ((0, 5), 1, "contiguous")]
TEMPERATURE = 1.7


def _pair_id(p):
    return f"{_dtype_id(p[0])}-{_dtype_id(p[1])}"


def _case_id(c):
    shape, dim, layout = c
    return ("x".join(map(str, shape)) or "scalar") + f"-d{dim}-{layout}"


def _rows(t, dim):
    """Row-wise max and sum along dim of a float64 tensor, broadcast back (0-d: itself)."""
    if t.dim() == 0 or t.numel() == 0:
        return t, t
    return t.amax(dim, keepdim=True).expand_as(t), t.sum(dim, keepdim=True).expand_as(t)


def _acc(n, dtype, rows):
    """Relative error bound of a row sum of n terms in dtype's opmath, in the summation order of the backend that
    computes it: rows = (backend name, whether the row's elements are contiguous) (tests/bounds.py sum_gamma)."""
    backend, contiguous = rows
    return sum_gamma(n, dtype, contiguous, None if backend == "reference" else backend)


def _rows_of(bname, x, dim, layout):
    """(backend, contiguous rows) for _acc: a row is contiguous when it runs along the last dim of a dense tensor."""
    return bname, layout == "contiguous" and (x.dim() == 0 or dim % x.dim() == x.dim() - 1)


def _softmax_bounds(log, xd, y64, dim, T, out_dtype, rows):
    """Allowed |y - y64| per element, y computed from xd (= x.to(dtype)) in opmath and rounded once to dtype.

    With a_j = (x_j - m) / T (3 roundings: the difference, 1/T, the product: 3 eps_o |a_j|) and exp within 2 eps_o,
    e_j = exp(a_j) is within eps_o (3 |a_j| + 2) relatively; the row sum s of n terms within
    r_s = acc(n) + eps_o (3 sum_k p_k |a_k| + 2) (acc(n): _acc, the backend's summation order, and the terms' errors).
    softmax y_j = e_j / s: relative eps_o (3 |a_j| + 4) + r_s; log_softmax y_j = a_j - log s: absolute
    eps_o (3 |a_j| + |y_j| + log n) + r_s. Both then rounded to dtype (eps_d |y_j|, passed as rel)."""
    eps_o = _eps_op(out_dtype)
    x64 = xd.detach().double().cpu()
    d = dim % max(x64.dim(), 1)
    if x64.dim() == 0:
        x64 = x64.reshape(1)
        d = 0
    n = x64.shape[d] if x64.numel() else 1
    m, _ = _rows(_fin(x64), d)
    a = _fin((x64 - torch.where(torch.isfinite(m), m, torch.zeros_like(m))) / T).abs()
    y = _fin(y64).reshape(a.shape)
    p = y.exp() if log else y
    _, pa = _rows(p * a, d)
    r_s = _acc(n, out_dtype, rows) + eps_o * (3 * pa + 2)
    if log:
        bound = eps_o * (3 * a + y.abs() + math.log(n)) + r_s
    else:
        bound = y.abs() * (eps_o * (3 * a + 4) + r_s)
    return bound.reshape(y64.shape)


def _stored_error(err_y, y64, dtype):
    """Allowed |y - y64| of y as stored in dtype (what the backward reads): err_y, then the rounding to dtype, relative
    (EPS |y|) or, for a subnormal y, absolute (up to one subnormal spacing: float16 2^-24 = 6e-8, in relative terms up
    to 100% of a tiny y)."""
    fi = torch.finfo(dtype)
    return err_y + EPS[dtype] * _fin(y64).abs() + fi.smallest_normal * fi.eps


def _softmax_grad_bounds(log, y64, err_y, dy, g64, dim, T, in_dtype, out_dtype, rows):
    """Allowed |dx - dx64| per element. dx is computed in opmath from our y (within err_y of y64) and dy, then rounded
    to x's dtype (via out dtype for a pair that is not fused: eps_in + eps_out relatively).

    softmax: dx_j = y_j (dy_j - D) / T, D = sum_k dy_k y_k: D's error is acc(n) sum_k |dy_k y_k| + sum_k |dy_k| err_y_k,
      dx_j's: |dx_j| (err_y_j / |y_j| + 4 eps_o) + |y_j| / T * (D's error + eps_o |dy_j - D|);
    log_softmax: dx_j = (dy_j - p_j S) / T, S = sum dy_k, p_j = exp(y_j) within (err_y_j + 2 eps_o) relatively:
      (p_j |S| (err_y_j + 2 eps_o) + p_j acc(n) sum_k |dy_k| + eps_o |dy_j|) / T + 4 eps_o |dx_j|;
    acc(n) = _acc(n, out_dtype, rows) as in _softmax_bounds."""
    eps_o = _eps_op(out_dtype)
    shape = g64.shape
    y, e, g, dx = (_fin(t).reshape(-1) if t.dim() == 0 else _fin(t) for t in (y64, err_y, dy, g64))
    d = 0 if y64.dim() == 0 else dim % y64.dim()
    n = y.shape[d] if y.numel() else 1
    acc = _acc(n, out_dtype, rows)
    if log:
        p = y.exp()
        _, s = _rows(g, d)
        _, sa = _rows(g.abs(), d)
        bound = (p * s.abs() * (e + 2 * eps_o) + p * acc * sa + eps_o * g.abs()) / T + 4 * eps_o * dx.abs()
    else:
        _, dot = _rows(g * y, d)
        _, dot_abs = _rows((g * y).abs(), d)
        _, dot_err = _rows(g.abs() * e, d)
        rel_y = torch.where(y.abs() > 0, e / y.abs().clamp_min(1e-300), torch.zeros_like(e))
        bound = (dx.abs() * (rel_y + 4 * eps_o)
                 + y.abs() / T * (acc * dot_abs + dot_err + eps_o * (g - dot).abs()))
    if in_dtype == out_dtype or fused_dtype_pair(in_dtype, out_dtype):
        return bound.reshape(shape), EPS[in_dtype]
    # (a cast pair rounds dx to the output dtype first: its relative rounding, or its subnormal spacing)
    fi = torch.finfo(out_dtype)
    return bound.reshape(shape) + fi.smallest_normal * fi.eps, EPS[in_dtype] + EPS[out_dtype]


def _dtype_case(key, backend, op, pair, case):
    """The common setup of a dtype= test: (backend name, device, x's dtype, dtype=, shape, dim, layout, the op,
    a fresh random x in its layout, the test's generator)."""
    bname, device = backend
    src, dst = pair
    shape, dim, layout = case
    gen = seeded(key, op, bname, str(src), str(dst), shape, layout)
    x = make_input(shape, src, device, generator=gen)
    x = non_contiguous(x) if layout == "strided" else x
    return bname, device, src, dst, shape, dim, layout, getattr(glo_kernels, op), x, gen


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=_case_id)
@pytest.mark.parametrize("pair", PAIRS, ids=_pair_id)
@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax_dtype_matches_float64(backend, op, pair, case):
    """softmax(x, dim, T, dtype): output in dtype, equal to the float64 softmax of x.to(dtype) within the bounds of
    _softmax_bounds; the gradient in x's dtype, equal to float64's within _softmax_grad_bounds; x untouched."""
    bname, device, src, dst, shape, dim, layout, fn, x, gen = _dtype_case("softmax-dtype", backend, op, pair, case)
    x_before = x.clone()
    xo = x.clone().requires_grad_()
    y = fn(xo, dim, TEMPERATURE, dtype=dst)
    what = f"{op}[{bname}, {src} -> {dst}, {shape}, dim={dim}, {layout}]"
    assert y.dtype == dst and y.shape == x.shape and y.device == x.device, what
    dy = make_input(y.shape, dst, device, specials=False, generator=gen)
    (gx,) = torch.autograd.grad(y, xo, dy)
    assert gx.dtype == src and gx.shape == x.shape, f"{what}: gradient {gx.dtype} {tuple(gx.shape)}"
    assert_same_bits(x, x_before, f"{what}: x modified")

    xd = x.detach().to(dst)  # what the op's result is a softmax of (torch's semantics: softmax(x.to(dtype)))
    x64 = xd.double().cpu().requires_grad_()
    y64 = getattr(reference, op)(x64, dim, TEMPERATURE)
    (g64,) = torch.autograd.grad(y64, x64, dy.double().cpu())
    rows = _rows_of(bname, x, dim, layout)
    err_y = _softmax_bounds(op == "log_softmax", xd, y64, dim, TEMPERATURE, dst, rows)
    assert_matches_reference(y, y64, dst, rel=EPS[dst], atol=err_y, what=f"{what} forward")
    bound, rel = _softmax_grad_bounds(op == "log_softmax", y64, _stored_error(err_y, y64, dst), dy, g64, dim,
                                      TEMPERATURE, src, dst, rows)
    assert_matches_reference(gx, g64, src, rel=rel, atol=bound, what=f"{what} gradient")


@pytest.mark.parametrize("case", SOFTMAX_CASES, ids=_case_id)
@pytest.mark.parametrize("pair", [p for p in PAIRS if p[0] != p[1]], ids=_pair_id)
@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax_dtype_is_cast_then_op(backend, op, pair, case):
    """The result is softmax(x.to(dtype)) and the gradient the cast's backward of its gradient: bit for bit on the
    backends whose kernels tile a row the same way whatever the dtype read (the fused pairs run one kernel reading x's
    dtype and writing dtype, the other pairs cast first); the CUDA kernels size their chunks by the dtype read, which
    changes the order of the row sums: there, within twice the bounds of test_softmax_dtype_matches_float64."""
    bname, device, src, dst, shape, dim, layout, fn, x, gen = _dtype_case("softmax-cast", backend, op, pair, case)
    xo = x.clone().requires_grad_()
    xc = x.detach().to(dst).requires_grad_()
    y, yc = fn(xo, dim, TEMPERATURE, dtype=dst), fn(xc, dim, TEMPERATURE)
    what = f"{op}[{bname}, {src} -> {dst}, {shape}, dim={dim}, {layout}]"
    dy = make_input(y.shape, dst, device, specials=False, generator=gen)
    (gx,) = torch.autograd.grad(y, xo, dy)
    (gc,) = torch.autograd.grad(yc, xc, dy)
    if bname != "cuda":
        _assert_same_bits(y, yc, f"{what} forward")
        _assert_same_bits(gx, gc.to(src), f"{what} gradient")
        return
    # CUDA: each within the float64 test's bounds of the exact values, so within twice those of each other
    log = op == "log_softmax"
    x64 = xc.detach().double().cpu().requires_grad_()
    y64 = getattr(reference, op)(x64, dim, TEMPERATURE)
    (g64,) = torch.autograd.grad(y64, x64, dy.double().cpu())
    rows = _rows_of(bname, x, dim, layout)
    err_y = _softmax_bounds(log, xc, y64, dim, TEMPERATURE, dst, rows)
    assert_matches_reference(y, yc.double(), dst, rel=2 * EPS[dst], atol=2 * err_y, what=f"{what} forward")
    bound, rel = _softmax_grad_bounds(log, y64, _stored_error(err_y, y64, dst), dy, g64, dim, TEMPERATURE, src,
                                      dst, rows)
    assert_matches_reference(gx, gc.to(src).double(), src, rel=2 * rel, atol=2 * bound, what=f"{what} gradient")


@pytest.mark.parametrize("pair", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                  (torch.float32, torch.float64), (torch.float32, torch.float16),
                                  (torch.float64, torch.float32)], ids=_pair_id)
@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax_dtype_learned_temperature(backend, op, pair):
    """A temperature tensor that requires grad gets dL/dT = -sum(dx x) / T (dx in x's dtype), also with an output
    dtype; both gradients against float64."""
    bname, device = backend
    src, dst = pair
    gen = seeded("softmax-dtype-temperature", op, bname, str(src), str(dst))
    x = make_input((5, 12), src, device, specials=False, generator=gen)
    dy = make_input((5, 12), dst, device, specials=False, generator=gen)
    t = torch.tensor(1.7, dtype=torch.float32, device=device)
    xo, to = x.clone().requires_grad_(), t.clone().requires_grad_()
    y = getattr(glo_kernels, op)(xo, -1, to, dtype=dst)
    gx, gt = torch.autograd.grad(y, [xo, to], dy)
    assert y.dtype == dst and gx.dtype == src and gt.dtype == t.dtype and gt.shape == t.shape
    xd = x.to(dst)
    x64, t64 = xd.double().cpu().requires_grad_(), t.double().cpu().requires_grad_()
    y64 = getattr(reference, op)(x64, -1, t64)
    g64, gt64 = torch.autograd.grad(y64, [x64, t64], dy.double().cpu())
    T = float(t)
    what = f"{op}[{bname}, {src} -> {dst}] learned temperature"
    rows = (bname, True)
    err_y = _softmax_bounds(op == "log_softmax", xd, y64, -1, T, dst, rows)
    assert_matches_reference(y, y64, dst, rel=EPS[dst], atol=err_y, what=f"{what} forward")
    bound, rel = _softmax_grad_bounds(op == "log_softmax", y64, _stored_error(err_y, y64, dst), dy, g64, -1, T,
                                      src, dst, rows)
    assert_matches_reference(gx, g64, src, rel=rel, atol=bound, what=f"{what} grad x")
    # dT = -sum_j dx_j x_j / T from our dx (each within bound_j + rel |dx_j|) and x in its dtype (x - x.to(dtype) is
    # within eps_dst |x| when dtype is narrower), summed in opmath in any order (acc(N) = sum_gamma of depth N - 1, times
    # sum |dx_j x_j|), T rounded to float32 and the result rounded to T's dtype:
    # |gt - gt64| <= (sum |x_j| err_j + (acc(N) + eps_dst) sum |dx_j x_j|) / T + eps_f32 |gt|. Since sum_j dx_j = 0 per
    # row, a backend may use x - max instead of x (the reference backend's autograd does): |x_j| is the larger of both.
    x64d = _fin(x.double().cpu())
    xa = torch.maximum(x64d.abs(), (x64d - x64d.amax(-1, keepdim=True)).abs())
    dxa = _fin(g64).abs()
    acc = sum_gamma(x.numel(), src, contiguous=False)
    err_gt = ((xa * (bound + rel * dxa)).sum() + (acc + EPS[dst]) * (xa * dxa).sum()) / T
    assert_matches_reference(gt, gt64.reshape(()), torch.float32, rel=2 * EPS[torch.float32], atol=float(err_gt),
                             what=f"{what} grad T")


class _MixedPrecisionHead(torch.nn.Module):
    """bfloat16 logits, float32 probabilities (learned temperature) and log-probabilities."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(12, 10, dtype=torch.bfloat16)
        self.soft = glo_kernels.nn.Softmax(dim=-1, temperature=torch.nn.Parameter(torch.tensor(2.0)),
                                           dtype=torch.float32)
        self.logsoft = glo_kernels.nn.LogSoftmax(dim=0, temperature=0.5, dtype=torch.float32)

    def forward(self, x):
        h = self.lin(x)
        p, lp = self.soft(h), self.logsoft(h)
        assert p.dtype == lp.dtype == torch.float32
        return p.square().sum() + lp.mean() + glo_kernels.softmax(h, 1, 1.0, torch.float64).sum()


def test_softmax_dtype_torch_compile(backend):
    """Under torch.compile(fullgraph=True) the fake kernels give the output dtype: no graph break, and compiled values
    and gradients (bfloat16 weights, float32 temperature) equal eager ones."""
    bname, device = backend
    torch._dynamo.reset()
    torch.manual_seed(int(seeded("softmax-dtype-compile", bname).initial_seed()) % 2**31)
    model = _MixedPrecisionHead().to(device)
    x = make_input((6, 12), torch.bfloat16, device, specials=False, generator=seeded("compile-x", bname))
    out = model(x)
    grads = torch.autograd.grad(out, list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    out_c = compiled(x)
    grads_c = torch.autograd.grad(out_c, list(model.parameters()))
    assert out_c.dtype == out.dtype
    torch.testing.assert_close(out_c, out)
    for p, g, gc in zip(model.parameters(), grads, grads_c):
        assert g.dtype == gc.dtype == p.dtype
        torch.testing.assert_close(gc, g)


def _softmax_namespaces():
    status = glo_kernels.available_backends()
    triton_device = "cuda" if torch.cuda.is_available() else "cpu"
    return [
        pytest.param("glo_kernels", "cpu", id="cpp-cpu"),
        pytest.param("glo_kernels", "cuda", id="cpp-cuda", marks=pytest.mark.skipif(
            not status["cuda"].available, reason=f"backend cuda: {status['cuda'].reason}")),
        pytest.param("glo_kernels_triton", triton_device, id="triton", marks=pytest.mark.skipif(
            not status["triton"].available, reason=f"backend triton: {status['triton'].reason}")),
    ]


@pytest.mark.parametrize("ns,device", _softmax_namespaces())
def test_softmax_dtype_opcheck(ns, device):
    """torch.library.opcheck of the registered ops with an output dtype (fused and cast pairs, learned temperature)
    and of their backward ops with input_dtype: schema, fake kernels (output dtypes), autograd registration."""
    ops = getattr(torch.ops, ns)
    gen = seeded("opcheck", ns)
    x = make_input((4, 3, 5), torch.float64, device, specials=False, generator=gen)
    tr = torch.tensor(1.3, dtype=torch.float64, device=device, requires_grad=True)
    for name in SOFTMAXES:
        op = getattr(ops, name).default
        for src, dst in ((torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                         (torch.float32, torch.float64), (torch.float64, torch.float16)):
            xs = x.to(src).requires_grad_()
            torch.library.opcheck(op, (xs, -1, 1.3, None, dst))
            torch.library.opcheck(op, (xs, 0, 2.0, tr.to(torch.float32).detach().requires_grad_(), dst))
        torch.library.opcheck(op, (x.to(torch.float32), 1, 1.0, None, None))
        bwd = getattr(ops, name + "_backward").default
        y = getattr(torch, name)(x.float() / 1.3, -1)
        g = make_input(y.shape, torch.float32, device, specials=False, generator=gen).requires_grad_()
        for into in (torch.bfloat16, torch.float16, torch.float64, None):
            torch.library.opcheck(bwd, (g, y.clone().requires_grad_(), -1, 1.3, None, into))


@pytest.mark.parametrize("op", SOFTMAXES)
def test_softmax_dtype_errors(backend, op):
    """A non-floating or unsupported dtype raises, naming the op and 'dtype', before any kernel runs (x untouched)."""
    bname, device = backend
    fn = getattr(glo_kernels, op)
    x = make_input((3, 4), torch.float32, device, generator=seeded("dtype-errors", op, bname))
    before = x.clone()
    for bad in (torch.int32, torch.int64, torch.bool, torch.complex64, torch.uint8):
        with pytest.raises(TypeError, match=rf"glo_kernels\.{op}: argument 'dtype'"):
            fn(x, -1, 1.0, dtype=bad)
    for bad in ("float32", 32, float):
        with pytest.raises(TypeError, match=rf"glo_kernels\.{op}: argument 'dtype'"):
            fn(x, -1, 1.0, dtype=bad)
    module = (glo_kernels.nn.Softmax if op == "softmax" else glo_kernels.nn.LogSoftmax)(-1, dtype=torch.int64)
    with pytest.raises(TypeError, match=rf"glo_kernels\.{op}: argument 'dtype'"):
        module(x)
    assert_same_bits(x, before, f"{op}: x modified by a refused call")


@pytest.mark.parametrize("ns,device", _softmax_namespaces())
def test_registered_softmax_ops_check_dtype(ns, device):
    ops = getattr(torch.ops, ns)
    x = torch.randn(3, 4, device=device)
    for name in SOFTMAXES:
        with pytest.raises(RuntimeError, match=rf"glo_kernels\.{name}: argument 'dtype' must be a floating-point"):
            getattr(ops, name)(x, -1, 1.0, None, torch.int32)
        with pytest.raises(RuntimeError, match=rf"glo_kernels\.{name}_backward: argument 'input_dtype'"):
            getattr(ops, name + "_backward")(x, x, -1, 1.0, None, torch.int64)


def test_softmax_dtype_modules(backend):
    """nn.Softmax / nn.LogSoftmax take dtype as a keyword (None by default); their state_dict keys stay torch.nn's."""
    bname, device = backend
    x = make_input((3, 7), torch.bfloat16, device, specials=False, generator=seeded("modules", bname))
    for cls, twin, fn in ((glo_kernels.nn.Softmax, torch.nn.Softmax, glo_kernels.softmax),
                          (glo_kernels.nn.LogSoftmax, torch.nn.LogSoftmax, glo_kernels.log_softmax)):
        m = cls(dim=1, dtype=torch.float32)
        assert m.dtype == torch.float32 and cls(1).dtype is None
        assert m.state_dict().keys() == twin(1).state_dict().keys() == cls(1).state_dict().keys()
        assert "dtype=torch.float32" in repr(m) and "dtype" not in repr(cls(1))
        y = m(x)
        assert y.dtype == torch.float32
        _assert_same_bits(y, fn(x, 1, dtype=torch.float32), f"{cls.__name__}[{bname}]")
        assert cls(1)(x).dtype == torch.bfloat16
        # torch's own dtype= agrees (its float32 kernel on the same values)
        ref = getattr(torch, fn.__name__)(x, 1, dtype=torch.float32)
        torch.testing.assert_close(y, ref, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# 3. ELU regressions (found in the reference backend; checked on every backend)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,x_big", [(torch.float64, 1000.0), (torch.float64, 710.0), (torch.float32, 88.8),
                                         (torch.float32, 1e4)], ids=["f64-1000", "f64-710", "f32-88.8", "f32-1e4"])
def test_elu_double_backward_finite_for_large_x(backend, dtype, x_big):
    """ELU's second derivatives at a large positive x are (d/dx, d/dgrad) = (0, 1) (torch's too): the unselected side
    exp(x) must not overflow into 0 * inf = NaN."""
    bname, device = backend
    for alpha in (1.0, 0.5):
        x = torch.tensor([x_big, 2.0, -1.5], dtype=dtype, device=device, requires_grad=True)
        g = torch.ones(3, dtype=dtype, device=device, requires_grad=True)
        y = glo_kernels.elu(x, alpha)
        (gx,) = torch.autograd.grad(y, x, g, create_graph=True)
        ddx, ddg = torch.autograd.grad(gx, [x, g], torch.ones_like(gx))
        yt = torch.nn.functional.elu(x, alpha)
        (gt,) = torch.autograd.grad(yt, x, g, create_graph=True)
        ddx_t, ddg_t = torch.autograd.grad(gt, [x, g], torch.ones_like(gt))
        assert ddx[0].item() == 0.0 and ddg[0].item() == 1.0, f"elu[{bname}, {dtype}, x={x_big}]: {ddx}, {ddg}"
        torch.testing.assert_close(ddx, ddx_t)
        torch.testing.assert_close(ddg, ddg_t)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=_dtype_id)
def test_elu_16bit_computed_in_float32(backend, dtype):
    """16-bit ELU (forward and gradient) is computed in float32 and rounded once: within half an ulp of the exact
    value (plus float32's few roundings), where 16-bit arithmetic (three roundings) is off by up to 1.5 ulp."""
    bname, device = backend
    gen = seeded("elu-16", bname, str(dtype))
    x = make_input((4000,), dtype, device, specials=False, generator=gen, scale=1.5)
    dy = make_input((4000,), dtype, device, specials=False, generator=gen)
    fi = torch.finfo(dtype)
    u = fi.eps / 2  # the unit roundoff: one rounding to dtype is within u |v| (and half the subnormal spacing)
    floor = fi.smallest_normal * fi.eps / 2
    for alpha in (1.0, 0.7):
        xo = x.clone().requires_grad_()
        y = glo_kernels.elu(xo, alpha)
        (gx,) = torch.autograd.grad(y, xo, dy)
        x64, dy64 = x.double().cpu(), dy.double().cpu()
        y64 = torch.where(x64 < 0, torch.expm1(x64) * alpha, x64)
        g64 = torch.where(x64 > 0, dy64, dy64 * alpha * torch.exp(x64))
        # float32: expm1 / exp within 2 ulp and 2 products (4 eps_f32 relative), then one rounding to dtype (u, on a
        # value off by 4 eps_f32: one more eps_f32 of slack). No absolute floor but half the subnormal spacing.
        # The 16-bit CUDA forward takes fast16's expm1 (csrc/include/glo/activations.h): alpha * expm1 within 8.7e-7.
        rel = u + 5 * EPS[torch.float32]
        rel_fwd = u + 8.7e-7 * 1.01 if bname == "cuda" else rel
        for ours, exact, part in ((y, y64, "forward"), (gx, g64, "gradient")):
            assert ours.dtype == dtype
            err = (ours.double().cpu() - exact).abs()
            allowed = (rel_fwd if part == "forward" else rel) * exact.abs() + floor
            bad = err > allowed
            assert not bad.any(), (f"elu[{bname}, {dtype}, alpha={alpha}] {part}: {int(bad.sum())} values beyond one "
                                   f"rounding of the float32 result, e.g. x = {x64[bad][:3].tolist()}: "
                                   f"{ours.double().cpu()[bad][:3].tolist()} vs {exact[bad][:3].tolist()}")
    # the reported case: float16 x = -0.5483, dy = 0.6553: exact 0.378688..., 16-bit arithmetic gave 0.378906
    if dtype == torch.float16:
        xo = torch.tensor([-0.5483], dtype=dtype, device=device, requires_grad=True)
        (gx,) = torch.autograd.grad(glo_kernels.elu(xo), xo, torch.tensor([0.6553], dtype=dtype, device=device))
        assert gx.item() == 0.378662109375, f"elu[{bname}] float16 gradient {gx.item()!r}"
