"""GPU-only checks of the CUDA and Triton kernels against the CPU kernels: sizes and alignments that exercise the
vector paths and tails, the PReLU reduction geometries, determinism. Skipped (with the reason) without a GPU."""
import pytest
import torch

import glo_kernels
from glo_kernels._registry import OPS

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
                torch.testing.assert_close(out.cpu(), ref, rtol=0, atol=0, equal_nan=True)
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
