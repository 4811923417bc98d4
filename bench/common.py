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
    return median_times([fn], device, warmup=warmup, budget_s=budget_s, reps=reps)[0]


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


# ---- sweeps: shapes per op family, copies, torch.compile of the eager baseline ----
def sweep_shape(op: OpSpec, numel: int) -> tuple[int, ...]:
    """A shape of `numel` elements (a power of 2) for op: rows of the softmax family are set by softmax_row();
    per-channel ops get NCHW with 32 x 32 planes and C from 16 (2^16 elements) to 1024 (2^26); others (64, numel/64)."""
    if op.param_names and op.family == "elementwise":
        k = numel.bit_length() - 1
        channels = min(1024, max(16, 16 << max(0, (k - 16) * 6 // 10)), numel)
        hw = max(1, min(1024, numel // channels))
        n = max(1, numel // (channels * hw))
        return (n, channels, 32, hw // 32) if hw >= 1024 else (n, channels, 1, hw)
    rows = 64 if numel >= 64 * 64 else 1
    return (rows, numel // rows)


def softmax_shape(row: int, numel: int) -> tuple[int, int]:
    """(rows, row) with about `numel` elements in all (at least one row)."""
    return (max(1, numel // row), row)


def copy_time(numel: int, dtype: torch.dtype, device: torch.device) -> float:
    """Median seconds of x.clone() (read N, write N elements into a fresh tensor, as an op's output is)."""
    x = torch.randn(numel, dtype=torch.float32).to(dtype=dtype, device=device)
    return median_time(lambda: x.clone(), device)


_COMPILED: dict = {}


def compiled(op: OpSpec, kwargs: dict):
    """torch.compile(dynamic=False) of the eager baseline of op with these scalar arguments (one per op and kwargs;
    it recompiles per shape and dtype, with a cache limit raised so that sweeps never fall back to eager)."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
    torch._dynamo.config.accumulated_cache_size_limit = max(torch._dynamo.config.accumulated_cache_size_limit, 4096)
    key = (op.name, repr(sorted(kwargs.items())))
    if key not in _COMPILED:
        base = eager(op)
        _COMPILED[key] = torch.compile(lambda x, *p: base(x, *p, **kwargs), dynamic=False)
    fn = _COMPILED[key]
    return lambda x, *p, **_: fn(x, *p)


def overhead_us(fn, x, device: torch.device, calls: int = 2000) -> float:
    """Median over 5 batches of µs per call of fn(x) on a small tensor, without autograd."""
    with torch.no_grad():
        for _ in range(50):
            fn(x)
        sync(device)
        per = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(calls):
                fn(x)
            sync(device)
            per.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(per)


def median_times(fns, device: torch.device, warmup: int = 2, budget_s: float = 1.0,
                 reps: int | None = None) -> list[float]:
    """Median seconds of each callable, measured interleaved (A B C A B C ...) after warm-up, so that all of them see
    the same machine state (clock, caches, the allocator's free lists); `reps` rounds, or 5 to 100 within about
    budget_s. CUDA events on a GPU, perf_counter with a sync on the CPU."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    sync(device)
    rounds = reps
    if rounds is None:
        t0 = time.perf_counter()
        for fn in fns:
            fn()
        sync(device)
        rounds = int(min(100, max(5, budget_s / max(time.perf_counter() - t0, 1e-6))))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times[i].append(start.elapsed_time(end) / 1e3)
            else:
                t1 = time.perf_counter()
                fn()
                times[i].append(time.perf_counter() - t1)
    return [statistics.median(t) for t in times]
