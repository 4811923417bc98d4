"""The Triton operators torch.ops.glo_kernels_triton.* against the C++ operators torch.ops.glo_kernels.* and float64 math.

Without a GPU the Triton kernels run on CPU tensors in the Triton interpreter (TRITON_INTERPRET=1, set here before
triton is imported); with one they run on CUDA tensors and are compared with the C++ CPU kernels on copies.
The interpreter is slow, so sizes stay small (a few thousand elements, a few tens of thousands at most).
"""

import glob
import importlib
import importlib.util
import math
import os
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton and of glo_kernels.triton.kernels

triton = pytest.importorskip("triton", reason="triton is not installed: the Triton backend cannot be tested")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

_SO = sorted(glob.glob(os.path.join(ROOT, "glo_kernels", "_C*.so")))
if not _SO:
    pytest.skip("the C++ extension glo_kernels/_C*.so is not built (the reference of these tests)",
                allow_module_level=True)
torch.ops.load_library(_SO[0])


def _import_triton_ops():
    """glo_kernels.triton.ops; if the package's __init__ cannot be imported right now, the two files directly."""
    try:
        return importlib.import_module("glo_kernels.triton.ops")
    except Exception:  # noqa: BLE001 - a broken glo_kernels/__init__.py is not what these tests are about
        mod = sys.modules.get("glo_kernels.triton.ops")
        if mod is not None:
            return mod
    name = "_glo_kernels_triton_under_test"
    if name + ".ops" in sys.modules:
        return sys.modules[name + ".ops"]
    pkg_dir = os.path.join(ROOT, "glo_kernels", "triton")
    spec = importlib.util.spec_from_file_location(name, os.path.join(pkg_dir, "__init__.py"),
                                                  submodule_search_locations=[pkg_dir])
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    spec.loader.exec_module(pkg)
    return importlib.import_module(name + ".ops")


tops = _import_triton_ops()
K = sys.modules[tops.__name__.rsplit(".", 1)[0] + ".kernels"]
if DEVICE == "cpu" and not K.INTERPRETED:
    pytest.skip("glo_kernels.triton.kernels was imported before TRITON_INTERPRET=1 was set, and there is no GPU",
                allow_module_level=True)

T = torch.ops.glo_kernels_triton
C = torch.ops.glo_kernels

# The interpreter computes with numpy, which warns on inf * 0 and the like; the results are the IEEE ones.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]
OPS = ["relu", "relu_", "relu_backward", "leaky_relu", "leaky_relu_", "leaky_relu_backward", "prelu",
       "prelu_backward"]
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
    if numel % 32:
        assert (int(mask[-1]) & 0xFFFFFFFF) >> (numel % 32) == 0, "bits past numel must be 0"
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
            assert y.shape == y_ref.shape and y.dtype == dtype and mask.shape == mask_ref.shape == (0,)
        xi = x.clone().to(DEVICE)
        fn = getattr(T, op + "_")
        assert (fn(xi, True) if op == "relu" else fn(xi, slope, True)).shape == (0,)
        bwd, args = op + "_backward", (() if op == "relu" else (slope,))
        dx = getattr(T, bwd)(*to_dev(torch.empty(shape, dtype=dtype), torch.empty(0, dtype=torch.int32)), *args)
        assert dx.shape == shape and dx.dtype == dtype
    for v in (-2.5, 3.0, -0.0, float("nan")):
        x = torch.tensor(v, dtype=dtype)
        (y, mask), (y_ref, mask_ref) = _fwd(op, *to_dev(x), slope, True), _fwd_cpp(op, x, slope, True)
        assert y.shape == () and mask.shape == (1,)
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
    nb, cb, sb = K.prelu_tiles(outer, channels, inner)
    assert all(v & (v - 1) == 0 for v in (nb, cb, sb)) and nb * cb * sb <= K.PRELU_TILE
    numel = outer * channels * inner
    partial = K.prelu_partial_rows(outer, channels, inner) * channels
    # at most one row per 32 outer*inner positions (always at least `channels` entries)
    assert partial <= max(channels, numel // 32), (geom, (nb, cb, sb), partial)
    if numel >= 64 * K.PRELU_TILE:
        assert nb * cb * sb >= K.PRELU_TILE // 2, "tiles should stay large"


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
    ]
    for op, args in calls:
        torch.library.opcheck(op, args, test_utils="test_schema")
