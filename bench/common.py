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
    """The GPU's name, or the CPU's model with the vector ISA PyTorch dispatches to and the core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        isa = torch.backends.cpu.get_cpu_capability()  # e.g. "AVX2", "AVX512"
    except (AttributeError, RuntimeError):
        isa = ""
    return f"{model} ({isa + ', ' if isa and isa != 'DEFAULT' else ''}{os.cpu_count()} cores)"


def device_slug(device: torch.device) -> str:
    """A folder name for the device: "amd-epyc-avx2-2-cores", "intel-xeon-avx512-2-cores", "nvidia-h100-80gb-hbm3"
    (trademarks, "Processor", "CPU" and the clock dropped)."""
    name = re.sub(r"\((R|TM|tm)\)|\b(Processor|CPU)\b|@\s*[\d.]+\s*GHz", " ", device_name(device))
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


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

    elif direction == "bwd":  # backward alone, through one recorded graph, to every gradient the op has: x's and
        # its learned parameters' (as fwd+bwd's .backward(); asking for x's alone let eager skip a bias's or PReLU
        # weight's reduction, which ours computes in the same pass, so that eager's row did less work)
        xi = x.detach().requires_grad_()
        y = fn(xi, *params, **kw)
        wrt = [xi] + [p for p in params if isinstance(p, torch.Tensor) and p.requires_grad]

        def run():
            torch.autograd.grad(y, wrt, dy, retain_graph=True)

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
    """Fewest bytes the op must move (each input read once, each output written once), with ours' saved state where
    autograd records it: a forward without autograd ('fwd', run under no_grad) writes no mask or indices."""
    fwd = op.bytes_fwd * numel * elem
    bwd = op.bytes_bwd * numel * elem + op.aux_bytes * numel
    return int({"fwd": fwd, "bwd": bwd, "fwd+bwd": fwd + op.aux_bytes * numel + bwd}[direction])


def traffic(op: OpSpec, direction: str, numel: int, out_numel: int, elem: int) -> list[tuple[int, list[int]]]:
    """min_bytes split into phases as the op runs them, each (bytes read, [bytes written into each fresh allocation]):
    'fwd' and 'bwd' one phase, 'fwd+bwd' two. The forward writes its output (out_numel elements) and, under autograd
    ('fwd+bwd'), ours' saved mask or indices (aux_bytes per input element), which the backward reads; the backward
    writes dx (numel elements). The rest is read (inputs, dy, saved tensors). Gradients of the small per-channel
    parameters are left out, as min_bytes leaves them out."""
    aux = int(op.aux_bytes * numel)
    fwd = (int(op.bytes_fwd * numel * elem) - out_numel * elem, [out_numel * elem])
    bwd = (int(op.bytes_bwd * numel * elem) + aux - numel * elem, [numel * elem])
    phases = {"fwd": [fwd], "bwd": [bwd],
              "fwd+bwd": [(fwd[0], fwd[1] + ([aux] if aux else [])), bwd]}[direction]
    if any(r < 0 for r, _ in phases):
        raise ValueError(f"{op.name} {direction}: min_bytes is less than what it writes")
    return phases


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
    per-channel ops get NCHW with 32 x 32 planes and C from 16 (2^16 elements) to 1024 (2^26); a bias over the last
    dim (bias_gelu, bias_silu) a Linear layer's output of 4096 features, (numel/4096, 4096); others (64, numel/64)."""
    if op.bias is not None:
        features = min(4096, numel)
        return (numel // features, features)
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


_SOURCE: dict = {}


def _source(numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Ones of at least numel elements (one buffer per dtype and device, grown as needed): what the yardstick reads."""
    buf = _SOURCE.get((dtype, device))
    if buf is None or buf.numel() < numel:
        buf = _SOURCE[(dtype, device)] = torch.ones(max(numel, 1), dtype=dtype, device=device)
    return buf


def stream_kernel(reads: int, write: int, dtype: torch.dtype, device: torch.device):
    """The simplest streaming kernel that reads `reads` bytes and writes one fresh output of `write` bytes, in one pass
    (one parallel region, as the op's kernel): (callable returning its output, bytes it moves, its name).

    reads = write: a copy (torch.empty + copy_). reads = k x write: the k-way sum of k blocks (k = 2: torch.add, the
    STREAM benchmark's Add; k > 2: sum over dim 0 of a (k, n) tensor), the fewest operations that must read every byte.
    reads < write: a copy from a source broadcast m times (each chunk read once, written m times: Maxout's backward
    writes dx from a quarter as many gradients). A write of next to nothing (a loss's one number): a sum of the reads.
    Ratios that are not whole are rounded; the bytes it moves are returned, and "% copy" compares GB/s.
    The bytes are handled as float32 words whatever the op's dtype (the output keeps the op's size in bytes): the
    fastest arithmetic per byte (a bfloat16 sum over 4 blocks ran slower than bfloat16 Maxout), so that the kernel is
    bound by memory and the allocator, not by arithmetic."""
    if write % 4 == 0 and reads % 4 == 0:
        dtype = torch.float32
    e = torch.empty((), dtype=dtype).element_size()
    w = write // e
    if w == 0 or reads >= 64 * write:
        src = _source(max(reads // e, 1), dtype, device)[:max(reads // e, 1)]
        return src.sum, src.numel() * e, "sum"
    if reads == 0:
        return (lambda: torch.empty(w, dtype=dtype, device=device).fill_(0)), w * e, "fill"
    k = round(reads / write)
    if k >= 1:
        buf = _source(k * w, dtype, device)
        if k == 1:
            src = buf[:w]
            return (lambda: torch.empty(w, dtype=dtype, device=device).copy_(src)), 2 * w * e, "copy"
        if k == 2:
            a, b = buf[:w], buf[w:2 * w]
            return (lambda: torch.add(a, b)), 3 * w * e, "add"
        blocks = buf[:k * w].view(k, w)
        return (lambda: blocks.sum(0)), (k + 1) * w * e, f"sum of {k}"
    m = max(2, round(write / reads))
    rows = -(-w // (m * 1024))  # chunks of up to 1024 elements, written m times each, covering w but for < m * rows
    c = max(1, w // (m * rows))
    src = _source(rows * c, dtype, device)[:rows * c].view(rows, 1, c).expand(rows, m, c)

    def bcast():
        out = torch.empty(w, dtype=dtype, device=device)
        out[:rows * m * c].view(rows, m, c).copy_(src)
        return out

    return bcast, rows * c * e + rows * m * c * e, f"copy x{m}"


def copy_yardstick(phases: list[tuple[int, list[int]]], dtype: torch.dtype, device: torch.device):
    """The bandwidth yardstick of one op and direction (phases from traffic()): per phase, stream_kernel() of its reads
    into a fresh output of the size the op allocates (on the CPU a fresh 64 MB output is mostly page faults, and which
    sizes fault depends on the allocator, so the sizes must be the op's); the phases run back to back, the first's
    output kept alive through the second, as y is through the backward. Small extra allocations (a 1-bit mask, 1-byte
    indices) are not written; their bytes count through the ratio of GB/s. Returns (callable, bytes it moves, name)."""
    kernels = [stream_kernel(reads, writes[0], dtype, device) for reads, writes in phases]

    def run():
        return [fn() for fn, _, _ in kernels]

    return run, sum(b for _, b, _ in kernels), " + ".join(name for _, _, name in kernels)


def pct_of_copy(op_bytes: int, t_op: float, copy_bytes: int, t_copy: float) -> float:
    """The op's GB/s as a percentage of the yardstick's GB/s (the two move the same bytes up to rounding and the small
    allocations the yardstick leaves out)."""
    return 100.0 * (op_bytes / t_op) / (copy_bytes / t_copy)


# Above this a "% copy" means the yardstick did not bound the row (timing noise, per-call overhead); it is marked.
PCT_COPY_BOUND = 105.0


def fmt_pct(pct: float) -> str:
    """'87%', or '112%!' where the copy did not bound the op (see PCT_COPY_BOUND)."""
    return f"{pct:.0f}%" + ("!" if pct > PCT_COPY_BOUND else "")


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
                 reps: int | None = None, min_rounds: int = 5) -> list[float]:
    """Median seconds of each callable, timed interleaved (round_times)."""
    return [statistics.median(t) for t in round_times(fns, device, warmup=warmup, budget_s=budget_s, reps=reps,
                                                      min_rounds=min_rounds)]


def round_times(fns, device: torch.device, warmup: int = 2, budget_s: float = 1.0,
                reps: int | None = None, min_rounds: int = 5) -> list[list[float]]:
    """Seconds of each callable in each round, measured interleaved (A B C A B C ...) after warm-up, so that all of
    them see the same machine state (clock, caches, the allocator's free lists, the load from other processes); `reps`
    rounds, or min_rounds to 100 within about budget_s. CUDA events on a GPU, perf_counter with a sync on the CPU."""
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
        rounds = int(min(100, max(min_rounds, budget_s / max(time.perf_counter() - t0, 1e-6))))
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
    return times
