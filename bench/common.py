"""Shared by the pytest-benchmark suite and the report: inputs, timing, byte counts."""
from __future__ import annotations

import os
import platform
import re
import statistics
import time

import torch

import glo_kernels
from glo_kernels._registry import OpSpec

# The reference shape: (64, 262144) = 2^24 elements. GLO_BENCH_SMALL=1 shrinks it for smoke runs.
DEFAULT_SHAPE = (64, 262144)
SMALL_SHAPE = (8, 1024)


def bench_shape() -> tuple[int, ...]:
    return SMALL_SHAPE if os.environ.get("GLO_BENCH_SMALL", "0") not in ("", "0") else DEFAULT_SHAPE


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model} ({os.cpu_count()} cores)"


def device_slug(device: torch.device) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", device_name(device)).strip("-").lower()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn, device: torch.device, warmup: int = 3, reps: int | None = None, budget_s: float = 1.0) -> float:
    """Median seconds of fn() after warm-up: CUDA events on a GPU, perf_counter with a sync on the CPU."""
    for _ in range(warmup):
        fn()
    sync(device)
    if reps is None:  # as many repetitions as fit the budget, 5 to 100
        t0 = time.perf_counter()
        fn()
        sync(device)
        reps = int(min(100, max(5, budget_s / max(time.perf_counter() - t0, 1e-6))))
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def make_case(op: OpSpec, shape, dtype, device, per_channel: bool = True, seed: int = 0, kwargs: dict | None = None):
    """x, the op's learned parameters and an upstream gradient dy (shaped like the op's output)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float32, generator=g).to(dtype=dtype, device=device)
    with torch.no_grad():
        out_shape = op.reference(x, *op.make_params(shape, dtype, device, per_channel),
                                 **(kwargs or {})).shape
    dy = torch.randn(out_shape, dtype=torch.float32, generator=g).to(dtype=dtype, device=device)
    torch.manual_seed(seed)
    params = tuple(p.requires_grad_(op.params_require_grad) for p in op.make_params(shape, dtype, device, per_channel))
    return x, params, dy


def runner(fn, x, params, dy, direction: str, kwargs: dict | None = None):
    """A no-argument callable running fn forward ('fwd', no autograd), backward alone ('bwd') or both ('fwd+bwd')."""
    kw = kwargs or {}
    if direction == "fwd":

        def run():
            with torch.no_grad():
                fn(x, *params, **kw)

    elif direction == "bwd":  # backward alone, through one recorded graph
        xi = x.detach().requires_grad_()
        y = fn(xi, *params, **kw)

        def run():
            torch.autograd.grad(y, xi, dy, retain_graph=True)

    elif direction == "fwd+bwd":

        def run():
            xi = x.detach().requires_grad_()
            fn(xi, *params, **kw).backward(dy)

    else:
        raise ValueError(direction)
    return run


def ours(op: OpSpec, backend: str):
    def call(x, *params, **kwargs):
        with glo_kernels.use_backend(backend):
            return op.fn(x, *params, **kwargs)

    return call


def eager(op: OpSpec):
    return op.eager or op.reference


def min_bytes(op: OpSpec, direction: str, numel: int, elem: int) -> int:
    """Fewest bytes the op must move (each input read once, each output written once), with ours' saved state."""
    fwd = op.bytes_fwd * numel * elem + op.aux_bytes * numel
    bwd = op.bytes_bwd * numel * elem + op.aux_bytes * numel
    return int({"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + bwd}[direction])


def saved_bytes(fn, x, params, kwargs: dict | None = None) -> int:
    """Bytes autograd keeps for backward when fn runs on x, measured with saved-tensor hooks (each storage once)."""
    seen = {}
    xi = x.detach().requires_grad_()

    def pack(t):
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(xi, *params, **(kwargs or {}))
    return sum(seen.values())
