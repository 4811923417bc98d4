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


def make_case(op: OpSpec, shape, dtype, device, per_channel: bool = True, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.float32, generator=g).to(dtype=dtype, device=device)
    dy = torch.randn(shape, dtype=torch.float32, generator=g).to(dtype=dtype, device=device)
    torch.manual_seed(seed)
    params = tuple(p.requires_grad_() for p in op.make_params(shape, dtype, device, per_channel))
    return x, params, dy


def runner(fn, x, params, dy, direction: str):
    """A no-argument callable running fn forward ('fwd', no autograd) or forward + backward ('fwd+bwd')."""
    if direction == "fwd":

        def run():
            with torch.no_grad():
                fn(x, *params)

    elif direction == "fwd+bwd":

        def run():
            xi = x.detach().requires_grad_()
            fn(xi, *params).backward(dy)

    else:
        raise ValueError(direction)
    return run


def ours(op: OpSpec, backend: str):
    def call(x, *params):
        with glo_kernels.use_backend(backend):
            return op.fn(x, *params)

    return call


def eager(op: OpSpec):
    fn = op.eager or op.reference
    return lambda x, *params: fn(x, *params)


def min_bytes(op: OpSpec, direction: str, numel: int, elem: int) -> int:
    """Fewest bytes the op must move (each input read once, each output written once), ours incl. saved state."""
    fwd = op.bytes_fwd * numel * elem + (numel / 8 if op.saved_ours < 1 else 0)  # + the 1-bit mask written
    bwd = op.bytes_bwd * numel * elem + (numel / 8 if op.saved_ours < 1 else 0)  # + the mask read
    return int(fwd if direction == "fwd" else fwd + bwd)


def saved_bytes(op: OpSpec, numel: int, elem: int) -> tuple[int, int]:
    """Bytes kept for backward: (eager, ours)."""
    ours_b = numel / 8 if op.saved_ours < 1 else op.saved_ours * numel * elem
    return int(op.saved_eager * numel * elem), int(ours_b)
