"""The Triton operators torch.ops.glo_kernels_triton.* against the C++ operators torch.ops.glo_kernels.* and float64 math.

Without a GPU the Triton kernels run on CPU tensors in the Triton interpreter (TRITON_INTERPRET=1, set here before
triton is imported); with one they run on CUDA tensors and are compared with the C++ CPU kernels on copies.
The interpreter is slow, so sizes stay small (a few thousand elements, a few tens of thousands at most).
"""

import math
import os
from decimal import Decimal
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton and of glo_kernels.triton.kernels

triton = pytest.importorskip("triton", reason="triton is not installed: the Triton backend cannot be tested")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

import glo_kernels  # noqa: E402  (the C++ extension defines both operator namespaces; launch.py the Triton kernel calls)
from glo_kernels import reference  # noqa: E402
from glo_kernels.triton import kernels as K  # noqa: E402
from op_db import UNARY_BY_NAME, UNARY_NAMES  # noqa: E402

_STATUS = glo_kernels.available_backends()
if not _STATUS["triton"].available:
    pytest.skip(f"backend triton: {_STATUS['triton'].reason}", allow_module_level=True)
if DEVICE == "cpu" and not K.INTERPRETED:
    pytest.skip("glo_kernels.triton.kernels was imported before TRITON_INTERPRET=1 was set, and there is no GPU",
                allow_module_level=True)

T = torch.ops.glo_kernels_triton
C = torch.ops.glo_kernels

# The interpreter computes with numpy, which warns on inf * 0 and the like; the results are the IEEE ones.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
OPS = ["relu", "relu_", "relu_backward", "leaky_relu", "leaky_relu_", "leaky_relu_backward", "prelu",
       "prelu_backward", "pelu", "pelu_backward", "maxout", "maxout_backward", "elu", "elu_", "elu_backward"]
OPS += [n + suffix for n in UNARY_NAMES for suffix in ("", "_", "_backward")]
SPECIALS = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e30, -1e30, 1e-30, -1e-30, 1.0, -1.0]
# Leaky ReLU slopes: the usual one, one not exact in binary (float64 must keep all its bits), negative, zero.
SLOPES = [0.01, 1.0 / 3.0, -0.5, 0.0]


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def _int_view(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view({8: torch.int64, 4: torch.int32, 2: torch.int16}[t.element_size()])


def assert_bitwise(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Same dtype, shape and bits, except that NaNs need only be NaN (their payloads are not part of the contract)."""
    actual = actual.cpu()
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    assert torch.equal(nan_a, nan_e), "NaN positions differ"
    keep = ~nan_e
    a, e = _int_view(actual)[keep], _int_view(expected)[keep]
    if not torch.equal(a, e):
        bad = (a != e).nonzero()[:8].flatten()
        raise AssertionError(f"bits differ at {bad.tolist()}: {actual[keep][bad].tolist()} vs "
                             f"{expected[keep][bad].tolist()}")


# Per dtype: one ulp relative to the value (2^-mantissa bits) and the smallest subnormal.
_ULP = {torch.float64: (2.0 ** -52, 5e-324), torch.float32: (2.0 ** -23, 2.0 ** -149),
        torch.bfloat16: (2.0 ** -7, 2.0 ** -133), torch.float16: (2.0 ** -10, 2.0 ** -24)}


def assert_close_f64(actual: torch.Tensor, expected64: torch.Tensor) -> None:
    """actual equals the float64 math within an ulp of actual's dtype (rounded once, or twice through float32)."""
    rtol, atol = _ULP[actual.dtype]
    torch.testing.assert_close(actual.cpu().double(), expected64, equal_nan=True, rtol=rtol, atol=atol)


def make_input(shape, dtype, seed=0, specials=True) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * 3
    if specials and x.numel() > 0:
        flat = x.view(-1)
        k = min(len(SPECIALS), flat.numel())
        idx = torch.randperm(flat.numel(), generator=g)[:k]
        flat[idx] = torch.tensor(SPECIALS[:k], dtype=torch.float64)
    return x.to(dtype)


def to_dev(*ts):
    return tuple(t.to(DEVICE) if isinstance(t, torch.Tensor) else t for t in ts)


def mask_bits(mask: torch.Tensor, n: int) -> torch.Tensor:
    """The n bits of a packed int32 mask, as bools."""
    words = mask.cpu().long() & 0xFFFFFFFF
    bits = (words[:, None] >> torch.arange(32)) & 1
    return bits.flatten()[:n].bool()


def mask_math(op: str, x: torch.Tensor, slope: float):
    """(y64, keep) of op on x, in float64 (the element math of activations.h)."""
    x64 = x.double()
    if op == "relu":
        return torch.where(x64 < 0, torch.zeros_like(x64), x64), ~(x64 <= 0)
    opm = torch.float64 if x.dtype == torch.float64 else torch.float32
    s = torch.tensor(slope, dtype=opm).double()  # the slope is rounded to opmath, as static_cast<T>(slope)
    return torch.where(x64 > 0, x64, x64 * s), x64 > 0


def _fwd(op, x, slope, save):
    return (getattr(T, op)(x, save) if op == "relu" else getattr(T, op)(x, slope, save))


def _fwd_cpp(op, x, slope, save):
    return (getattr(C, op)(x, save) if op == "relu" else getattr(C, op)(x, slope, save))


# ---------------------------------------------------------------------------------------------------------------
# Schemas
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", OPS)
def test_schema_matches_cpp(name):
    ours = str(getattr(T, name).default._schema)
    theirs = str(getattr(C, name).default._schema)
    assert ours.split("::", 1)[1] == theirs.split("::", 1)[1]
    assert ours.startswith("glo_kernels_triton::")


# ---------------------------------------------------------------------------------------------------------------
# ReLU / Leaky ReLU
# ---------------------------------------------------------------------------------------------------------------
MASK_CASES = [("relu", 0.0)] + [("leaky_relu", s) for s in SLOPES]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,slope", MASK_CASES)
@pytest.mark.parametrize("shape", [(1,), (31,), (33,), (1000,), (5, 7, 9), (4099,)])
def test_mask_forward_backward(op, slope, dtype, shape):
    x = make_input(shape, dtype, seed=sum(shape))
    numel = x.numel()
    (y, mask), (y_ref, mask_ref) = _fwd(op, *to_dev(x), slope, True), _fwd_cpp(op, x, slope, True)
    assert y.device.type == DEVICE and y.is_contiguous() and mask.dtype == torch.int32
    assert_bitwise(y, y_ref)
    assert torch.equal(mask.cpu(), mask_ref), "mask differs from the C++ one"
    y64, keep = mask_math(op, x, slope)
    assert_close_f64(y, y64)
    assert torch.equal(mask_bits(mask, numel), keep.flatten())
    words = (numel + 31) // 32
    assert mask.shape == (words + 2,), "ceil(numel / 32) words of bits, then 2 words of padding"
    if numel % 32:
        assert (int(mask[words - 1]) & 0xFFFFFFFF) >> (numel % 32) == 0, "bits past numel must be 0"
    assert mask[words:].tolist() == [0, 0], "the padding words are 0"
    # Without the mask: same y, empty mask.
    y2, m2 = _fwd(op, *to_dev(x), slope, False)
    assert m2.numel() == 0 and m2.dtype == torch.int32 and m2.shape == (0,)
    assert_bitwise(y2, y_ref)
    # Backward from the mask.
    g = make_input(shape, dtype, seed=7 + numel)
    bwd = op + "_backward"
    args = () if op == "relu" else (slope,)
    dx = getattr(T, bwd)(*to_dev(g, mask), *args)
    dx_ref = getattr(C, bwd)(g, mask_ref, *args)
    assert_bitwise(dx, dx_ref)
    g64 = g.double()
    if op == "relu":
        dx64 = torch.where(keep, g64, torch.zeros_like(g64))
    else:
        s = torch.tensor(slope, dtype=torch.float64 if dtype == torch.float64 else torch.float32).double()
        dx64 = torch.where(keep, g64, g64 * s)
    assert_close_f64(dx, dx64)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,slope", [("relu", 0.0), ("leaky_relu", 0.2)])
@pytest.mark.parametrize("contiguous", [True, False])
def test_mask_inplace(op, slope, dtype, contiguous):
    base = make_input((24, 37), dtype, seed=3)
    ours, ref = base.clone().to(DEVICE), base.clone()
    if not contiguous:
        ours, ref = ours.t(), ref.t()
    ptr, strides = ours.data_ptr(), ours.stride()
    fn_t, fn_c = getattr(T, op + "_"), getattr(C, op + "_")
    args = () if op == "relu" else (slope,)
    mask = fn_t(ours, *args, True)
    mask_ref = fn_c(ref, *args, True)
    assert ours.data_ptr() == ptr and ours.stride() == strides, "in-place op must keep x's storage and strides"
    assert_bitwise(ours, ref)
    assert torch.equal(mask.cpu(), mask_ref)
    assert mask.data_ptr() != ptr
    # save_mask=False: x still updated, empty mask.
    ours2 = base.clone().to(DEVICE)
    m2 = fn_t(ours2, *args, False)
    assert m2.numel() == 0
    ref2 = base.clone()
    assert fn_c(ref2, *args, False).numel() == 0
    assert_bitwise(ours2, ref2)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,slope", [("relu", 0.0), ("leaky_relu", 0.01)])
def test_mask_noncontiguous_input(op, slope, dtype):
    base = make_input((40, 30), dtype, seed=11)
    for view in (lambda t: t.t(), lambda t: t[::2, 1::3], lambda t: t.unsqueeze(0).expand(2, 40, 30)):
        x = view(base)
        (y, mask), (y_ref, mask_ref) = _fwd(op, view(base.to(DEVICE)), slope, True), _fwd_cpp(op, x, slope, True)
        assert y.is_contiguous() and y.shape == x.shape
        assert_bitwise(y, y_ref)
        assert torch.equal(mask.cpu(), mask_ref)
        g = view(make_input((40, 30), dtype, seed=12))
        bwd, args = op + "_backward", (() if op == "relu" else (slope,))
        assert_bitwise(getattr(T, bwd)(g.to(DEVICE), mask, *args),
                       getattr(C, bwd)(g, mask_ref, *args))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,slope", [("relu", 0.0), ("leaky_relu", 0.01)])
def test_mask_empty_and_scalar(op, slope, dtype):
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        x = torch.empty(shape, dtype=dtype)
        for save in (True, False):
            (y, mask), (y_ref, mask_ref) = _fwd(op, *to_dev(x), slope, save), _fwd_cpp(op, x, slope, save)
            # (a saved mask of no element is its 2 padding words, zero)
            assert y.shape == y_ref.shape and y.dtype == dtype and mask.shape == mask_ref.shape == ((2,) if save else (0,))
            assert mask.cpu().tolist() == mask_ref.tolist() == ([0, 0] if save else [])
        xi = x.clone().to(DEVICE)
        fn = getattr(T, op + "_")
        assert (fn(xi, True) if op == "relu" else fn(xi, slope, True)).tolist() == [0, 0]
        bwd, args = op + "_backward", (() if op == "relu" else (slope,))
        dx = getattr(T, bwd)(*to_dev(torch.empty(shape, dtype=dtype), torch.zeros(2, dtype=torch.int32)), *args)
        assert dx.shape == shape and dx.dtype == dtype
    for v in (-2.5, 3.0, -0.0, float("nan")):
        x = torch.tensor(v, dtype=dtype)
        (y, mask), (y_ref, mask_ref) = _fwd(op, *to_dev(x), slope, True), _fwd_cpp(op, x, slope, True)
        assert y.shape == () and mask.shape == (3,)
        assert_bitwise(y, y_ref)
        assert torch.equal(mask.cpu(), mask_ref)
        g = torch.tensor(1.5, dtype=dtype)
        bwd, args = op + "_backward", (() if op == "relu" else (slope,))
        assert_bitwise(getattr(T, bwd)(*to_dev(g, mask), *args), getattr(C, bwd)(g, mask_ref, *args))


def test_outputs_are_fresh():
    x = make_input((100,), torch.float32).to(DEVICE)
    y, mask = T.relu(x, True)
    assert y.data_ptr() != x.data_ptr()
    g = make_input((100,), torch.float32, seed=1).to(DEVICE)
    dx = T.relu_backward(g, mask)
    assert dx.data_ptr() != g.data_ptr()
    for y, dx in [(T.elu(x, 1.0), T.elu_backward(g, x, 1.0, False)), (T.sigmoid(x), T.sigmoid_backward(g, x)),
                  (T.tanh(x), T.tanh_backward(g, x))]:
        assert y.data_ptr() != x.data_ptr() and dx.data_ptr() not in (x.data_ptr(), g.data_ptr())


# ---------------------------------------------------------------------------------------------------------------
# ELU, sigmoid, tanh (backward from a saved tensor)
# ---------------------------------------------------------------------------------------------------------------
# Error bounds. In opmath: relative to a scale (|exact value| unless cancellation makes it larger), a few ulp (the
# kernels measure <= ~2 ulp against float64 torch; the C++ functors, with the C library's functions, ~1 ulp). Then one
# rounding to a 16-bit dtype: half an ulp, relative. Absolute floors: half the smallest subnormal of the dtype, and the
# smallest normal of opmath, below which results may have lost bits to underflow in opmath (exp(x) of ELU's backward
# for x < -87.3 in float32; test_unary_exact_values checks sigmoid's subnormal results more tightly).
_OP_RTOL = {torch.float64: 1e-15, torch.float32: 4e-7, torch.bfloat16: 4e-7, torch.float16: 4e-7}
if DEVICE == "cuda":  # 16-bit results on a GPU come from the cheaper float32 forms (kernels.py, _exp16): their bound
    _OP_RTOL[torch.bfloat16] = _OP_RTOL[torch.float16] = K.FAST16_REL_ERROR
_OUT_RTOL = {torch.float64: 0.0, torch.float32: 0.0, torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
_ATOL = {torch.float64: 2.0 ** -1022, torch.float32: 2.0 ** -126, torch.bfloat16: 2.0 ** -126,
         torch.float16: 2.0 ** -25}
# ELU alphas: the usual one, one not exact in binary (float64 must keep all its bits), zero, negative (forward and
# backward from the input only: the backward from the output needs alpha >= 0).
UNARY_CASES = [("elu", 1.0), ("elu", 1.0 / 3.0), ("elu", 0.0), ("elu", -0.5)] + [(n, None) for n in UNARY_NAMES]
# (one ELU case and the unary family, for the slower tests)
UNARY_CASES_SHORT = [("elu", 1.0)] + [(n, None) for n in UNARY_NAMES]


def _opmath_of(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def max_rel_error(actual: torch.Tensor, expected64: torch.Tensor) -> float:
    """Largest |actual - expected| / |expected| over finite, non-zero expected values above the dtype's floor."""
    a, e = actual.cpu().double(), expected64.double()
    keep = torch.isfinite(e) & (e.abs() > _ATOL[actual.dtype])
    return float(((a - e).abs()[keep] / e.abs()[keep]).max()) if keep.any() else 0.0


def assert_within(actual: torch.Tensor, expected: torch.Tensor, scale: torch.Tensor | None = None, factor: float = 1.0,
                  what: str = "") -> None:
    """actual (a tensor of its dtype) against expected (float64 math, or another implementation's result): NaNs and
    infinities at the same places, zeros of the same sign where expected is an exact zero, finite values within
    factor * (op_rtol * scale + out_rtol * |expected| + atol) of the dtype (scale: |expected| unless given)."""
    dtype = actual.dtype
    a, e = actual.cpu().double(), expected.cpu().double()
    assert a.shape == e.shape
    nan_a, nan_e = torch.isnan(a), torch.isnan(e)
    assert torch.equal(nan_a, nan_e), f"{what}: NaN positions differ: {a[nan_a != nan_e][:8].tolist()} vs " \
                                      f"{e[nan_a != nan_e][:8].tolist()}"
    inf_e = torch.isinf(e)
    assert torch.equal(a[inf_e], e[inf_e]), f"{what}: infinities differ"
    fin = torch.isfinite(e)
    scale = e.abs() if scale is None else scale.cpu().double().abs()
    scale = torch.where(torch.isfinite(scale), scale, torch.zeros_like(scale))  # (a finite dx of a NaN dy: 0 * NaN)
    bound = factor * (_OP_RTOL[dtype] * scale + _OUT_RTOL[dtype] * e.abs() + _ATOL[dtype])
    err = (a - e).abs()
    bad = fin & ~(err <= bound)
    if bad.any():
        idx = bad.nonzero()[:6].flatten()
        raise AssertionError(f"{what}: {int(bad.sum())} values out of bounds, e.g. {a[bad][:6].tolist()} vs "
                             f"{e[bad][:6].tolist()} at {idx.tolist()}; max relative error {max_rel_error(actual, e)}")
    zero = (e == 0) & (a == 0)
    assert torch.equal(torch.signbit(a[zero]), torch.signbit(e[zero])), f"{what}: signs of zeros differ"


def unary_math(op: str, x: torch.Tensor, alpha) -> torch.Tensor:
    """The forward of op on x (values of its dtype) in float64 (float64 torch), alpha rounded to opmath."""
    x64 = x.double()
    if op == "elu":
        a = torch.tensor(alpha, dtype=_opmath_of(x.dtype)).double()
        return torch.where(x64 < 0, torch.expm1(x64) * a, x64)
    return getattr(reference, op)(x64)  # (the reference: torch's twin in float64, where torch is right there)


def unary_backward_math(op: str, g: torch.Tensor, saved: torch.Tensor, alpha, is_result: bool):
    """(dx64, scale): the backward in float64 and the magnitude its opmath error is relative to."""
    g64, s64 = g.double(), saved.double()
    a = torch.tensor(alpha if alpha is not None else 0.0, dtype=_opmath_of(g.dtype)).double()
    if op == "elu" and not is_result:
        dx = torch.where(s64 > 0, g64, g64 * a * torch.exp(s64))  # a NaN input gives NaN
        return dx, dx
    if op == "elu":
        dx = torch.where(s64 > 0, g64, g64 * (s64 + a))  # y + alpha is one rounding: no cancellation error
        return dx, dx
    if op == "sigmoid":
        dx = g64 * (1 - s64) * s64  # 1 - y is one rounding too
        return dx, dx
    if op == "tanh":  # y * y is rounded before 1 - y * y (unless fused): the error is relative to |dy| * (1 + y * y)
        return g64 * (1 - s64 * s64), g64.abs() * (1 + s64 * s64)
    spec = UNARY_BY_NAME[op]
    assert spec.saved == "x", f"{op}: no float64 formula of its backward from the output here"
    # from the input: the reference differentiated in float64 (torch's twin, or its formula where torch's float64
    # gradient is off: hardsigmoid's float32 1/6; NaN propagating: hardswish); its derivative's terms are O(1), so
    # where it cancels the error is relative to |dy|
    x64 = s64.clone().requires_grad_()
    (dx,) = torch.autograd.grad(getattr(reference, op)(x64), x64, g64)
    return dx, dx.abs() + g64.abs()


def _uargs(op, alpha):
    return () if alpha is None else (alpha,)


def _is_result_modes(op, alpha):
    """The backwards of op: ELU from the input, and from the output where alpha >= 0; the unary family from what its
    spec saves (is_result: the output y)."""
    if op != "elu":
        return (UNARY_BY_NAME[op].saved == "y",)
    return (False, True) if alpha >= 0 else (False,)


def _unary_bwd(ns, op, g, saved, alpha, is_result):
    if op == "elu":
        return ns.elu_backward(g, saved, alpha, is_result)
    return getattr(ns, op + "_backward")(g, saved)


def unary_sweep(dtype) -> torch.Tensor:
    """Both signs of magnitudes from tiny (1e-30, 1e-300 for float64) to 100 on a log scale, and [0, 20] linearly."""
    lo = -300 if dtype == torch.float64 else -30
    mags = torch.cat([torch.logspace(lo, 2, 3000, dtype=torch.float64),
                      torch.linspace(0, 20, 3000, dtype=torch.float64)])
    return torch.cat([mags, -mags]).to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,alpha", UNARY_CASES)
@pytest.mark.parametrize("shape", [(1,), (33,), (5, 7, 9), (4099,)])
def test_unary_forward_backward(op, alpha, dtype, shape):
    x = make_input(shape, dtype, seed=sum(shape))
    args = _uargs(op, alpha)
    y = getattr(T, op)(*to_dev(x), *args)
    y_ref = getattr(C, op)(x, *args)
    assert y.device.type == DEVICE and y.is_contiguous() and y.shape == x.shape and y.dtype == dtype
    assert_within(y, unary_math(op, x, alpha), what="vs float64")
    assert_within(y, y_ref, factor=2, what="vs C++")
    if op == "elu":  # x >= 0, -0.0 and NaN pass unchanged, bit for bit
        same = ~(x < 0)
        assert_bitwise(y.cpu()[same], x[same])
    # Backward: from the saved input (ELU), from the output (ELU with alpha >= 0, sigmoid, tanh).
    g = make_input(shape, dtype, seed=7 + x.numel(), specials=False)
    for is_result in _is_result_modes(op, alpha):
        saved = y.cpu() if is_result else x
        dx = _unary_bwd(T, op, *to_dev(g, saved), alpha, is_result)
        assert dx.is_contiguous() and dx.shape == x.shape and dx.dtype == dtype
        dx64, scale = unary_backward_math(op, g, saved, alpha, is_result)
        assert_within(dx, dx64, scale, what=f"backward (is_result={is_result}) vs float64")
        assert_within(dx, _unary_bwd(C, op, g, saved, alpha, is_result), scale, factor=2,
                      what=f"backward (is_result={is_result}) vs C++")
    # The backward on arbitrary (special) values of both inputs, against C++.
    g = make_input(shape, dtype, seed=9 + x.numel())
    s = make_input(shape, dtype, seed=10 + x.numel())
    for is_result in _is_result_modes(op, alpha):
        _, scale = unary_backward_math(op, g, s, alpha, is_result)
        assert_within(_unary_bwd(T, op, *to_dev(g, s), alpha, is_result), _unary_bwd(C, op, g, s, alpha, is_result),
                      scale, factor=2, what=f"backward of specials (is_result={is_result}) vs C++")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,alpha", [("elu", 1.6732632423543772)] + UNARY_CASES_SHORT)
def test_unary_accuracy(op, alpha, dtype):
    """Against float64 torch over magnitudes from 1e-30 (1e-300) to 100: expm1 near 0 (ELU), tanh(x) ~ x for tiny |x|
    and +-1 for large |x|; fp32 within a few ulp, fp64 within ~4 ulp, 16-bit dtypes within one rounding."""
    x = unary_sweep(dtype)
    y = getattr(T, op)(*to_dev(x), *_uargs(op, alpha))
    assert_within(y, unary_math(op, x, alpha), what=f"{op} sweep")
    assert_within(y, getattr(C, op)(x, *_uargs(op, alpha)), factor=2, what=f"{op} sweep vs C++")


def test_unary_exact_values():
    """Limits and signs that hold exactly in every dtype."""
    for dtype in DTYPES:
        x = torch.tensor([float("inf"), -float("inf"), 0.0, -0.0, float("nan"), 1e-30, -1e-30, 1e30, -1e30],
                         dtype=dtype)
        t, sg = T.tanh(*to_dev(x)).cpu(), T.sigmoid(*to_dev(x)).cpu()
        tiny = torch.tensor([1e-30, -1e-30], dtype=dtype)
        assert_bitwise(t, torch.cat([torch.tensor([1.0, -1.0, 0.0, -0.0, float("nan")], dtype=dtype), tiny,
                                     torch.tensor([1.0, -1.0], dtype=dtype)]))
        assert_bitwise(sg, torch.tensor([1.0, 0.0, 0.5, 0.5, float("nan"), 0.5, 0.5, 1.0, 0.0], dtype=dtype))
        e = T.elu(*to_dev(x), 2.0).cpu()
        assert_bitwise(e, torch.tensor([float("inf"), -2.0, 0.0, -0.0, float("nan"), 1e-30, -2e-30, 1e30, -2.0],
                                       dtype=dtype))
    # sigmoid keeps the precision of tiny results (e * (1 / (1 + e)), e = exp(x) for x < 0), subnormal ones too
    for dtype, xs in [(torch.float32, [-80.0, -90.0, -100.0, -103.0]), (torch.float64, [-700.0, -710.0, -740.0])]:
        x = torch.tensor(xs, dtype=dtype)
        y = T.sigmoid(*to_dev(x)).cpu().double()
        exact = torch.tensor([float(Decimal(v).exp() / (1 + Decimal(v).exp())) for v in xs], dtype=torch.float64)
        sub = 2.0 ** -149 if dtype == torch.float32 else 5e-324
        assert torch.all((y - exact).abs() <= _OP_RTOL[dtype] * exact + sub / 2), (y, exact)
        assert torch.all(y > 0)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("contiguous", [True, False])
def test_elu_inplace(dtype, contiguous):
    base = make_input((24, 37), dtype, seed=3)
    for alpha in (1.0, 1.0 / 3.0, -0.5):
        ours, ref = base.clone().to(DEVICE), base.clone()
        if not contiguous:
            ours, ref = ours.t(), ref.t()
        ptr, strides = ours.data_ptr(), ours.stride()
        out_of_place = T.elu(ours, alpha)
        assert T.elu_(ours, alpha) is None
        assert C.elu_(ref, alpha) is None
        assert ours.data_ptr() == ptr and ours.stride() == strides, "in-place op must keep x's storage and strides"
        assert_bitwise(ours, out_of_place.cpu())
        assert_within(ours, ref, factor=2, what="elu_ vs C++")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("op,alpha", UNARY_CASES_SHORT)
def test_unary_noncontiguous(op, alpha, dtype):
    base = make_input((40, 30), dtype, seed=11)
    gbase = make_input((40, 30), dtype, seed=12, specials=False)
    args = _uargs(op, alpha)
    for view in (lambda t: t.t(), lambda t: t[::2, 1::3], lambda t: t.unsqueeze(0).expand(2, 40, 30)):
        x, g = view(base.to(DEVICE)), view(gbase.to(DEVICE))
        y = getattr(T, op)(x, *args)
        assert y.is_contiguous() and y.shape == x.shape
        assert_bitwise(y, getattr(T, op)(x.contiguous(), *args).cpu())
        assert_within(y, getattr(C, op)(view(base), *args), factor=2, what="vs C++")
        (is_result,) = _is_result_modes(op, alpha)[:1]
        saved = view(getattr(T, op)(base.to(DEVICE), *args)) if is_result else x  # the output, or the input
        dx = _unary_bwd(T, op, g, saved, alpha, is_result)
        assert dx.is_contiguous() and dx.shape == x.shape
        assert_bitwise(dx, _unary_bwd(T, op, g.contiguous(), saved.contiguous(), alpha, is_result).cpu())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,alpha", UNARY_CASES_SHORT)
def test_unary_empty_and_scalar(op, alpha, dtype):
    args = _uargs(op, alpha)
    for shape in [(0,), (3, 0), (0, 5, 2)]:
        x = torch.empty(shape, dtype=dtype)
        y = getattr(T, op)(*to_dev(x), *args)
        assert y.shape == shape and y.dtype == dtype
        if op == "elu":
            assert T.elu_(*to_dev(x.clone()), alpha) is None
        for is_result in _is_result_modes(op, alpha):
            dx = _unary_bwd(T, op, *to_dev(x, x), alpha, is_result)
            assert dx.shape == shape and dx.dtype == dtype
    for v in (-2.5, 3.0, -0.0, float("nan"), -1e-30, float("-inf")):
        x = torch.tensor(v, dtype=dtype)
        y = getattr(T, op)(*to_dev(x), *args)
        assert y.shape == ()
        assert_within(y, getattr(C, op)(x, *args), factor=2, what=f"{op}({v})")
        assert_within(y, unary_math(op, x, alpha), what=f"{op}({v}) vs float64")
        if op == "elu":
            xi = x.clone().to(DEVICE)
            T.elu_(xi, alpha)
            assert_bitwise(xi, y.cpu())
        g = torch.tensor(1.5, dtype=dtype)
        for is_result in _is_result_modes(op, alpha):
            saved = y.cpu() if is_result else x
            _, scale = unary_backward_math(op, g, saved, alpha, is_result)
            dx = _unary_bwd(T, op, *to_dev(g, saved), alpha, is_result)
            assert dx.shape == ()
            assert_within(dx, _unary_bwd(C, op, g, saved, alpha, is_result), scale, factor=2)


# ---------------------------------------------------------------------------------------------------------------
# PReLU
# ---------------------------------------------------------------------------------------------------------------
PRELU_CASES = [
    # (x shape, weight shape)
    ((1000,), (1,)),
    ((1000,), ()),
    ((33,), (1,)),
    ((7, 5), (5,)),
    ((7, 5), (1,)),
    ((2000, 3), (3,)),  # two tiles over outer
    ((3, 1500), (1500,)),  # channel sum over several programs
    ((2, 3, 5, 7), (3,)),
    ((2, 3, 5, 7), (1,)),
    ((4, 16, 9, 9), (16,)),
    ((3, 5, 4097), (5,)),  # many tiles over inner
    ((1, 1, 10000), (1,)),  # (1, 1, inner) with several inner tiles
    ((), ()),
    ((), (1,)),
]


def _prelu_math(x, w, g):
    """(y64, dx64, dw64) in float64 of PReLU, from x, w (opmath values of the dtype's numbers) and g."""
    x64, g64 = x.double(), g.double()
    w64 = w.double().reshape(-1)
    if w64.numel() == 1:
        wb = w64.reshape([1] * x.dim()) if x.dim() else w64.reshape(())
    else:
        wb = w64.reshape([1, -1] + [1] * (x.dim() - 2))
    pos = x64 > 0
    y64 = torch.where(pos, x64, wb * x64)
    dx64 = torch.where(pos, g64, wb * g64)
    terms = torch.where(pos, torch.zeros_like(x64), x64 * g64)
    if w64.numel() == 1:
        dw64, abs64 = terms.sum().reshape(w.shape), terms.abs().sum().reshape(w.shape)
    else:
        dims = [d for d in range(x.dim()) if d != 1]
        dw64, abs64 = terms.sum(dims), terms.abs().sum(dims)
    return y64, dx64, dw64, abs64


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("xshape,wshape", PRELU_CASES, ids=lambda v: "x".join(map(str, v)) or "0d")
def test_prelu(xshape, wshape, dtype):
    n = math.prod(xshape)
    x = make_input(xshape, dtype, seed=n, specials=(n >= 100))
    # weights: positive, negative and zero, exactly representable in every dtype
    w = ((torch.arange(max(1, math.prod(wshape)), dtype=torch.float64) % 7) * 0.25 - 0.5).reshape(wshape).to(dtype)
    g = make_input(xshape, dtype, seed=n + 1, specials=False)

    y = T.prelu(*to_dev(x, w))
    y_ref = C.prelu(x, w)
    assert y.is_contiguous() and y.shape == x.shape
    assert_bitwise(y, y_ref)

    dx, dw = T.prelu_backward(*to_dev(g, x, w))
    dx_ref, dw_ref = C.prelu_backward(g, x, w)
    assert_bitwise(dx, dx_ref)
    assert dw.shape == w.shape and dw.dtype == dtype

    y64, dx64, dw64, abs64 = _prelu_math(x, w, g)
    assert_close_f64(y, y64)
    assert_close_f64(dx, dx64)
    # dw: accumulated in float32 (float64 for float64 data) in a fixed tiling, then rounded once to the dtype.
    acc_eps = 2.0 ** -52 if dtype == torch.float64 else 2.0 ** -23
    out_eps = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8,
               torch.float16: 2.0 ** -11}[dtype]
    nan_ok = torch.isnan(dw64) | torch.isinf(dw64)
    err = (dw.cpu().double() - dw64).abs()
    bound = out_eps * dw64.abs() * 1.001 + 4 * math.log2(max(2, n)) * acc_eps * abs64 * (1 + out_eps) + 1e-300
    assert torch.all((err <= bound) | nan_ok), f"dw {dw.cpu().tolist()} vs float64 {dw64.tolist()}"
    assert torch.equal(torch.isnan(dw.cpu()), torch.isnan(dw_ref))
    # and against the C++ result (accumulated in double): within the same bound
    err_ref = (dw.cpu().double() - dw_ref.double()).abs()
    assert torch.all((err_ref <= 2 * bound) | nan_ok)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_prelu_special_values(dtype):
    x = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e30, -1e30, 1e-30, -1e-30, 2.0, -2.0],
                     dtype=dtype).repeat(3, 1).t().contiguous()  # (11, 3)
    w = torch.tensor([0.25, -1.5, 0.0], dtype=dtype)
    g = torch.tensor([1.0, -2.0, 1e30], dtype=dtype).repeat(11, 1)
    assert_bitwise(T.prelu(*to_dev(x, w)), C.prelu(x, w))
    dx, dw = T.prelu_backward(*to_dev(g, x, w))
    dx_ref, dw_ref = C.prelu_backward(g, x, w)
    assert_bitwise(dx, dx_ref)
    assert torch.equal(torch.isnan(dw.cpu()), torch.isnan(dw_ref))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_prelu_noncontiguous_and_empty(dtype):
    base = make_input((6, 4, 5, 3), dtype, seed=5, specials=False)
    x = base.permute(0, 3, 2, 1)  # (6, 3, 5, 4), channels = 3, not contiguous
    w = torch.tensor([0.5, -0.25, 2.0], dtype=dtype)
    g = make_input((6, 3, 5, 4), dtype, seed=6).transpose(2, 3).contiguous().transpose(2, 3)
    assert_bitwise(T.prelu(*to_dev(x, w)), C.prelu(x, w))
    dx, dw = T.prelu_backward(*to_dev(g, x, w))
    dx_ref, dw_ref = C.prelu_backward(g, x, w)
    assert dx.is_contiguous()
    assert_bitwise(dx, dx_ref)
    torch.testing.assert_close(dw.cpu(), dw_ref, rtol=2e-3, atol=1e-3)
    for xs, ws in [((0, 3), (3,)), ((4, 0), (1,)), ((2, 0, 5), (0,)), ((0,), (1,))]:
        xe, we = torch.empty(xs, dtype=dtype), torch.full(ws, 0.5, dtype=dtype)
        y = T.prelu(*to_dev(xe, we))
        assert y.shape == xs
        dx, dw = T.prelu_backward(*to_dev(xe, xe, we))
        dx_ref, dw_ref = C.prelu_backward(xe, xe, we)
        assert dx.shape == xs and dw.shape == dw_ref.shape
        assert torch.equal(dw.cpu(), dw_ref)  # zeros


def test_prelu_deterministic():
    x = make_input((3, 5, 4097), torch.float32, seed=1, specials=False).to(DEVICE)
    g = make_input((3, 5, 4097), torch.float32, seed=2, specials=False).to(DEVICE)
    w = torch.full((5,), 0.25).to(DEVICE)
    a = T.prelu_backward(g, x, w)
    b = T.prelu_backward(g, x, w)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("rows,channels", [(37, 1500), (5000, 1), (3, 7), (1, 2049)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_channel_sum(rows, channels, dtype):
    """The second pass of the PReLU weight gradient, with more rows than one tile holds."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    partial = make_input((rows, channels), acc, seed=rows, specials=False).to(DEVICE)
    out = torch.empty(channels, dtype=dtype, device=DEVICE)
    K.channel_sum(partial, out)
    exact = partial.cpu().double().sum(0)
    rtol, _ = _ULP[dtype]
    bound = rtol * exact.abs() + 4 * math.log2(max(2, rows)) * _ULP[acc][0] * partial.cpu().double().abs().sum(0)
    assert torch.all((out.cpu().double() - exact).abs() <= bound)
    again = torch.empty_like(out)
    K.channel_sum(partial, again)
    assert torch.equal(out, again)


# ---------------------------------------------------------------------------------------------------------------
# Tiling of the PReLU kernels (host-side arithmetic only)
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("geom", [(64, 262144, 1), (32, 64, 3136), (1, 1, 2 ** 24), (2 ** 20, 4, 1), (2, 3, 2 ** 20),
                                  (8, 512, 49), (1, 4096, 7), (256, 3, 224 * 224), (1, 1, 10000)])
def test_prelu_tiles_keep_partial_small(geom):
    outer, channels, inner = geom
    nb, cb, sb = K.channel_tiles(outer, channels, inner)
    assert all(v & (v - 1) == 0 for v in (nb, cb, sb)) and nb * cb * sb <= K.CHANNEL_TILE
    numel = outer * channels * inner
    partial = K.channel_partial_rows(outer, channels, inner) * channels
    # at most one row per 32 outer*inner positions (always at least `channels` entries)
    assert partial <= max(channels, numel // 32), (geom, (nb, cb, sb), partial)
    if numel >= 64 * K.CHANNEL_TILE:
        assert nb * cb * sb >= K.CHANNEL_TILE // 2, "tiles should stay large"


# ---------------------------------------------------------------------------------------------------------------
# PELU
# ---------------------------------------------------------------------------------------------------------------
PELU_CASES = [
    # (x shape, shape of a and b)
    ((1000,), (1,)),
    ((1000,), ()),
    ((7, 5), (5,)),
    ((7, 5), (1,)),
    ((2000, 3), (3,)),  # two tiles over outer
    ((3, 1500), (1500,)),  # channel sums over several programs
    ((2, 3, 5, 7), (3,)),
    ((2, 3, 5, 7), (1,)),
    ((3, 5, 4097), (5,)),  # many tiles over inner
    ((), ()),
    ((), (1,)),
]


def pelu_params(shape, dtype, negative_b=False):
    """(a, b) of `shape`: a in [0.25, 1.85], b in [0.3, 2.4] (values not exact in binary among them), rounded to
    dtype; with negative_b, b's second element is negative (outside PELU's domain, but the ops take it)."""
    k = torch.arange(max(1, math.prod(shape)), dtype=torch.float64)
    a = 0.25 + (k % 5) * 0.4
    b = 0.3 + (k % 4) * 0.7
    if negative_b and b.numel() > 1:
        b[1] = -0.5
    return a.reshape(shape).to(dtype), b.reshape(shape).to(dtype)


def _param_view(p64, x):
    if p64.numel() == 1:
        return p64.reshape([1] * x.dim()) if x.dim() else p64.reshape(())
    return p64.reshape([1, -1] + [1] * (x.dim() - 2))


def pelu_math(x, a, b, g):
    """The element math of PELU<T> in float64 on the dtype's values: y, dx and the da / db terms, each with the
    magnitude its opmath error is relative to (a few roundings of the value itself, plus |u| exp(u) where the
    rounding of u = x / b enters exp or expm1)."""
    x64, g64 = x.double(), g.double()
    a64, b64 = _param_view(a.double().reshape(-1), x), _param_view(b.double().reshape(-1), x)
    pos = x64 >= 0
    r = a64 / b64
    u = x64 / b64
    un = torch.where(pos, torch.zeros_like(u), u)
    e, em1 = torch.exp(un), torch.expm1(un)
    cond = 1 + un.abs()  # error growth of exp(u) from the rounding of u
    ue = (un.abs() * e).nan_to_num(nan=0.0)  # (at u = -inf: 0)
    y = torch.where(pos, r * x64, a64 * em1)
    y_scale = torch.where(pos, y.abs(), a64.abs() * (em1.abs() + ue))
    ge = torch.where(pos, g64, g64 * e)
    dx = r * ge
    da_t = torch.where(pos, u * g64, em1 * g64)
    da_scale = torch.where(pos, da_t.abs(), g64.abs() * (em1.abs() + ue))
    db_t = -(r * u) * ge
    # the scales are NaN only as 0 * inf where the value is an exact 0 (exp(-inf) = 0): then no error is allowed
    return (y, y_scale.nan_to_num(nan=0.0), dx, (dx.abs() * cond).nan_to_num(nan=0.0), da_t,
            da_scale.nan_to_num(nan=0.0), db_t, (db_t.abs() * cond).nan_to_num(nan=0.0))


def _param_sum(t, p):
    if p.numel() == 1 or t.dim() < 2:
        return t.sum().reshape(p.shape)
    return t.sum([d for d in range(t.dim()) if d != 1])


def param_grad_bound(dtype, terms, scales, p, n):
    """(float64 sum of the terms, error bound) of a parameter gradient: the terms summed in float32 (float64 for
    float64 data) in a fixed tiling, then rounded once to the dtype. The bound adds the terms' own opmath errors, the
    accumulation bound 4 log2(n) eps_acc sum |term| and the final rounding."""
    acc_eps = 2.0 ** -52 if dtype == torch.float64 else 2.0 ** -23
    out_eps = {torch.float64: 2.0 ** -53, torch.float32: 2.0 ** -24, torch.bfloat16: 2.0 ** -8,
               torch.float16: 2.0 ** -11}[dtype]
    exact = _param_sum(terms, p)
    bound = (out_eps * exact.abs() * 1.001 + (_param_sum(_OP_RTOL[dtype] * scales, p)
             + 4 * math.log2(max(2, n)) * acc_eps * _param_sum(terms.abs(), p)) * (1 + out_eps) + _ATOL[dtype])
    return exact, bound


def _overflow_to_inf(v64, dtype):
    """v64 with the finite values beyond dtype's range replaced by the infinity they round to."""
    r = v64.to(dtype).double()
    return torch.where(torch.isinf(r) & torch.isfinite(v64), r, v64)


def check_pelu(x, a, b, g, what=""):
    """pelu and pelu_backward on (x, a, b, g) against float64 math and the C++ operators."""
    dtype = x.dtype
    y = T.pelu(*to_dev(x, a, b))
    y_ref = C.pelu(x, a, b)
    assert y.device.type == DEVICE and y.is_contiguous() and y.shape == x.shape and y.dtype == dtype
    dx, da, db = T.pelu_backward(*to_dev(g, x, a, b))
    dx_ref, da_ref, db_ref = C.pelu_backward(g, x, a, b)
    assert dx.is_contiguous() and dx.shape == x.shape and da.shape == a.shape and db.shape == b.shape
    assert da.dtype == db.dtype == dtype
    y64, ys, dx64, dxs, da_t, das, db_t, dbs = pelu_math(x, a, b, g)
    y64, dx64 = _overflow_to_inf(y64, dtype), _overflow_to_inf(dx64, dtype)
    assert_within(y, y64, ys, what=f"{what} y vs float64")
    assert_within(y, y_ref, ys, factor=2, what=f"{what} y vs C++")
    assert_within(dx, dx64, dxs, what=f"{what} dx vs float64")
    assert_within(dx, dx_ref, dxs, factor=2, what=f"{what} dx vs C++")
    # x >= 0 (-0.0 and +inf included): only products and quotients, rounded as in C++: the same bits
    pos = x.double() >= 0
    assert_bitwise(y.cpu()[pos], y_ref[pos])
    assert_bitwise(dx.cpu()[pos], dx_ref[pos])
    n = max(1, x.numel())
    for name, ours, ref, terms, scales, p in (("da", da, da_ref, da_t, das, a), ("db", db, db_ref, db_t, dbs, b)):
        exact, bound = param_grad_bound(dtype, terms, scales, p, n)
        fin = torch.isfinite(exact)
        err = (ours.cpu().double() - exact).abs()
        assert torch.all((err <= bound) | ~fin), f"{what} {name}: {ours.cpu().tolist()} vs float64 {exact.tolist()}"
        # the C++ sums (accumulated in double) are within the same bound: twice the bound between the two
        assert torch.equal(torch.isnan(ours.cpu()), torch.isnan(ref)), f"{what} {name}: NaNs differ from C++"
        fin_ref = torch.isfinite(ref)
        err_ref = (ours.cpu().double() - ref.double()).abs()
        assert torch.all((err_ref <= 2 * bound) | ~fin_ref), f"{what} {name}: {ours.cpu().tolist()} vs C++ " \
                                                             f"{ref.tolist()}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("xshape,pshape", PELU_CASES, ids=lambda v: "x".join(map(str, v)) or "0d")
def test_pelu(xshape, pshape, dtype):
    n = math.prod(xshape)
    x = make_input(xshape, dtype, seed=n + 3, specials=False)
    a, b = pelu_params(pshape, dtype, negative_b=(xshape == (7, 5)))
    g = make_input(xshape, dtype, seed=n + 4, specials=False)
    check_pelu(x, a, b, g, what=f"{xshape}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pelu_special_values(dtype):
    """NaN, +-inf, -0.0, huge, tiny and subnormal-producing inputs in every channel; infinite and NaN gradients."""
    vals = [float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e30, -1e30, 1e-30, -1e-30, 2.0, -2.0, -100.0,
            -1e-4, 60000.0]
    x = torch.tensor(vals, dtype=torch.float64).repeat(4, 1).t().contiguous().to(dtype)  # (14, 4)
    a = torch.tensor([1.0, 0.5, 2.0, 1.0 / 3.0], dtype=dtype)
    b = torch.tensor([1.0, 0.25, 3.0, 1.5], dtype=dtype)
    g = torch.tensor([1.0, -2.0, 1e30, 0.0], dtype=torch.float64).repeat(14, 1).to(dtype)
    g[0, 0], g[1, 1], g[2, 2] = float("inf"), float("nan"), -float("inf")
    check_pelu(x, a, b, g, what="specials")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_pelu_huge_positive_input_has_finite_gradients(dtype):
    """Only the selected side enters: exp(x / b) overflows for huge positive x, but no NaN and no inf comes out of it
    (the torch.where composite gives NaN there)."""
    x = torch.tensor([[1e30, -1.0], [3e4, 0.5]], dtype=dtype)
    a = torch.tensor([1.5, 0.5], dtype=dtype)
    b = torch.tensor([0.5, 2.0], dtype=dtype)
    g = torch.tensor([[1.0, 1.0], [-1.0, 2.0]], dtype=dtype)
    y = T.pelu(*to_dev(x, a, b))
    grads = T.pelu_backward(*to_dev(g, x, a, b))
    for t in (y, *grads):
        assert torch.isfinite(t.cpu()).all(), t
    check_pelu(x, a, b, g, what="huge")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_pelu_noncontiguous_and_empty(dtype):
    base = make_input((6, 4, 5, 3), dtype, seed=5, specials=False)
    x = base.permute(0, 3, 2, 1)  # (6, 3, 5, 4), channels = 3, not contiguous
    a = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64).to(dtype)
    b = torch.tensor([1.0, 0.25, 3.0, 0.0, 0.0, 0.0], dtype=torch.float64).to(dtype)[::2]  # a strided parameter
    g = make_input((6, 3, 5, 4), dtype, seed=6).transpose(2, 3).contiguous().transpose(2, 3)
    assert not x.is_contiguous() and not b.is_contiguous() and not g.is_contiguous()
    check_pelu(x, a, b, g, what="non-contiguous")
    assert_bitwise(T.pelu(*to_dev(x, a, b)), T.pelu(*to_dev(x.contiguous(), a, b.contiguous())).cpu())
    for xs, ps in [((0, 3), (3,)), ((4, 0), (1,)), ((2, 0, 5), (0,)), ((0,), (1,)), ((0,), ())]:
        xe, ae, be = torch.empty(xs, dtype=dtype), torch.full(ps, 0.5, dtype=dtype), torch.full(ps, 2.0, dtype=dtype)
        y = T.pelu(*to_dev(xe, ae, be))
        assert y.shape == xs and y.dtype == dtype
        dx, da, db = T.pelu_backward(*to_dev(xe, xe, ae, be))
        dx_ref, da_ref, db_ref = C.pelu_backward(xe, xe, ae, be)
        assert dx.shape == xs and da.shape == da_ref.shape and db.shape == db_ref.shape
        assert torch.equal(da.cpu(), da_ref) and torch.equal(db.cpu(), db_ref)  # zeros


def test_pelu_deterministic():
    x = make_input((3, 5, 2500), torch.float32, seed=1, specials=False).to(DEVICE)
    g = make_input((3, 5, 2500), torch.float32, seed=2, specials=False).to(DEVICE)
    a, b = (t.to(DEVICE) for t in pelu_params((5,), torch.float32))
    first = T.pelu_backward(g, x, a, b)
    again = T.pelu_backward(g, x, a, b)
    for u, v in zip(first, again):
        assert torch.equal(u, v)


# ---------------------------------------------------------------------------------------------------------------
# Maxout
# ---------------------------------------------------------------------------------------------------------------
MAXOUT_CASES = [
    # (x shape, pieces, dim)
    ((5, 6, 7), 1, 0),
    ((4, 6, 5), 1, -1),
    ((4, 3, 5), 2, 0),
    ((3, 8, 5), 2, 1),
    ((7, 6), 2, -1),
    ((2, 9, 5), 3, 1),
    ((4, 5, 12), 3, -1),
    ((6, 5), 3, 0),
    ((9,), 3, 0),
    ((3, 6, 1, 4), 2, 1),  # a size-1 dim after dim
    ((2, 256, 3), 256, 1),
    ((256, 4), 256, 0),
    ((3, 512), 256, -1),
    ((1,), 1, -1),
]


def maxout_input(shape, dtype, seed):
    """Values on a coarse grid (many ties, +0.0 against -0.0 too) with NaNs (some groups with several), +-inf."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-3, 4, shape, generator=g).double() * 0.5
    flat = x.view(-1)
    flat[flat == 0] = torch.where(torch.rand((flat == 0).sum(), generator=g) < 0.5, 0.0, -0.0).double()
    n = flat.numel()
    for v, frac in ((float("nan"), 0.08), (float("inf"), 0.02), (-float("inf"), 0.02)):
        idx = torch.randperm(n, generator=g)[: max(1, int(n * frac))] if n > 1 else torch.tensor([], dtype=torch.long)
        flat[idx] = v
    return x.to(dtype)


def strided(t):
    """A non-contiguous copy of t (every other element of a twice-as-long last dim)."""
    big = torch.zeros(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype)
    big[..., ::2] = t
    return big[..., ::2]


def maxout_math(x, pieces, dim):
    """(y, idx) of maxout in plain Python over the groups: the first maximal element, a NaN winning (the first NaN)."""
    d = dim % x.dim()
    moved = x.double().movedim(d, -1)  # [..., groups * pieces]
    rows = moved.reshape(-1, pieces).tolist()  # one row per (leading position, group)
    y, idx = [], []
    for row in rows:
        best, arg = row[0], 0
        for p in range(1, pieces):
            v = row[p]
            if v > best or (v != v and best == best):
                best, arg = v, p
        y.append(best)
        idx.append(arg)
    shape = (*moved.shape[:-1], moved.shape[-1] // pieces)
    y = torch.tensor(y, dtype=torch.float64).reshape(shape).movedim(-1, d)
    idx = torch.tensor(idx, dtype=torch.uint8).reshape(shape).movedim(-1, d)
    return y, idx


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape,pieces,dim", MAXOUT_CASES,
                         ids=lambda v: "x".join(map(str, v)) if isinstance(v, tuple) else str(v))
def test_maxout(shape, pieces, dim, dtype):
    x = maxout_input(shape, dtype, seed=math.prod(shape) + pieces)
    y, idx = T.maxout(*to_dev(x), pieces, dim, True)
    y_ref, idx_ref = C.maxout(x, pieces, dim, True)
    assert y.device.type == DEVICE and y.is_contiguous() and idx.dtype == torch.uint8 and idx.shape == y.shape
    assert_bitwise(y, y_ref)  # values, signs of zeros, NaN positions
    assert torch.equal(idx.cpu(), idx_ref)
    y64, idx64 = maxout_math(x, pieces, dim)
    assert_bitwise(y, y64.to(dtype))
    assert torch.equal(idx.cpu(), idx64)
    # without the indices: the same y, 0 indices
    y2, idx2 = T.maxout(*to_dev(x), pieces, dim, False)
    assert idx2.shape == (0,) and idx2.dtype == torch.uint8
    assert_bitwise(y2, y_ref)
    # backward: grad at the winners, +0.0 elsewhere (NaN and infinite gradients too)
    g = make_input(tuple(y_ref.shape), dtype, seed=pieces)
    dx = T.maxout_backward(*to_dev(g, idx), pieces, dim)
    dx_ref = C.maxout_backward(g, idx_ref, pieces, dim)
    assert dx.is_contiguous() and dx.shape == x.shape
    assert_bitwise(dx, dx_ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_maxout_noncontiguous_and_empty(dtype):
    base = maxout_input((6, 4, 10), dtype, seed=4)
    for view, pieces, dim in [(lambda t: t.transpose(0, 2), 2, 0), (lambda t: t[:, ::2, :], 5, -1),
                              (lambda t: t.permute(1, 2, 0), 3, 2)]:
        x = view(base)
        assert not x.is_contiguous()
        y, idx = T.maxout(view(base.to(DEVICE)), pieces, dim, True)
        y_ref, idx_ref = C.maxout(x, pieces, dim, True)
        assert_bitwise(y, y_ref)
        assert torch.equal(idx.cpu(), idx_ref)
        g, idx_nc = strided(make_input(tuple(y_ref.shape), dtype, seed=2)), strided(idx_ref)
        assert not g.is_contiguous() and not idx_nc.is_contiguous()
        assert_bitwise(T.maxout_backward(*to_dev(g, idx_nc), pieces, dim), C.maxout_backward(g, idx_ref, pieces, dim))
    for shape, pieces, dim in [((0, 4), 2, 1), ((3, 0), 5, 1), ((0,), 7, 0), ((2, 0, 6), 3, -1), ((4, 6, 0), 3, 1)]:
        x = torch.empty(shape, dtype=dtype)
        for save in (True, False):
            y, idx = T.maxout(*to_dev(x), pieces, dim, save)
            y_ref, idx_ref = C.maxout(x, pieces, dim, save)
            assert y.shape == y_ref.shape and y.dtype == dtype
            assert idx.shape == idx_ref.shape and idx.dtype == torch.uint8
        ge, ie = torch.empty(y_ref.shape, dtype=dtype), torch.empty(y_ref.shape, dtype=torch.uint8)
        dx = T.maxout_backward(*to_dev(ge, ie), pieces, dim)
        assert dx.shape == shape and dx.dtype == dtype


# ---------------------------------------------------------------------------------------------------------------
# Errors: same checks and texts as the C++ operators
# ---------------------------------------------------------------------------------------------------------------
def _message(fn):
    with pytest.raises(RuntimeError) as info:
        fn()
    return str(info.value)


ERROR_CASES = {
    "relu_int": ("relu", lambda: (torch.zeros(3, dtype=torch.long), True)),
    "relu_complex": ("relu", lambda: (torch.zeros(3, dtype=torch.complex64), True)),
    "relu_float8": ("relu", lambda: (torch.zeros(3, dtype=torch.float8_e4m3fn), True)),
    "relu__int": ("relu_", lambda: (torch.zeros(3, dtype=torch.int32), False)),
    "leaky_relu_int": ("leaky_relu", lambda: (torch.zeros(3, dtype=torch.long), 0.1, True)),
    "relu_backward_short_mask": ("relu_backward", lambda: (torch.zeros(40), torch.zeros(1, dtype=torch.int32))),
    "relu_backward_2d_mask": ("relu_backward", lambda: (torch.zeros(3, 5), torch.zeros(1, 1, dtype=torch.int32))),
    "relu_backward_long_mask": ("relu_backward", lambda: (torch.zeros(3), torch.zeros(1, dtype=torch.long))),
    "relu_backward_empty_mask": ("relu_backward", lambda: (torch.zeros(3), torch.zeros(0, dtype=torch.int32))),
    "relu_backward_int_grad": ("relu_backward", lambda: (torch.zeros(3, dtype=torch.long),
                                                         torch.zeros(1, dtype=torch.int32))),
    "leaky_backward_mask": ("leaky_relu_backward", lambda: (torch.zeros(3), torch.zeros(2, dtype=torch.int32), 0.1)),
    "prelu_count": ("prelu", lambda: (torch.zeros(3, 5), torch.zeros(4))),
    "prelu_dtype": ("prelu", lambda: (torch.zeros(3, 5), torch.zeros(5, dtype=torch.float64))),
    "prelu_2d_weight": ("prelu", lambda: (torch.zeros(3, 5), torch.zeros(5, 1))),
    "prelu_0d_x": ("prelu", lambda: (torch.zeros(()), torch.zeros(2))),
    "prelu_1d_x": ("prelu", lambda: (torch.zeros(5), torch.zeros(5))),
    "prelu_int": ("prelu", lambda: (torch.zeros(3, 5, dtype=torch.int32), torch.zeros(5, dtype=torch.int32))),
    "prelu_backward_shape": ("prelu_backward", lambda: (torch.zeros(3, 5), torch.zeros(3, 4), torch.zeros(1))),
    "prelu_backward_dtype": ("prelu_backward", lambda: (torch.zeros(3, 5, dtype=torch.float64), torch.zeros(3, 5),
                                                        torch.zeros(1))),
    "prelu_backward_int_grad": ("prelu_backward", lambda: (torch.zeros(3, dtype=torch.long), torch.zeros(3),
                                                           torch.zeros(1))),
    "prelu_backward_weight": ("prelu_backward", lambda: (torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(2))),
    "pelu_int": ("pelu", lambda: (torch.zeros(3, 5, dtype=torch.int32), torch.zeros(5), torch.zeros(5))),
    "pelu_a_count": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(4), torch.zeros(5))),
    "pelu_b_count": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(5), torch.zeros(4))),
    "pelu_ab_mismatch": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(5), torch.zeros(1))),
    "pelu_ab_mismatch_shared_a": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(()), torch.zeros(5))),
    "pelu_b_dtype": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(5), torch.zeros(5, dtype=torch.float64))),
    "pelu_a_2d": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(5, 1), torch.zeros(5))),
    "pelu_b_2d": ("pelu", lambda: (torch.zeros(3, 5), torch.zeros(5), torch.zeros(1, 5))),
    "pelu_0d_x": ("pelu", lambda: (torch.zeros(()), torch.zeros(2), torch.zeros(2))),
    "pelu_backward_shape": ("pelu_backward", lambda: (torch.zeros(3, 5), torch.zeros(3, 4), torch.zeros(1),
                                                      torch.zeros(1))),
    "pelu_backward_dtype": ("pelu_backward", lambda: (torch.zeros(3, 5, dtype=torch.float16), torch.zeros(3, 5),
                                                      torch.zeros(1), torch.zeros(1))),
    "pelu_backward_int_x": ("pelu_backward", lambda: (torch.zeros(3), torch.zeros(3, dtype=torch.long),
                                                      torch.zeros(1), torch.zeros(1))),
    "pelu_backward_b": ("pelu_backward", lambda: (torch.zeros(3, 5), torch.zeros(3, 5), torch.zeros(5),
                                                  torch.zeros(2))),
    "maxout_int": ("maxout", lambda: (torch.zeros(4, dtype=torch.long), 2, 0, True)),
    "maxout_0d": ("maxout", lambda: (torch.zeros(()), 1, 0, True)),
    "maxout_dim_high": ("maxout", lambda: (torch.zeros(4, 6), 2, 2, True)),
    "maxout_dim_low": ("maxout", lambda: (torch.zeros(4, 6), 2, -3, False)),
    "maxout_pieces_0": ("maxout", lambda: (torch.zeros(4, 6), 0, 1, True)),
    "maxout_pieces_257": ("maxout", lambda: (torch.zeros(4, 257 * 2), 257, 1, True)),
    "maxout_pieces_negative": ("maxout", lambda: (torch.zeros(4, 6), -2, 1, True)),
    "maxout_indivisible": ("maxout", lambda: (torch.zeros(4, 6), 4, -1, True)),
    "maxout_indivisible_dim0": ("maxout", lambda: (torch.zeros(5, 6), 2, 0, True)),
    "maxout_backward_int_grad": ("maxout_backward", lambda: (torch.zeros(3, dtype=torch.int32),
                                                             torch.zeros(3, dtype=torch.uint8), 2, 0)),
    "maxout_backward_0d": ("maxout_backward", lambda: (torch.zeros(()), torch.zeros((), dtype=torch.uint8), 2, 0)),
    "maxout_backward_dim": ("maxout_backward", lambda: (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.uint8), 2,
                                                        -3)),
    "maxout_backward_idx_dtype": ("maxout_backward", lambda: (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long),
                                                              2, 1)),
    "maxout_backward_idx_shape": ("maxout_backward", lambda: (torch.zeros(2, 3), torch.zeros(3, 2, dtype=torch.uint8),
                                                              2, 1)),
    "maxout_backward_idx_empty": ("maxout_backward", lambda: (torch.zeros(2, 3), torch.zeros(0, dtype=torch.uint8),
                                                              2, 1)),
    "maxout_backward_pieces_0": ("maxout_backward", lambda: (torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.uint8),
                                                             0, 1)),
    "maxout_backward_pieces_300": ("maxout_backward", lambda: (torch.zeros(2, 3),
                                                               torch.zeros(2, 3, dtype=torch.uint8), 300, 1)),
    "elu_int": ("elu", lambda: (torch.zeros(3, dtype=torch.long), 1.0)),
    "elu_complex": ("elu", lambda: (torch.zeros(3, dtype=torch.complex64), 1.0)),
    "elu__int": ("elu_", lambda: (torch.zeros(3, dtype=torch.int32), 1.0)),
    "elu__float8": ("elu_", lambda: (torch.zeros(3, dtype=torch.float8_e5m2), 1.0)),
    "sigmoid_int": ("sigmoid", lambda: (torch.zeros(3, dtype=torch.uint8),)),
    "tanh_bool": ("tanh", lambda: (torch.zeros(3, dtype=torch.bool),)),
    "elu_backward_negative_alpha": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3), -0.5, True)),
    "elu_backward_alpha_third": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3), -1.0 / 3.0, True)),
    "elu_backward_alpha_tiny": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3), -1e-7, True)),
    "elu_backward_alpha_big": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3), -123456789.0, True)),
    "elu_backward_alpha_nan": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3), float("nan"), True)),
    "elu_backward_alpha_first": ("elu_backward", lambda: (torch.zeros(3, dtype=torch.long), torch.zeros(2), -2.0,
                                                          True)),
    "elu_backward_int_grad": ("elu_backward", lambda: (torch.zeros(3, dtype=torch.long), torch.zeros(3), -2.0,
                                                       False)),
    "elu_backward_shape": ("elu_backward", lambda: (torch.zeros(3, 5), torch.zeros(5, 3), 1.0, False)),
    "elu_backward_dtype": ("elu_backward", lambda: (torch.zeros(3), torch.zeros(3, dtype=torch.float64), 1.0, True)),
    "elu_backward_0d": ("elu_backward", lambda: (torch.zeros(()), torch.zeros(1), 1.0, False)),
    "sigmoid_backward_shape": ("sigmoid_backward", lambda: (torch.zeros(4), torch.zeros(2, 2))),
    "sigmoid_backward_int_y": ("sigmoid_backward", lambda: (torch.zeros(3), torch.zeros(3, dtype=torch.int32))),
    "tanh_backward_dtype": ("tanh_backward", lambda: (torch.zeros(3, dtype=torch.bfloat16),
                                                      torch.zeros(3, dtype=torch.float16))),
    "tanh_backward_int_grad": ("tanh_backward", lambda: (torch.zeros(3, dtype=torch.int16),
                                                         torch.zeros(3, dtype=torch.int16))),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_error_texts_match_cpp(case):
    name, make = ERROR_CASES[case]
    expected = _message(lambda: getattr(C, name)(*make()))
    actual = _message(lambda: getattr(T, name)(*to_dev(*make())))
    if DEVICE == "cpu":
        assert actual == expected
    else:  # the texts may name the device
        assert actual.replace("cuda:0", "cpu") == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device to mix devices")
def test_device_mismatch():
    x = torch.zeros(3, 5, device="cuda")
    with pytest.raises(RuntimeError, match="must be on the same device"):
        T.prelu(x, torch.zeros(5))
    with pytest.raises(RuntimeError, match="must be on the same device"):
        T.relu_backward(x, torch.zeros(1, dtype=torch.int32))
    with pytest.raises(RuntimeError, match="must be on the same device"):
        T.pelu(x, torch.ones(5, device="cuda"), torch.ones(5))
    with pytest.raises(RuntimeError, match="must be on the same device"):
        T.maxout_backward(x, torch.zeros(3, 5, dtype=torch.uint8), 2, 1)


# ---------------------------------------------------------------------------------------------------------------
# Schema conformance of the Python implementations (aliasing and mutation as declared)
# ---------------------------------------------------------------------------------------------------------------
def test_opcheck_schema():
    x = make_input((50,), torch.float32).to(DEVICE)
    g = make_input((50,), torch.float32, seed=3).to(DEVICE)
    _, mask = T.relu(x, True)
    w = torch.tensor([0.25]).to(DEVICE)
    calls = [
        (T.relu.default, (x, True)),
        (T.relu_.default, (x.clone(), True)),
        (T.relu_backward.default, (g, mask)),
        (T.leaky_relu.default, (x, 0.1, True)),
        (T.leaky_relu_.default, (x.clone(), 0.1, False)),
        (T.leaky_relu_backward.default, (g, mask, 0.1)),
        (T.prelu.default, (x, w)),
        (T.prelu_backward.default, (g, x, w)),
        (T.pelu.default, (x, w, w + 1)),
        (T.pelu_backward.default, (g, x, w, w + 1)),
        (T.maxout.default, (x, 5, 0, True)),
        (T.maxout.default, (x.reshape(5, 10), 2, -1, False)),
        (T.maxout_backward.default, (g[:25], T.maxout(x, 2, 0, True)[1], 2, 0)),
        (T.maxout_backward.default, (g.reshape(5, 10)[:, :5], T.maxout(x.reshape(5, 10), 2, -1, True)[1], 2, -1)),
        (T.elu.default, (x, 1.0)),
        (T.elu_.default, (x.clone(), 1.0)),
        (T.elu_.default, (x.clone().reshape(5, 10).t(), 0.5)),
        (T.elu_backward.default, (g, x, 1.0, False)),
        (T.elu_backward.default, (g, T.elu(x, 1.0), 1.0, True)),
        (T.sigmoid.default, (x,)),
        (T.sigmoid_.default, (x.clone(),)),
        (T.sigmoid_.default, (x.clone().reshape(5, 10).t(),)),
        (T.sigmoid_backward.default, (g, T.sigmoid(x))),
        (T.tanh.default, (x,)),
        (T.tanh_.default, (x.clone(),)),
        (T.tanh_backward.default, (g, T.tanh(x))),
    ]
    for op, args in calls:
        torch.library.opcheck(op, args, test_utils="test_schema")


# ---------------------------------------------------------------------------------------------------------------
# The cheaper float32 forms of the 16-bit GPU kernels (kernels.py, _exp16 / _expm1_16 / _tanh16; they run on a GPU
# only): their polynomials and thresholds, evaluated here in float32 from the kernel's own constants, against float64,
# with the bounds derived in kernels.py. FMAs are emulated exactly enough: a float32 product is exact in float64.
# ---------------------------------------------------------------------------------------------------------------
def _cv(c):
    return float(getattr(c, "value", c))  # a tl.constexpr or a plain float


def _f32(v):
    return torch.as_tensor(v, dtype=torch.float64).to(torch.float32)


def _fma32(a, b, c):
    """round_to_float32(a * b + c) for float32 tensors / constants (a * b exact in float64; one rounding after)."""
    a, b, c = (_f32(_cv(v)) if not torch.is_tensor(v) else v for v in (a, b, c))
    return (a.double() * b.double() + c.double()).float()


def _rel(got32, exact64):
    return ((got32.double() - exact64).abs() / exact64.abs()).max().item()


def _grid(lo, hi, n=400001):
    """float32 points over [lo, hi] (lo < hi <= 0 or 0 <= lo < hi), plus tiny magnitudes near 0."""
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    return _f32(x[x != 0])


def test_fast16_expm1_polynomial():
    T_ = _cv(K.EXPM1_T)
    x = torch.cat([_grid(-T_, 0.0), -_f32(torch.logspace(-40, -1, 2001, dtype=torch.float64))])
    c2, c3, c4, c5 = K.EXPM1_COEFFS
    p = _fma32(_fma32(_fma32(c5, x, c4), x, c3), x, c2)
    small = _fma32(p, x * x, x)
    err = _rel(small, torch.expm1(x.double()))
    assert err < 3e-7, err  # (kernels.py: < 3e-7 with the roundings)


def test_fast16_expm1_threshold():
    """Below -EXPM1_T, exp(x) - 1 with exp off by its bound (3e-7 relative, either sign) stays within 1.2e-6."""
    T_ = _cv(K.EXPM1_T)
    x = _grid(-30.0, -T_)
    e64 = torch.exp(x.double())
    exact = torch.expm1(x.double())
    for d in (3e-7, -3e-7):
        e = (e64 * (1 + d)).float()
        assert _rel(e - 1.0, exact) < 1.2e-6


def test_fast16_tanh_polynomial_and_threshold():
    T_ = _cv(K.TANH_T)
    x = torch.cat([_grid(0.0, T_), _f32(torch.logspace(-40, -1, 2001, dtype=torch.float64))])
    c3, c5, c7 = K.TANH_COEFFS
    x2 = x * x
    small = _fma32(_fma32(_fma32(c7, x2, c5), x2, c3), x2 * x, x)
    assert _rel(small, torch.tanh(x.double())) < 6e-7
    # above the threshold: (1 - E) / (1 + E), E = exp(-2|x|) off by 3e-7 and the division by 2 ulp (2^-22)
    xb = _grid(T_, 12.0)
    exact = torch.tanh(xb.double())
    E64 = torch.exp(-2.0 * xb.double())
    for d in (3e-7, -3e-7):
        for q in (2.0 ** -22, -(2.0 ** -22)):
            E = (E64 * (1 + d)).float()
            big = ((1.0 - E).double() / (1.0 + E).double() * (1 + q)).float()
            assert _rel(big, exact) < 1e-6


def test_fast16_constants():
    """The split of log2(e) and ln 2 used by _exp16, and the thresholds' float32 exactness."""
    hi, lo = _cv(K.LOG2E_HI), _cv(K.LOG2E_LO)
    assert float(_f32(hi)) == hi and float(_f32(lo)) == lo and abs(hi + lo - 1 / math.log(2)) < 1e-15
    assert float(_f32(_cv(K.LN2))) == _cv(K.LN2) and abs(_cv(K.LN2) - math.log(2)) < 2 ** -25
    assert math.exp(_cv(K.EXP_MIN)) < 2.0 ** -150  # (clamped arguments give 0 either way)


tl = triton.language


@triton.jit
def _downcast_kernel(x_ptr, y_ptr, n, HW: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    tl.store(y_ptr + i, K._downcast(tl.load(x_ptr + i, mask=m), tl.bfloat16, HW), mask=m)


def test_bfloat16_downcast_bits_are_c10s():
    """float32 -> bfloat16 as stored by the kernels: the bits of c10::BFloat16 (round to nearest even, subnormals
    kept, overflow to inf, NaN -> 0x7FC0). On a GPU this checks the hardware form the channel backward uses
    (_downcast HW: cvt.rn.bf16x2.f32 with NaN rewritten); in the interpreter the integer form (HW is GPU only)."""
    g = torch.Generator().manual_seed(7)
    bits = torch.randint(-2 ** 31, 2 ** 31 - 1, (1 << 15,), generator=g, dtype=torch.int64)
    ties = (bits & ~0xFFFF) | 0x8000  # exactly halfway: even and odd upper halves
    near = (bits & ~0xFFFF) | torch.tensor([0x7FFF, 0x8001, 0x0001, 0xFFFF]).repeat(len(bits) // 4)
    special = torch.tensor([0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0x7FFFFFFF, 0x00000001,
                            0x80000001, 0x007FFFFF, 0x00008000, 0x00018000, 0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000,
                            0x00000000, 0x80000000], dtype=torch.int64)
    u = torch.cat([bits, ties, near, special]) & 0xFFFFFFFF
    x = u.to(torch.int64).where(u < 2 ** 31, u - 2 ** 32).to(torch.int32).view(torch.float32)
    y = torch.empty(x.shape, dtype=torch.bfloat16, device=DEVICE)
    block = 1024
    _downcast_kernel[(triton.cdiv(x.numel(), block),)](x.to(DEVICE), y, x.numel(), HW=not K.INTERPRETED,
                                                       BLOCK=block)
    # torch's CPU conversion for the numbers (round to nearest even); c10::BFloat16's 0x7FC0 for NaN (torch's
    # vectorized CPU conversion writes other NaN bits)
    want = x.to(torch.bfloat16).view(torch.int16).where(~x.isnan(), torch.tensor(0x7FC0, dtype=torch.int16))
    got = y.cpu().view(torch.int16)
    bad = (got != want).nonzero().flatten()
    assert bad.numel() == 0, [(hex(int(u[i])), hex(int(got[i]) & 0xFFFF), hex(int(want[i]) & 0xFFFF))
                              for i in bad[:8]]
