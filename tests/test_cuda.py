"""GPU-only checks of the CUDA and Triton kernels against the CPU kernels: sizes and alignments that exercise the
vector paths and tails, the PReLU reduction geometries, determinism; the 16-bit CUDA kernels' fast device math
against float64 over every 16-bit input. Skipped (with the reason) without a GPU."""
import os

import pytest
import torch

import glo_kernels
from glo_kernels._registry import OPS
from helpers import EPS

_status = glo_kernels.available_backends()
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible: CUDA/Triton GPU tests skipped"),
]
GPU_BACKENDS = [
    pytest.param(name, marks=pytest.mark.skipif(not _status[name].available, reason=f"backend {name}: {_status[name].reason}"))
    for name in ("cuda", "triton")
]
DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


SIXTEEN = (torch.bfloat16, torch.float16)
U32 = 2.0**-24  # float's unit roundoff: the 16-bit kernels compute in float


def _ordered(t: torch.Tensor) -> torch.Tensor:
    """16-bit values as integers in the order of the values: ulps apart = their difference (-0.0 and 0.0 both 0)."""
    b = t.view(torch.int16).int()
    return torch.where(b < 0, -(b & 0x7FFF), b)


def _assert_matches_cpu(op, out, ref, what):
    """CUDA / Triton against the CPU kernels: bit for bit for the ops without transcendentals; for the others (exp,
    expm1, tanh are other implementations, within the op table's ulps of the exact value each, OpSpec.ulps; the
    16-bit CUDA kernels use their fast16 device math, activations.h): within twice that of each other in
    float32 / float64, and in 16 bits the same value or an adjacent one (each is one of the two 16-bit neighbours of
    the exact value: both are within 1e-6 of it, far below a 16-bit ulp)."""
    if op.exact:
        torch.testing.assert_close(out, ref, rtol=0, atol=0, equal_nan=True, msg=what)
        return
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), f"{what}: NaN positions differ"
    if out.dtype in SIXTEEN:
        num = ~torch.isnan(ref)
        d = (_ordered(out[num]) - _ordered(ref[num])).abs()
        assert d.numel() == 0 or d.max() <= 1, f"{what}: {int(d.max())} ulp apart"
        return
    rel = 2 * op.ulps * EPS[out.dtype] * 1.01
    torch.testing.assert_close(out, ref, rtol=rel, atol=rel * torch.finfo(out.dtype).smallest_normal,
                               equal_nan=True, msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("offset", [0, 1, 3], ids=lambda o: f"offset{o}")  # offsets break 16-byte alignment
@pytest.mark.parametrize("n", [1, 31, 32, 33, 127, 128, 129, 4097, 1 << 20, (1 << 20) + 13])
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_elementwise_matches_cpu(backend, n, offset, dtype):
    base = torch.randn(n + offset, dtype=torch.float32).to(dtype)
    base[::7] = 0.0
    x_cpu = base[offset:]
    x = base.cuda()[offset:]
    for op in OPS:
        for per_channel in (False,):
            params = op.make_params(x_cpu.shape, dtype, "cpu", per_channel)
            for kwargs in op.cases_for(x_cpu.shape):
                with glo_kernels.use_backend("cpu"):
                    ref = op.fn(x_cpu, *params, **kwargs)
                with glo_kernels.use_backend(backend):
                    out = op.fn(x, *[p.cuda() for p in params], **kwargs)
                _assert_matches_cpu(op, out.cpu(), ref, f"{op.name}[{backend}, {dtype}, n={n}, {kwargs}]")
    # masks bit for bit, forward and in place
    ns = glo_kernels.backends.op_namespace(backend)
    y, mask = ns.relu(x, True)
    _, mask_cpu = torch.ops.glo_kernels.relu(x_cpu, True)
    assert torch.equal(mask.cpu(), mask_cpu)
    xi = x.clone()
    mask_i = ns.leaky_relu_(xi, 0.1, True)
    assert torch.equal(mask_i.cpu(), torch.ops.glo_kernels.leaky_relu(x_cpu, 0.1, True)[1])
    g = torch.randn_like(x)
    torch.testing.assert_close(ns.relu_backward(g, mask).cpu(), torch.ops.glo_kernels.relu_backward(g.cpu(), mask_cpu),
                               rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(64, 262144), (32, 64, 56, 56), (1 << 24,), (1 << 20, 4), (2, 3, 1 << 20), (1, 4096, 7),
                                   (8, 1000, 100), (3, 5, 300)], ids=str)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_prelu_backward_geometries(backend, shape):
    gen = torch.Generator().manual_seed(0)
    for per_channel in (False, True):
        x_cpu = torch.randn(shape, generator=gen)
        dy_cpu = torch.randn(shape, generator=gen)
        c = shape[1] if (per_channel and len(shape) >= 2) else 1
        w_cpu = torch.rand(c, generator=gen)
        dx_ref, dw_ref = torch.ops.glo_kernels.prelu_backward(dy_cpu, x_cpu, w_cpu)
        ns = glo_kernels.backends.op_namespace(backend)
        x, dy, w = x_cpu.cuda(), dy_cpu.cuda(), w_cpu.cuda()
        dx, dw = ns.prelu_backward(dy, x, w)
        torch.testing.assert_close(dx.cpu(), dx_ref, rtol=0, atol=0)
        scale = (x_cpu.clamp(max=0).double() * dy_cpu.double()).abs()
        bound = (scale.sum() if c == 1 else scale.transpose(0, 1).reshape(c, -1).sum(1)) * 1e-5 + 1e-6
        assert ((dw.cpu().double() - dw_ref.double()).abs() <= bound).all()
        for _ in range(3):  # deterministic: bitwise the same on every call
            dx2, dw2 = ns.prelu_backward(dy, x, w)
            assert torch.equal(dw2, dw) and torch.equal(dx2, dx)


@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_second_gpu_and_current_stream(backend):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two GPUs")
    x = torch.randn(1000, device="cuda:1")
    with glo_kernels.use_backend(backend):
        y = glo_kernels.relu(x)
    assert y.device == x.device
    torch.testing.assert_close(y.cpu(), torch.relu(x.cpu()))


# ---- the 16-bit CUDA kernels' fast device math (glo::fast16, csrc/include/glo/activations.h) ----
# Relative error bounds of the float result, before its rounding to 16 bits, derived from the header's (u = 2^-24;
# an approximation within 2 ulp is within 4u relative, 1 ulp 2u):
#  ELU forward, x < 0: fast16 expm1 (<= 7.5e-7) times alpha (alpha's rounding to float, the product: 2u); x >= 0: x.
#  ELU backward (from x), x <= 0: dy alpha expf(x): expf 4u, alpha u, two products 2u; x > 0: dy.
#  sigmoid forward: e = expf(-|x|) 4u; 1 / (1 + e) by rcp.approx: the sum u, rcp 2u, e's error through it
#    e / (1 + e) 4u <= 2u: 5u; x < 0: e times that, 4u + 5u + u = 10u.
#  sigmoid backward (from the 16-bit y): dy (1 - y) y, three roundings: 3u.
#  PELU forward (a, b > 0), x < 0: a expm1(u) with u = x * fl(1/b), off x / b by 2u relative, which moves expm1 by
#    2u |u| e^u / |expm1(u)| <= 2u: 7.5e-7 + 2u + the product u; x >= 0: fl(a / b) x: 2u.
#  PELU dx, x < 0: fl(a / b) E dy, E = expf(u): 4u, and u's 2u relative error scaled by |u| in E: 2u |u|; the
#    quotient and two products 3u; x >= 0: fl(a / b) dy: 2u.
# A kernel result that is not the float64 result's rounding must then be the other 16-bit neighbour, with the
# float64 result within that bound of their midpoint (a rounding tie): checked element by element.
_FAST16_EXPM1 = 7.5e-7  # fast16 expm1 on x < 0 (activations.h), the larger of its two ranges' bounds
_TWO_POW = {torch.float16: 65536.0, torch.bfloat16: 2.0**128}  # the power of 2 just past the largest finite value


def _within_one_ulp(ours, y64, rel, what):
    """ours (16-bit) is the 16-bit rounding of y64 (float64), or the neighbour across a tie that y64 lies within
    rel * |y64| of; NaN where y64 is NaN, and zeros of y64's sign."""
    ours, y64 = ours.cpu(), y64.cpu()
    nan = torch.isnan(y64)
    assert torch.equal(torch.isnan(ours), nan), f"{what}: NaN positions differ"
    o, y, rel = ours[~nan], y64[~nan], rel.cpu().expand_as(y64)[~nan]
    r = y.to(ours.dtype)
    d = (_ordered(o) - _ordered(r)).abs()
    worst = int(d.argmax()) if d.numel() else 0
    assert d.numel() == 0 or d.max() <= 1, f"{what}: {int(d.max())} ulp off at {y[worst].item()!r}"
    zeros = (o == 0) & (r == 0)
    assert torch.equal(o[zeros].signbit(), r[zeros].signbit()), f"{what}: sign of a zero"
    off = d == 1
    big = _TWO_POW[ours.dtype]
    od = torch.where(o.isinf(), big * o.sign().double(), o.double())
    rd = torch.where(r.isinf(), big * r.sign().double(), r.double())
    gap = ((y - (od + rd) / 2).abs() / y.abs())[off]
    bad = gap > rel[off]
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {int(off.sum())} results across a tie farther than the "
                           f"bound, e.g. {y[off][bad][0].item()!r}")


@pytest.mark.skipif(not _status["cuda"].available, reason=f"backend cuda: {_status['cuda'].reason}")
@pytest.mark.parametrize("dtype", SIXTEEN, ids=str)
def test_fast16_math_within_one_ulp_of_float64(dtype):
    """ELU, sigmoid and PELU forward and input gradient of the 16-bit CUDA kernels over every 16-bit input x (NaNs,
    infinities, subnormals, -0.0 included): the rounding of the float64 result, or its neighbour where the float64
    result lies within the derived bound (above) of a tie."""
    ops = torch.ops.glo_kernels
    x = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16).view(dtype)
    gen = torch.Generator().manual_seed(0)
    dy = (torch.randn(x.shape, generator=gen) * 3).to(dtype)
    x64, dy64 = x.double(), dy.double()
    xc, dyc = x.cuda(), dy.cuda()
    neg = x64 < 0
    zero = torch.zeros_like(x64)
    for alpha in (1.0, 0.7):
        y64 = torch.nn.functional.elu(x64, alpha)
        _within_one_ulp(ops.elu(xc, alpha), y64, torch.where(neg, _FAST16_EXPM1 + 2 * U32, zero),
                        f"elu[{dtype}, alpha={alpha}]")
        g64 = torch.where(x64 > 0, dy64, dy64 * alpha * x64.exp())
        _within_one_ulp(ops.elu_backward(dyc, xc, alpha, False), g64, torch.where(x64 > 0, zero, zero + 7 * U32),
                        f"elu_backward[{dtype}, alpha={alpha}]")
    y64 = torch.sigmoid(x64)
    y = ops.sigmoid(xc)
    _within_one_ulp(y, y64, torch.where(neg, zero + 10 * U32, zero + 5 * U32), f"sigmoid[{dtype}]")
    ys = y.cpu().double()  # the backward reads the saved 16-bit output
    _within_one_ulp(ops.sigmoid_backward(dyc, y), dy64 * (1 - ys) * ys, zero + 3 * U32, f"sigmoid_backward[{dtype}]")
    for a_, b_ in ((1.3, 0.6), (0.25, 1.75), (2.0, 0.2)):
        a, b = torch.tensor([a_], dtype=dtype), torch.tensor([b_], dtype=dtype)
        a64, b64 = a.double(), b.double()
        u64 = x64 / b64
        what = f"[{dtype}, a={a.item()}, b={b.item()}]"
        y64 = torch.where(x64 >= 0, a64 / b64 * x64, a64 * torch.expm1(u64))
        _within_one_ulp(ops.pelu(xc, a.cuda(), b.cuda()), y64,
                        torch.where(neg, zero + _FAST16_EXPM1 + 3 * U32, zero + 2 * U32), f"pelu{what}")
        dx, _, _ = ops.pelu_backward(dyc, xc, a.cuda(), b.cuda())
        g64 = torch.where(x64 >= 0, a64 / b64 * dy64, a64 / b64 * u64.exp() * dy64)
        rel = torch.where(neg, 7 * U32 + 2 * U32 * u64.abs().nan_to_num(0.0, 0.0, 0.0), zero + 2 * U32)
        _within_one_ulp(dx, g64, rel, f"pelu_backward dx{what}")


# ---- softmax family: every launch plan of the CUDA and Triton kernels (row lengths around each threshold) ----
SOFTMAX_ROWS = [1, 7, 32, 100, 128, 129, 1000, 4096, 4097, 8192, 8193, 20000, 32768, 40961, 100000, 262144, 330001]


def _close_rows(out, ref, dtype, what, extra=None):
    """Normwise per row: |out - ref| <= tol * (max|ref| of the row + extra) (+ NaN where the reference has NaN)."""
    tol = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    o, r = out.double().cpu(), ref.double().cpu()
    assert torch.equal(torch.isnan(o), torch.isnan(r)), f"{what}: NaN positions differ"
    fin = torch.isfinite(r)
    scale = torch.where(fin, r.abs(), torch.zeros_like(r)).amax(-1, keepdim=True).clamp_min(1e-30)
    if extra is not None:
        scale = scale + extra.double().cpu().nan_to_num(0.0)
    err = torch.where(fin, (o - r).abs(), torch.zeros_like(r))
    assert (err <= tol * scale).all(), f"{what}: max error {(err / scale).max().item():.3g} (x row max)"


def _cancellation(name, y, dy, temperature):
    """The rounding floor of a softmax backward's dy - sum(...) per row: max|dy| p / T (log: plus |sum dy| p / T)."""
    p = y.double().exp() if name == "log_softmax" else y.double().abs()
    pmax = p.nan_to_num(0.0).amax(-1, keepdim=True)
    dmax = dy.double().abs().amax(-1, keepdim=True)
    extra = dmax * pmax / temperature
    if name == "log_softmax":
        extra = extra + dy.double().sum(-1, keepdim=True).abs() * pmax / temperature + dmax / temperature
    return extra


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("n", SOFTMAX_ROWS)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_softmax_rows_match_cpu(backend, n, dtype):
    if dtype == torch.float64 and n > 40961:
        pytest.skip("float64: long rows covered up to 40961")
    rows = max(1, min(64, (1 << 21) // n))
    gen = torch.Generator().manual_seed(n)
    x_cpu = (torch.randn(rows, n + 1, generator=gen) * 4).to(dtype)[:, 1:]  # offset 1: unaligned rows
    dy_cpu = torch.randn(rows, n, generator=gen).to(dtype)
    if rows > 2:
        x_cpu[1, n // 2] = float("nan")
        x_cpu[2, :] = float("-inf")
    ns = glo_kernels.backends.op_namespace(backend)
    cpu = torch.ops.glo_kernels
    x, dy = x_cpu.cuda(), dy_cpu.cuda()
    for x_used, x_ref in ((x, x_cpu), (x.contiguous(), x_cpu.contiguous())):
        for name in ("softmax", "log_softmax"):
            y_ref = getattr(cpu, name)(x_ref, -1, 0.7, None)
            y = getattr(ns, name)(x_used, -1, 0.7, None)
            _close_rows(y, y_ref, dtype, f"{backend} {name} n={n}")
            dx_ref = getattr(cpu, name + "_backward")(dy_cpu, y_ref, -1, 0.7, None)
            dx = getattr(ns, name + "_backward")(dy, y_ref.cuda(), -1, 0.7, None)
            _close_rows(dx, dx_ref, dtype, f"{backend} {name}_backward n={n}", _cancellation(name, y_ref, dy_cpu, 0.7))
            torch.testing.assert_close(getattr(ns, name)(x_used, -1, 0.7, None), y, rtol=0, atol=0, equal_nan=True,
                                       msg="deterministic: bitwise the same on every call")
    # learned temperature read on the device
    t = torch.tensor(0.7, dtype=torch.float64, device="cuda")
    _close_rows(ns.softmax(x, -1, 1.0, t), cpu.softmax(x_cpu, -1, 0.7, None), dtype, f"{backend} device temperature")


# Along a strided dim (csrc/include/glo/softmax_plan.h plan_strided): tiles of odd inner (scalar loads, padded lanes),
# 16-byte tiles (3136 = 56 * 56), one lane of 256 threads (inner 4, 3000 rows), a partial last tile (inner 1000), a
# dim read once forward but not backward (8000), columns (70000), and the contiguous path (inner 1).
@pytest.mark.parametrize("shape,dim", [((4, 1000, 3), 1), ((2, 70000, 2), 1), ((64, 5, 56, 56), 1), ((3, 7), 0),
                                       ((1, 300, 1), 1), ((2, 3000, 4), 1), ((3, 20, 1000), 1), ((2, 8000, 8), 1),
                                       ((5, 33, 17), 1)], ids=str)
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_softmax_strided_and_grouped_match_cpu(backend, shape, dim):
    gen = torch.Generator().manual_seed(1)
    ns = glo_kernels.backends.op_namespace(backend)
    cpu = torch.ops.glo_kernels
    for dtype in (torch.float32, torch.bfloat16):
        x_cpu = torch.randn(shape, generator=gen).to(dtype)
        dy_cpu = torch.randn(shape, generator=gen).to(dtype)
        x, dy = x_cpu.cuda(), dy_cpu.cuda()
        size = shape[dim]
        groups = [1, 2, 3] * (size // 6) + [size - 6 * (size // 6)] if size >= 6 else [size]
        groups = [g for g in groups if g > 0]
        for name, args in (("softmax", ()), ("log_softmax", ()), ("grouped_softmax", (groups,))):
            y_ref = getattr(cpu, name)(x_cpu, *args, dim, 1.3, None)
            y = getattr(ns, name)(x, *args, dim, 1.3, None)
            _close_rows(y.movedim(dim, -1), y_ref.movedim(dim, -1), dtype, f"{backend} {name} {shape}")
            dx_ref = getattr(cpu, name + "_backward")(dy_cpu, y_ref, *args, dim, 1.3, None)
            dx = getattr(ns, name + "_backward")(dy, y_ref.cuda(), *args, dim, 1.3, None)
            _close_rows(dx.movedim(dim, -1), dx_ref.movedim(dim, -1), dtype, f"{backend} {name}_backward {shape}",
                        _cancellation(name, y_ref.movedim(dim, -1), dy_cpu.movedim(dim, -1), 1.3))


@pytest.mark.parametrize("cols", [1, 10, 1000, 4096, 5000, 32000, 262144])
@pytest.mark.parametrize("backend", GPU_BACKENDS)
def test_distillation_matches_cpu(backend, cols):
    gen = torch.Generator().manual_seed(cols)
    rows = max(1, min(64, (1 << 21) // cols))
    ns = glo_kernels.backends.op_namespace(backend)
    cpu = torch.ops.glo_kernels
    for dtype in (torch.float32, torch.bfloat16):
        s_cpu = (torch.randn(rows, cols, generator=gen) * 3).to(dtype)
        t_cpu = (torch.randn(rows, cols, generator=gen) * 3).to(dtype)
        s, t = s_cpu.cuda(), t_cpu.cuda()
        for reduction in ("batchmean", "none"):
            loss_ref, stats_ref = cpu.distillation_loss(s_cpu, t_cpu, 2.0, reduction)
            loss, stats = ns.distillation_loss(s, t, 2.0, reduction)
            torch.testing.assert_close(stats.cpu(), stats_ref, rtol=1e-4, atol=1e-4)
            _close_rows(loss.reshape(rows, -1) if reduction == "none" else loss.reshape(1, 1),
                        loss_ref.reshape(rows, -1) if reduction == "none" else loss_ref.reshape(1, 1), dtype,
                        f"{backend} distillation {reduction}")
            g_cpu = torch.randn(loss_ref.shape, generator=gen).to(dtype)
            ds_ref, dt_ref = cpu.distillation_loss_backward(g_cpu, s_cpu, t_cpu, stats_ref, 2.0, reduction, True)
            ds, dt = ns.distillation_loss_backward(g_cpu.cuda(), s, t, stats_ref.cuda(), 2.0, reduction, True)
            _close_rows(ds, ds_ref, dtype, f"{backend} distillation d student {reduction}")
            _close_rows(dt, dt_ref, dtype, f"{backend} distillation d teacher {reduction}")


def test_softmax_plan_of_this_device():
    """The plan inputs softmax.cu queried for this GPU (once per device) give the plans tests/test_softmax_plan.py
    checks: on sm_90+ (clusters) every row up to 262144, float32 and bfloat16, forward and backward, is read once."""
    if not _status["cuda"].available:
        pytest.skip(f"backend cuda: {_status['cuda'].reason}")
    dev = torch.cuda.current_device()
    sm, smem, cluster, portable, nonportable, active, allow, max_cluster, exchange = \
        torch.ops.glo_kernels_debug.softmax_device_props(dev)
    assert sm == torch.cuda.get_device_properties(dev).multi_processor_count
    assert torch.ops.glo_kernels_debug.softmax_device_props(dev) == [sm, smem, cluster, portable, nonportable, active,
                                                                     allow, max_cluster, exchange]  # queried once
    # the default cluster exchange is the mbarrier one (1), unless GLO_SOFTMAX_EXCHANGE says otherwise
    assert exchange == {"sync": 0, "mbarrier": 1}[os.environ.get("GLO_SOFTMAX_EXCHANGE", "mbarrier")]
    if torch.cuda.get_device_capability(dev) < (9, 0) or not allow:
        pytest.skip("one read up to 262144 needs clusters (sm_90+, GLO_SOFTMAX_CLUSTERS unset)")
    assert cluster and active >= 8, (cluster, active)
    for size in (1024, 40961, 131072, 200001, 262144):
        for elem_bytes in (4, 2):
            for backward in (False, True):
                p = torch.ops.glo_kernels_debug.softmax_plan(64, size, elem_bytes, backward, sm, smem, cluster,
                                                             portable, nonportable, active, allow, max_cluster,
                                                             exchange)
                assert p[8] == 1, (size, elem_bytes, backward, p)


def test_grouped_softmax_offsets_cached_and_graph_capturable():
    """Grouped softmax keeps its group offsets on the device after the first call: later calls make no host copy, so
    they can be captured in a CUDA graph; the replay gives the eager bits. A new group list during capture is a clear
    error, not a broken graph."""
    if not _status["cuda"].available:
        pytest.skip(f"backend cuda: {_status['cuda'].reason}")
    ops = torch.ops.glo_kernels
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(64, 1000, generator=gen).cuda()
    dy = torch.randn(64, 1000, generator=gen).cuda()
    groups = [1, 7, 992]
    y_eager = ops.grouped_softmax(x, groups, 1, 1.5, None)  # first call: copies (and caches) the offsets
    dx_eager = ops.grouped_softmax_backward(dy, y_eager, groups, 1, 1.5, None)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = ops.grouped_softmax(x, groups, 1, 1.5, None)
        dx = ops.grouped_softmax_backward(dy, y, groups, 1, 1.5, None)
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, y_eager) and torch.equal(dx, dx_eager)
    x.copy_(torch.randn(64, 1000, generator=gen).cuda())
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(y, ops.grouped_softmax(x, groups, 1, 1.5, None))
    with pytest.raises(RuntimeError, match=r"glo_kernels\.grouped_softmax: the first call with a new 'group_sizes'"):
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            ops.grouped_softmax(x, [500, 500], 1, 1.5, None)


_EXCHANGE_CHILD = r"""
import sys, torch, glo_kernels
ops = torch.ops.glo_kernels
out = {}
for n in (40961, 131072, 200001, 262144, 524288):
    for dtype in (torch.float32, torch.bfloat16):
        gen = torch.Generator().manual_seed(n)
        x = (torch.randn(6, n, generator=gen) * 4).to(dtype).cuda()
        dy = torch.randn(6, n, generator=gen).to(dtype).cuda()
        for name in ("softmax", "log_softmax"):
            y = getattr(ops, name)(x, -1, 0.7, None)
            dx = getattr(ops, name + "_backward")(dy, y, -1, 0.7, None)
            out[f"{name}-{n}-{dtype}"] = (y.cpu(), dx.cpu())
torch.save(out, sys.argv[1])
"""


def test_softmax_cluster_exchanges_agree(tmp_path):
    """The two cluster exchanges (GLO_SOFTMAX_EXCHANGE=sync: cluster barriers; mbarrier: DSMEM stores completing on
    mbarriers) combine the blocks' partial results in the same order: bitwise the same outputs, forward and backward,
    for rows held by clusters of 2..16 blocks. Each runs in its own process (the switch is read once per device)."""
    if not _status["cuda"].available:
        pytest.skip(f"backend cuda: {_status['cuda'].reason}")
    if torch.cuda.get_device_capability() < (9, 0):
        pytest.skip("thread-block clusters need sm_90+")
    import subprocess
    import sys
    results = {}
    for mode in ("sync", "mbarrier"):
        path = tmp_path / f"{mode}.pt"
        env = dict(os.environ, GLO_SOFTMAX_EXCHANGE=mode)
        env.pop("GLO_SOFTMAX_CLUSTERS", None)
        proc = subprocess.run([sys.executable, "-c", _EXCHANGE_CHILD, str(path)], env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, f"GLO_SOFTMAX_EXCHANGE={mode}: {proc.stderr[-3000:]}"
        results[mode] = torch.load(path)
    for key, (y, dx) in results["sync"].items():
        y2, dx2 = results["mbarrier"][key]
        assert torch.equal(y, y2) and torch.equal(dx, dx2), f"{key}: the exchanges disagree"
        assert torch.isfinite(y).all() and torch.isfinite(dx).all(), key
