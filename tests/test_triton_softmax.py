"""The Triton softmax family torch.ops.glo_kernels_triton.{softmax, log_softmax, softmax_backward,
log_softmax_backward, grouped_softmax, grouped_softmax_backward, distillation_loss, distillation_loss_backward}
against float64 math written in plain torch (docs/softmax_contract.md).

Without a GPU the kernels run on CPU tensors in the Triton interpreter (TRITON_INTERPRET=1, set here before triton is
imported); with one they run on CUDA tensors. The interpreter is slow: sizes stay small (one long row of 70000
elements exercises the online path at the real limits; a fixture lowers them for more).
"""

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton and of glo_kernels.triton.kernels

triton = pytest.importorskip("triton", reason="triton is not installed: the Triton backend cannot be tested")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


import glo_kernels  # noqa: E402  (the C++ extension defines both operator namespaces; launch.py the Triton kernel calls)
from glo_kernels.triton import kernels as K  # noqa: E402
from glo_kernels.triton import softmax_kernels as SK  # noqa: E402

_STATUS = glo_kernels.available_backends()
if not _STATUS["triton"].available:
    pytest.skip(f"backend triton: {_STATUS['triton'].reason}", allow_module_level=True)
if DEVICE == "cpu" and not K.INTERPRETED:
    pytest.skip("glo_kernels.triton.kernels was imported before TRITON_INTERPRET=1 was set, and there is no GPU",
                allow_module_level=True)

T = torch.ops.glo_kernels_triton


def _geometry(t: torch.Tensor, dim: int) -> tuple[int, int, int]:
    """(outer, size, inner) of t around dim (softmax_geometry of csrc/include/glo/softmax_impls.h)."""
    if t.dim() == 0:
        return 1, 1, 1
    outer = math.prod(t.shape[:dim])
    inner = math.prod(t.shape[dim + 1:])
    return outer, t.shape[dim], inner


# The interpreter computes with numpy, which warns on inf - inf and the like; the results are the IEEE ones.
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:reduction. 'mean':UserWarning")]

DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
# Relative tolerance of each data dtype (outputs are rounded to it; math in opmath).
TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
# Absolute term: a fraction of the output's scale plus the dtype's smallest normal (underflowed tiny values).
ATOL = {torch.float64: 1e-300, torch.float32: 1e-30, torch.bfloat16: 1e-30, torch.float16: 1e-7}

# (shape, dim) of the softmax cases: row sizes 1, 7, 33, 1000, 5000 along the last dim (inner == 1), along dim 0
# and along a middle dim (inner > 1), in registers (SINGLE) and looped (size 2000 x inner 20).
CASES = [((5, 1), -1), ((4, 7), -1), ((6, 33), -1), ((3, 1000), -1), ((2, 5000), -1), ((33, 6), 0), ((7, 3), 0),
         ((3, 7, 5), 1), ((2, 33, 40), 1), ((2, 1000, 3), -2), ((1, 2000, 20), 1), ((1,), 0)]
TEMPS = [1.0, 0.7, 2.5]


def _close(actual, expected, dtype, scale=None, what=""):
    """|actual - expected| <= tol |expected| + tol * scale + atol (NaN where expected is NaN; infinities equal)."""
    tol = TOL[dtype]
    expected = expected.detach().cpu().to(dtype).double()  # the exact result rounded to the dtype (overflow: inf)
    actual = actual.double().cpu()
    assert actual.shape == expected.shape, what
    if scale is None:
        finite = expected[torch.isfinite(expected)]
        scale = finite.abs().max().item() if finite.numel() else 0.0
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * scale + ATOL[dtype], equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


def _rand(shape, dtype, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(dtype).to(DEVICE)


def _ref_softmax(x, dim, t, log):
    xd = x.double().cpu()
    if xd.dim() == 0:
        xd = xd.reshape(1)
        return (torch.log_softmax if log else torch.softmax)(xd / t, 0).reshape(())
    return (torch.log_softmax if log else torch.softmax)(xd / t, dim)


# ---------------------------------------------------------------------------------------------------------------
# Softmax / log-softmax forward and backward
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_forward(dtype, log):
    op = T.log_softmax if log else T.softmax
    for k, (shape, dim) in enumerate(CASES):
        t = TEMPS[k % len(TEMPS)]
        x = _rand(shape, dtype, seed=k)
        y = op(x, dim, t, None)
        assert y.dtype == dtype and y.shape == x.shape and y.is_contiguous()
        ref = _ref_softmax(x, dim, t, log)
        # log-softmax: the error is relative to (x - m) * inv_t and log(z), whose scale is that of the row
        _close(y, ref, dtype, what=f"{shape} dim {dim} T {t}")
        if not log:
            sums = y.double().sum(dim)
            torch.testing.assert_close(sums.cpu(), torch.ones_like(sums).cpu(), rtol=0,
                                       atol=TOL[dtype] * (1 + shape[dim] ** 0.5))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_backward(dtype, log):
    """The backward ops, fed the forward op's output, against torch.autograd.grad of the float64 composite."""
    fwd = T.log_softmax if log else T.softmax
    bwd = T.log_softmax_backward if log else T.softmax_backward
    for k, (shape, dim) in enumerate(CASES):
        t = TEMPS[(k + 1) % len(TEMPS)]
        x = _rand(shape, dtype, seed=k)
        g = _rand(shape, dtype, scale=1.0, seed=100 + k)
        y = fwd(x, dim, t, None)
        dx = bwd(g, y, dim, t, None)
        assert dx.dtype == dtype and dx.shape == x.shape
        xd = x.double().cpu().requires_grad_()
        ref = (torch.log_softmax if log else torch.softmax)(xd / t, dim)
        (gx,) = torch.autograd.grad(ref, xd, g.double().cpu())
        # y enters rounded to the dtype: errors scale with |g| / T (and with |sum g| / T for log-softmax)
        scale = g.double().abs().max().item() / t
        if log:
            scale = max(scale, g.double().sum(dim).abs().max().item() / t)
        _close(dx, gx, dtype, scale=scale, what=f"{shape} dim {dim} T {t}")


@pytest.fixture
def long_rows(monkeypatch):
    """Lowers the in-register limit (softmax_kernels.SOFTMAX_SINGLE_MAX, read at each launch) so that short rows take
    the long-row path (online pass, then the write; two reads) that real rows take beyond 32768 elements."""
    monkeypatch.setattr(SK, "SOFTMAX_SINGLE_MAX", 512)
    assert SK.softmax_single_max(torch.float32) == 512 and SK.softmax_single_max(torch.float32, backward=True) == 256


def _check_fwd_bwd(x, dim, t, dtype, what):
    for log in (False, True):
        y = (T.log_softmax if log else T.softmax)(x, dim, t, None)
        _close(y, _ref_softmax(x, dim, t, log), dtype, what=f"{what} log {log}")
        g = _rand(tuple(x.shape), dtype, scale=1.0, seed=8)
        dx = (T.log_softmax_backward if log else T.softmax_backward)(g, y, dim, t, None)
        xd = x.double().cpu().requires_grad_()
        (gx,) = torch.autograd.grad((torch.log_softmax if log else torch.softmax)(xd / t, dim), xd, g.double().cpu())
        scale = g.double().abs().max().item() / t
        if log:
            scale = max(scale, g.double().sum(dim).abs().max().item() / t)
        _close(dx, gx, dtype, scale=scale, what=f"{what} backward log {log}")


def test_long_row_online():
    """A row of 70000 float32 elements (beyond the in-register size): online (max, sum) pass, then the write."""
    plan = SK.softmax_plan((2, 70000, 1), torch.float32)
    assert not plan["SINGLE"] and not SK.softmax_plan((2, 70000, 1), torch.float32, backward=True)["SINGLE"]
    x = _rand((2, 70000), torch.float32, scale=4.0, seed=7)
    x[1, 3] = 30.0  # a large value early, rescaling later chunks
    _check_fwd_bwd(x, -1, 1.3, torch.float32, "70000")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_rows_in_registers_up_to_32k(dtype):
    """Rows of 32768 elements forward and 16384 backward are read once (SINGLE: one tile of 32 warps); one more
    element takes the long-row path. Shorter rows in registers use fewer warps (up to 32 values per thread)."""
    for n, backward in ((32768, False), (16384, True)):
        plan = SK.softmax_plan((1, n, 1), dtype, backward=backward)
        assert plan["SINGLE"] and plan["S"] == n and plan["R"] == 1 and plan["num_warps"] == 32, plan
        assert not SK.softmax_plan((1, n + 1, 1), dtype, backward=backward)["SINGLE"]
    assert SK.softmax_plan((64, 4096, 1), dtype)["num_warps"] == 4
    assert SK.softmax_plan((64, 4096, 1), dtype, backward=True)["num_warps"] == 8
    assert SK.softmax_plan((64, 70000, 1), dtype)["num_warps"] == 16  # (the loop over a long row)
    x = _rand((1, 32768), dtype, scale=4.0, seed=21)
    x[0, 7] = 25.0
    for log in (False, True):
        y = (T.log_softmax if log else T.softmax)(x, -1, 0.9, None)
        _close(y, _ref_softmax(x, -1, 0.9, log), dtype, what=f"32768 log {log}")
    _check_fwd_bwd(x[:, :16384].contiguous(), -1, 0.9, dtype, "16384")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_long_row_path_on_small_rows(long_rows, dtype):
    """The long-row path (chunks of SOFTMAX_CHUNK along a contiguous row; chunks of SOFTMAX_TILE // R along a strided
    one) on rows a lowered limit sends there, several chunks each."""
    assert not SK.softmax_plan((3, 5000, 1), dtype)["SINGLE"]
    assert not SK.softmax_plan((1, 700, 30), dtype, backward=True)["SINGLE"]
    x = _rand((3, 5000), dtype, scale=4.0, seed=22)
    x[2, 4999] = 20.0  # the maximum in the last chunk: earlier chunks rescaled
    _check_fwd_bwd(x, -1, 1.1, dtype, "(3, 5000)")
    _check_fwd_bwd(_rand((1, 700, 30), dtype, seed=23), 1, 0.8, dtype, "(1, 700, 30) dim 1")


def test_paths_exercised():
    """The cases above reach every tiling: in registers with several rows, looped rows, inner tiles."""
    assert SK.softmax_plan((6, 33, 1), torch.float32)["R"] > 1
    assert SK.softmax_plan((2, 5000, 1), torch.float32)["SINGLE"]
    assert SK.softmax_plan((2, 8192, 1), torch.float64)["SINGLE"]
    assert SK.softmax_plan((2, 8193, 1), torch.float64)["SINGLE"] is False
    assert SK.softmax_plan((2, 4097, 1), torch.float64, backward=True)["SINGLE"] is False
    assert SK.softmax_plan((2, 33, 40), torch.float32)["SINGLE"]
    assert not SK.softmax_plan((1, 2000, 20), torch.float32)["SINGLE"]
    assert SK.softmax_plan((1, 2000, 20), torch.float32)["INNER1"] is False
    assert SK.softmax_plan((1, 8192, 1), torch.float32, segment=8192, grouped=True)["SINGLE"]
    assert not SK.softmax_plan((1, 8193, 1), torch.float32, segment=8193, grouped=True)["SINGLE"]
    assert not SK.distill_plan(2, 9000, torch.float32)["SINGLE"]
    assert SK.distill_plan(5, 7, torch.float32)["R"] > 1


def test_float64_online(long_rows):
    """The looped path in float64 and the inner > 1 loop."""
    for shape, dim in [((2, 3000), -1), ((1, 700, 30), 1)]:
        assert not SK.softmax_plan(_geometry(torch.empty(shape), dim % len(shape)), torch.float64)["SINGLE"]
        x = _rand(shape, torch.float64, seed=3)
        for log in (False, True):
            y = (T.log_softmax if log else T.softmax)(x, dim, 0.9, None)
            _close(y, _ref_softmax(x, dim, 0.9, log), torch.float64, what=f"{shape} log {log}")


def test_non_contiguous():
    base = _rand((8, 34), torch.float32, seed=11)
    for x, dim in [(base.t(), 0), (base.t(), -1), (base[:, ::2], -1), (base[::2, 1:], 0)]:
        assert not x.is_contiguous()
        for log in (False, True):
            y = (T.log_softmax if log else T.softmax)(x, dim, 0.8, None)
            assert y.is_contiguous()
            _close(y, _ref_softmax(x, dim, 0.8, log), torch.float32, what=f"{tuple(x.shape)} dim {dim}")
        g = _rand(tuple(x.shape[::-1]), torch.float32, seed=12).t()  # non-contiguous grad too
        y = T.softmax(x, dim, 0.8, None)
        yn = y.t().contiguous().t()  # non-contiguous y
        dx = T.softmax_backward(g, yn, dim, 0.8, None)
        xd = x.double().cpu().requires_grad_()
        (gx,) = torch.autograd.grad(torch.softmax(xd / 0.8, dim), xd, g.double().cpu())
        _close(dx, gx, torch.float32, scale=g.abs().max().item() / 0.8, what="backward")


def test_empty_and_0d():
    for shape, dim in [((0, 5), -1), ((0, 5), 0), ((3, 0), -1), ((3, 0), 0), ((2, 0, 4), 1)]:
        x = torch.empty(shape, device=DEVICE)
        for op in (T.softmax, T.log_softmax):
            y = op(x, dim, 1.0, None)
            assert y.shape == x.shape
        assert T.softmax_backward(x, x, dim, 1.0, None).shape == x.shape
        assert T.log_softmax_backward(x, x, dim, 1.0, None).shape == x.shape
    x = torch.empty((0, 5), device=DEVICE)
    assert T.grouped_softmax(x, [2, 3], 1, 1.0, None).shape == (0, 5)
    assert T.grouped_softmax_backward(x, x, [2, 3], 1, 1.0, None).shape == (0, 5)
    for dtype in (torch.float32, torch.bfloat16):
        x0 = torch.tensor(2.5, dtype=dtype, device=DEVICE)
        for dim in (0, -1):
            y = T.softmax(x0, dim, 0.5, None)
            assert y.shape == () and y.item() == 1.0
            assert T.log_softmax(x0, dim, 0.5, None).item() == 0.0
            assert T.softmax_backward(x0, y, dim, 0.5, None).item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_special_values(dtype):
    """NaN or +inf in a row: NaN row; all -inf: NaN; -inf among finite: 0 (log: -inf); -0.0; huge logits."""
    inf, nan = math.inf, math.nan
    rows = [[1.0, 2.0, nan, 0.5], [1.0, inf, 2.0, 0.0], [-inf, -inf, -inf, -inf], [1.0, -inf, 2.0, -inf],
            [-0.0, 0.0, -0.0, 1.0], [1e4, -1e4, 1e4, 0.0], [-1e4, -1e4 + 8, 0.0, 3.0], [inf, inf, 1.0, 2.0],
            [-inf, nan, 1.0, 2.0], [-inf, inf, 0.0, 0.0]]
    x = torch.tensor(rows, dtype=torch.float64).to(dtype).to(DEVICE)
    for t in (1.0, 1e-3, 1e3):
        for log in (False, True):
            y = (T.log_softmax if log else T.softmax)(x, -1, t, None)
            _close(y, _ref_softmax(x, -1, t, log), dtype, what=f"T {t} log {log}")
            # along dim 0 (inner > 1): the same rows as columns
            yc = (T.log_softmax if log else T.softmax)(x.t().contiguous(), 0, t, None)
            _close(yc.t(), _ref_softmax(x, -1, t, log), dtype, what=f"dim 0 T {t} log {log}")


def test_special_values_online(long_rows):
    """The looped path keeps the special-value rules: a leading all -inf chunk adds 0, a late NaN or +inf still
    poisons the row, an all -inf row is NaN."""
    n = 20000
    inf = math.inf
    x = torch.full((5, n), -inf, dtype=torch.float32)
    x[0, -5:] = torch.arange(5.0)  # -inf chunks, then finite values
    x[1, 100] = math.nan
    x[1, 15000:] = 1.0  # NaN early, finite later
    x[2, 10000:] = 0.0
    x[2, n - 1] = inf  # +inf in the last chunk
    x[4] = _rand((n,), torch.float32, seed=5).cpu()
    x[4, 9000] = -inf
    x = x.to(DEVICE)
    assert not SK.softmax_plan((5, n, 1), torch.float32)["SINGLE"]
    for t in (1.0, 1e-3):
        for log in (False, True):
            y = (T.log_softmax if log else T.softmax)(x, -1, t, None)
            _close(y, _ref_softmax(x, -1, t, log), torch.float32, what=f"T {t} log {log}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_extreme_temperatures(dtype):
    x = (_rand((4, 33), torch.float64, scale=1.0, seed=9) * 1e4).to(dtype)
    for t in (1e-3, 1e3):
        for log in (False, True):
            y = (T.log_softmax if log else T.softmax)(x, -1, t, None)
            assert not torch.isnan(y).any()
            _close(y, _ref_softmax(x, -1, t, log), dtype, what=f"T {t} log {log}")


# ---------------------------------------------------------------------------------------------------------------
# Temperature tensor
# ---------------------------------------------------------------------------------------------------------------
def test_temperature_tensor_cpu():
    """A CPU temperature_tensor overrides the float: its value is read on the host."""
    x = _rand((3, 7, 5), torch.float32, seed=21)
    g = _rand((3, 7, 5), torch.float32, seed=22)
    for tt in (torch.tensor(0.7), torch.tensor([[0.7]], dtype=torch.float64),
               torch.tensor([0.7], dtype=torch.bfloat16)):
        t = float(tt.double().reshape(()))
        for dim in (-1, 1):
            for fwd, bwd in ((T.softmax, T.softmax_backward), (T.log_softmax, T.log_softmax_backward)):
                y = fwd(x, dim, 123.0, tt)
                assert torch.equal(y, fwd(x, dim, t, None))
                assert torch.equal(bwd(g, y, dim, 99.0, tt), bwd(g, y, dim, t, None))
        y = T.grouped_softmax(x, [2, 5], 1, 5.0, tt)
        assert torch.equal(y, T.grouped_softmax(x, [2, 5], 1, t, None))
        assert torch.equal(T.grouped_softmax_backward(g, y, [2, 5], 1, 5.0, tt),
                           T.grouped_softmax_backward(g, y, [2, 5], 1, t, None))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_temperature_read_by_kernel(dtype):
    """The device path (HAS_T): T read from a 1-element opmath tensor by the kernel gives the float path's bits."""
    opmath = torch.float64 if dtype == torch.float64 else torch.float32
    t = 0.7
    tt = torch.tensor([t], dtype=opmath, device=DEVICE)
    for shape, geom in [((4, 33), (4, 33, 1)), ((2, 7, 5), (2, 7, 5)), ((1, 20000), (1, 20000, 1))]:
        x = _rand(shape, dtype, seed=31)
        g = _rand(shape, dtype, seed=32)
        for log in (False, True):
            ya, yb = torch.empty_like(x), torch.empty_like(x)
            SK.softmax_forward(x, ya, geom, 55.0, tt, log)
            SK.softmax_forward(x, yb, geom, t, None, log)
            assert torch.equal(ya, yb)
            da, db = torch.empty_like(x), torch.empty_like(x)
            SK.softmax_backward(g, ya, da, geom, 55.0, tt, log)
            SK.softmax_backward(g, ya, db, geom, t, None, log)
            assert torch.equal(da, db)
        off = torch.tensor([0, 3, geom[1]], dtype=torch.int64, device=DEVICE)
        ya, yb = torch.empty_like(x), torch.empty_like(x)
        SK.grouped_softmax_forward(x, ya, geom, off, 2, 55.0, tt)
        SK.grouped_softmax_forward(x, yb, geom, off, 2, t, None)
        assert torch.equal(ya, yb)


# ---------------------------------------------------------------------------------------------------------------
# Grouped softmax
# ---------------------------------------------------------------------------------------------------------------
def _ref_grouped(x, sizes, dim, t):
    return torch.cat([torch.softmax(p / t, dim) for p in x.split(sizes, dim)], dim)


GROUP_CASES = [((4, 10), [1, 4, 5], -1), ((3, 40), [33, 7], -1), ((2, 1000), [1, 998, 1], -1),
               ((10, 3), [3, 1, 6], 0), ((2, 12, 9), [5, 1, 6], 1), ((3, 5, 4), [4], -1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_grouped(dtype):
    for k, (shape, sizes, dim) in enumerate(GROUP_CASES):
        t = TEMPS[k % len(TEMPS)]
        x = _rand(shape, dtype, seed=40 + k)
        y = T.grouped_softmax(x, sizes, dim, t, None)
        _close(y, _ref_grouped(x.double().cpu(), sizes, dim, t), dtype, what=f"{shape} {sizes} dim {dim}")
        g = _rand(shape, dtype, scale=1.0, seed=60 + k)
        dx = T.grouped_softmax_backward(g, y, sizes, dim, t, None)
        xd = x.double().cpu().requires_grad_()
        (gx,) = torch.autograd.grad(_ref_grouped(xd, sizes, dim, t), xd, g.double().cpu())
        _close(dx, gx, dtype, scale=g.double().abs().max().item() / t, what=f"backward {shape} {sizes} dim {dim}")


def test_grouped_looped():
    """Groups looped over in chunks (the launchers without max_group), and a group longer than a tile."""
    x = _rand((2, 12, 9), torch.float32, seed=70)
    off = torch.tensor([0, 5, 6, 12], dtype=torch.int64, device=DEVICE)
    y = torch.empty_like(x)
    SK.grouped_softmax_forward(x, y, (2, 12, 9), off, 3, 0.7, None)
    _close(y, T.grouped_softmax(x, [5, 1, 6], 1, 0.7, None), torch.float32, what="forward")
    g = _rand((2, 12, 9), torch.float32, seed=71)
    dx = torch.empty_like(x)
    SK.grouped_softmax_backward(g, y, dx, (2, 12, 9), off, 3, 0.7, None)
    _close(dx, T.grouped_softmax_backward(g, y, [5, 1, 6], 1, 0.7, None), torch.float32, what="backward")
    x = _rand((1, 20003), torch.float32, seed=72)
    sizes = [3, 20000]
    y = T.grouped_softmax(x, sizes, -1, 1.1, None)
    _close(y, _ref_grouped(x.double().cpu(), sizes, -1, 1.1), torch.float32, what="long group")


def test_grouped_special_values():
    inf = math.inf
    x = torch.tensor([[1.0, math.nan, 2.0, 3.0, -inf, -inf, 4.0, inf]], device=DEVICE)
    sizes = [2, 2, 2, 2]
    y = T.grouped_softmax(x, sizes, -1, 1.0, None)
    _close(y, _ref_grouped(x.double().cpu(), sizes, -1, 1.0), torch.float32, what="specials")


# ---------------------------------------------------------------------------------------------------------------
# Distillation loss
# ---------------------------------------------------------------------------------------------------------------
REDUCTIONS = ["none", "sum", "mean", "batchmean"]


def _ref_distill(s, t, temp, r):
    return F.kl_div(F.log_softmax(s / temp, -1), F.softmax(t / temp, -1), reduction=r) * temp ** 2


def _ref_distill_contract(s, t, temp, r):
    """The contract's loss with its rule for p_j == 0 (0, even where log q_j = -inf: F.kl_div gives 0 * inf = NaN
    there; but NaN in a student row holding NaN, whose log q is NaN), in float64."""
    s, t = s.double(), t.double()
    logq = F.log_softmax(s / temp, -1)
    logp = F.log_softmax(t / temp, -1)
    p = logp.exp()
    zero = (p == 0) & ~torch.isnan(logq)
    pointwise = torch.where(zero, torch.zeros_like(p), p * (logp - logq)) * temp ** 2
    if r == "none":
        return pointwise
    return pointwise.sum() * _factor(s, r)


def _factor(s, r):
    return {"sum": 1.0, "mean": 1.0 / max(s.numel(), 1), "batchmean": 1.0 / max(s.size(0), 1), "none": 1.0}[r]


def _terms_scale(s, t, temp):
    """T^2 times the magnitude of the terms of kl_row ((t - s) / T, (m_t - m_s) / T, log Z): the scale of the
    rounding errors of a row's loss (fp32 cancels them to ~1e-7 of that, whatever the loss itself)."""
    finite = torch.cat([s[torch.isfinite(s)], t[torch.isfinite(t)]]).double().abs()
    return temp ** 2 * (2 * finite.max().item() / temp + math.log(s.size(-1)) + 1)


DISTILL_SHAPES = [(4, 7), (3, 1000), (2, 3, 17), (5,), (2, 9000)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_distillation_loss(dtype):
    for k, shape in enumerate(DISTILL_SHAPES):
        if shape == (2, 9000) and dtype not in (torch.float32, torch.float64):
            continue  # the online path, once per opmath
        temp = (2.0, 1.0, 0.5)[k % 3]
        s = _rand(shape, dtype, scale=2.0, seed=80 + k)
        t = _rand(shape, dtype, scale=2.0, seed=90 + k)
        for r in REDUCTIONS:
            loss, stats = T.distillation_loss(s, t, temp, r)
            opmath = torch.float64 if dtype == torch.float64 else torch.float32
            rows = s.numel() // shape[-1]
            assert stats.shape == (rows, 5) and stats.dtype == opmath
            assert loss.dtype == dtype and loss.shape == (shape if r == "none" else ())
            sd = s.double().cpu().requires_grad_()
            td = t.double().cpu().requires_grad_()
            ref = _ref_distill(sd, td, temp, r)
            scale = None
            if r != "none":  # a reduced loss: errors scale with the sum of the pointwise terms' magnitudes
                scale = _ref_distill(sd, td, temp, "none").abs().sum().item() * _factor(s, r)
            _close(loss, ref.detach(), dtype, scale=scale, what=f"{shape} {r}")
            # statistics against their definitions
            s2 = s.double().cpu().reshape(rows, -1)
            t2 = t.double().cpu().reshape(rows, -1)
            st = torch.stack([s2.max(-1).values, torch.logsumexp((s2 - s2.max(-1, keepdim=True).values) / temp, -1),
                              t2.max(-1).values, torch.logsumexp((t2 - t2.max(-1, keepdim=True).values) / temp, -1),
                              _ref_distill(s2, t2, temp, "none").sum(-1) / temp ** 2], 1)
            _close(stats, st, torch.float64 if dtype == torch.float64 else torch.float32, scale=1.0,
                   what=f"stats {shape} {r}")
            # backward
            for teacher_grad in (True, False):
                if r == "none":
                    grad = _rand(shape, dtype, scale=1.0, seed=99)
                else:
                    grad = torch.tensor(0.75, dtype=dtype, device=DEVICE)
                ds, dt = T.distillation_loss_backward(grad, s, t, stats, temp, r, teacher_grad)
                gs, gt = torch.autograd.grad(ref, (sd, td), grad.double().cpu(), retain_graph=True)
                gscale = max(gs.abs().max().item(), gt.abs().max().item())
                _close(ds, gs, dtype, scale=gscale, what=f"ds {shape} {r}")
                if teacher_grad:
                    _close(dt, gt, dtype, scale=gscale, what=f"dt {shape} {r}")
                else:
                    assert dt.shape == (0,) and dt.dtype == dtype


def test_distillation_special_values():
    """Teacher -inf: p_j = 0 terms are 0; student -inf where p > 0: inf; NaN rows NaN; t = s + c: ~0."""
    inf = math.inf
    s = torch.tensor([[1.0, 2.0, 3.0, 0.5], [1.0, 2.0, 3.0, 0.5], [1.0, -inf, 3.0, 0.5], [1.0, math.nan, 3.0, 0.5],
                      [0.3, -1.0, 2.0, 1e4]], dtype=torch.float64)
    t = torch.tensor([[-inf, 2.0, -inf, 1.0], [0.5, -3.0, 2.0, 1.0], [1.0, 0.0, 3.0, 0.5], [1.0, 2.0, 3.0, 0.5],
                      [3.3, 2.0, 5.0, 1e4 + 3.0]], dtype=torch.float64)
    for dtype in (torch.float64, torch.float32):
        for temp in (1.0, 1e-3, 1e3):
            for r in ("none", "sum"):
                for rows in ([0, 1], [2], [3], [4]):
                    sr, tr = s[rows].to(dtype).to(DEVICE), t[rows].to(dtype).to(DEVICE)
                    loss, _ = T.distillation_loss(sr, tr, temp, r)
                    ref = _ref_distill_contract(sr.cpu(), tr.cpu(), temp, r)
                    # where p_j underflows to 0 beside a -inf or NaN log q_j, F.kl_div has 0 * inf = NaN
                    if not (rows in ([2], [3]) and temp == 1e-3):
                        torch.testing.assert_close(ref, _ref_distill(sr.double().cpu(), tr.double().cpu(), temp, r),
                                                   equal_nan=True)
                    scale = _terms_scale(sr, tr, temp) * (len(rows) if r == "sum" else 1)
                    _close(loss, ref, dtype, scale=scale, what=f"rows {rows} T {temp} {r}")
    # teacher = student + c: exactly ~0 (the difference t - s is formed before scaling)
    s = _rand((3, 50), torch.float32, seed=5)
    loss, _ = T.distillation_loss(s, s + 4.0, 0.5, "sum")
    assert abs(loss.item()) < 1e-5
    # the online path with -inf teacher entries after the maximum grows (W rescaled)
    n = 9000
    s = _rand((2, n), torch.float32, seed=6)
    t = _rand((2, n), torch.float32, seed=7)
    t[:, :50] = -inf
    t[0, 8000] = 40.0
    loss, stats = T.distillation_loss(s.to(DEVICE), t.to(DEVICE), 1.0, "sum")
    _close(loss, _ref_distill(s.double(), t.double(), 1.0, "sum"), torch.float32, scale=2 * _terms_scale(s, t, 1.0),
           what="online -inf")


def test_distillation_empty():
    for shape in [(0, 5), (3, 0), (2, 0, 4)]:
        s = torch.empty(shape, device=DEVICE)
        for r in REDUCTIONS:
            loss, stats = T.distillation_loss(s, s, 2.0, r)
            ref = _ref_distill(s.double().cpu(), s.double().cpu(), 2.0, r)
            assert loss.shape == ref.shape
            torch.testing.assert_close(loss.double().cpu(), ref, equal_nan=True)
            assert stats.shape == (math.prod(shape[:-1]), 5)
            assert (stats == 0).all()
            grad = torch.empty(shape, device=DEVICE) if r == "none" else torch.tensor(1.0, device=DEVICE)
            ds, dt = T.distillation_loss_backward(grad, s, s, stats, 2.0, r, True)
            assert ds.shape == shape and dt.shape == shape
            ds, dt = T.distillation_loss_backward(grad, s, s, stats, 2.0, r, False)
            assert dt.shape == (0,)


def test_distillation_non_contiguous():
    base = _rand((30, 8), torch.float32, seed=13)
    s = base.t()  # [8, 30]
    t = _rand((8, 60), torch.float32, seed=14)[:, ::2]
    for r in REDUCTIONS:
        loss, stats = T.distillation_loss(s, t, 1.5, r)
        sd = s.double().cpu().requires_grad_()
        td = t.double().cpu().requires_grad_()
        ref = _ref_distill(sd, td, 1.5, r)
        _close(loss, ref.detach(), torch.float32, scale=1.0, what=r)
        grad = _rand((30, 8), torch.float32, seed=15).t() if r == "none" else torch.tensor(1.3, device=DEVICE)
        ds, dt = T.distillation_loss_backward(grad, s, t, stats, 1.5, r, True)
        gs, gt = torch.autograd.grad(ref, (sd, td), grad.double().cpu())
        scale = max(gs.abs().max().item(), gt.abs().max().item())
        _close(ds, gs, torch.float32, scale=scale, what=f"ds {r}")
        _close(dt, gt, torch.float32, scale=scale, what=f"dt {r}")


def test_reproducible():
    x = _rand((3, 20000), torch.float32, seed=17)
    s = _rand((3, 9000), torch.float32, seed=18)
    assert torch.equal(T.softmax(x, -1, 0.9, None), T.softmax(x, -1, 0.9, None))
    a = T.distillation_loss(s, x[:, :9000], 0.9, "sum")
    b = T.distillation_loss(s, x[:, :9000], 0.9, "sum")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------------------------------------------------------
# Errors (texts of the contract)
# ---------------------------------------------------------------------------------------------------------------
def _error_cases():
    x = torch.randn(3, 4, device=DEVICE)
    xi = torch.ones(3, 4, dtype=torch.int64, device=DEVICE)
    z = torch.zeros(3, 5, device=DEVICE)
    one = torch.tensor(1.0, device=DEVICE)
    dev = str(x.device)
    return [
        ("softmax", (xi, -1, 1.0, None), "argument 'x' must be a floating-point tensor (float64, float32, bfloat16 "
                                         "or float16), got Long"),
        ("softmax", (x, 2, 1.0, None), "argument 'dim' (2) is out of range for a 2-d tensor"),
        ("log_softmax", (x, -3, 1.0, None), "argument 'dim' (-3) is out of range for a 2-d tensor"),
        ("softmax", (one, 1, 1.0, None), "argument 'dim' (1) is out of range for a 0-d tensor"),
        ("softmax", (x, -1, 0.0, None), "argument 'temperature' must be a finite number > 0, got 0"),
        ("softmax", (x, -1, -1e-7, None), "argument 'temperature' must be a finite number > 0, got -1e-07"),
        ("log_softmax", (x, -1, math.nan, None), "argument 'temperature' must be a finite number > 0, got nan"),
        ("log_softmax", (x, -1, math.inf, None), "argument 'temperature' must be a finite number > 0, got inf"),
        ("softmax", (x, -1, 1.0, torch.ones(2)), f"argument 'temperature_tensor' must be a floating-point tensor of "
                                                 f"one element on {dev} or the CPU, got Float of shape [2] on cpu"),
        ("softmax", (x, -1, 1.0, torch.ones(1, dtype=torch.int32)),
         f"argument 'temperature_tensor' must be a floating-point tensor of one element on {dev} or the CPU, got Int "
         f"of shape [1] on cpu"),
        ("softmax", (x, -1, 1.0, torch.tensor(-2.0)), "argument 'temperature' must be a finite number > 0, got -2"),
        ("softmax", (x, -1, 1.0, torch.tensor([0.0])), "argument 'temperature' must be a finite number > 0, got 0"),
        ("softmax_backward", (x, z, -1, 1.0, None), "argument 'y' (Float [3, 5]) must have the shape and dtype of "
                                                    "'grad' (Float [3, 4])"),
        ("log_softmax_backward", (x, x.double(), -1, 1.0, None), "argument 'y' (Double [3, 4]) must have the shape "
                                                                 "and dtype of 'grad' (Float [3, 4])"),
        ("softmax_backward", (xi, x, -1, 1.0, None), "argument 'grad' must be a floating-point tensor"),
        ("log_softmax_backward", (x, x, -1, -1.0, None), "argument 'temperature' must be a finite number > 0, got -1"),
        ("grouped_softmax", (x, [1, 2], 1, 1.0, None), "argument 'group_sizes' must be positive sizes summing to the "
                                                       "size of dim 1 (4), got [1, 2]"),
        ("grouped_softmax", (x, [1, 0, 3], -1, 1.0, None), "argument 'group_sizes' must be positive sizes summing to "
                                                           "the size of dim 1 (4), got [1, 0, 3]"),
        ("grouped_softmax", (x, [], 0, 1.0, None), "argument 'group_sizes' must be positive sizes summing to the size "
                                                   "of dim 0 (3), got []"),
        ("grouped_softmax", (x, [4], 5, 1.0, None), "argument 'dim' (5) is out of range for a 2-d tensor"),
        ("grouped_softmax", (x, [4], 1, 0.0, None), "argument 'temperature' must be a finite number > 0, got 0"),
        ("grouped_softmax_backward", (x, x, [1, 2, 2], -1, 1.0, None),
         "argument 'group_sizes' must be positive sizes summing to the size of dim 1 (4), got [1, 2, 2]"),
        ("grouped_softmax_backward", (x, z, [4], -1, 1.0, None), "argument 'y' (Float [3, 5]) must have the shape"),
        ("distillation_loss", (xi, xi, 1.0, "sum"), "argument 'student' must be a floating-point tensor"),
        ("distillation_loss", (x, xi, 1.0, "sum"), "argument 'teacher' must be a floating-point tensor"),
        ("distillation_loss", (x, x.double(), 1.0, "sum"), "argument 'teacher' (Double [3, 4]) must have the shape "
                                                           "and dtype of 'student' (Float [3, 4])"),
        ("distillation_loss", (x, z, 1.0, "sum"), "argument 'teacher' (Float [3, 5]) must have the shape and dtype "
                                                  "of 'student' (Float [3, 4])"),
        ("distillation_loss", (one, one, 1.0, "sum"), "argument 'student' must have at least one dimension"),
        ("distillation_loss", (x, x, 1.0, "avg"), "argument 'reduction' must be one of 'none', 'mean', 'sum', "
                                                  "'batchmean', got 'avg'"),
        ("distillation_loss", (x, x, 0.0, "sum"), "argument 'temperature' must be a finite number > 0, got 0"),
        ("distillation_loss_backward", (one, x, x, torch.zeros(3, 4, device=DEVICE), 1.0, "sum", True),
         "argument 'stats' must be the [3, 5] Float statistics saved by distillation_loss, got Float of shape [3, 4]"),
        ("distillation_loss_backward", (one, x, x, z.double(), 1.0, "sum", True),
         "argument 'stats' must be the [3, 5] Float statistics saved by distillation_loss, got Double of shape "
         "[3, 5]"),
        ("distillation_loss_backward", (torch.ones(3, device=DEVICE), x, x, z, 1.0, "sum", True),
         "argument 'grad' must be 0-d for a reduced loss, got shape [3]"),
        ("distillation_loss_backward", (torch.ones(3, device=DEVICE), x, x, z, 1.0, "none", True),
         "argument 'grad' must have the shape of 'student' [3, 4] for reduction 'none', got [3]"),
        ("distillation_loss_backward", (one, x, x, z, 1.0, "bad", True),
         "argument 'reduction' must be one of 'none', 'mean', 'sum', 'batchmean', got 'bad'"),
        ("distillation_loss_backward", (one.long(), x, x, z, 1.0, "sum", True),
         "argument 'grad' must be a floating-point tensor"),
        ("distillation_loss_backward", (one, x, x, z, -2.0, "sum", True),
         "argument 'temperature' must be a finite number > 0, got -2"),
    ]


def test_errors():
    for op, args, text in _error_cases():
        with pytest.raises(RuntimeError) as info:
            getattr(T, op)(*args)
        msg = str(info.value)
        assert msg.startswith(f"glo_kernels.{op}: {text}"), (op, msg)


def test_errors_match_cpp():
    """The same texts as the C++ operators (torch.ops.glo_kernels.*), case by case."""
    C = torch.ops.glo_kernels
    for op, args, _ in _error_cases():
        msgs = []
        for ns in (C, T):
            try:
                getattr(ns, op)(*args)
                msgs.append("no error")
            except RuntimeError as e:
                msgs.append(str(e).splitlines()[0])
        assert msgs[0] == msgs[1], (op, msgs)
