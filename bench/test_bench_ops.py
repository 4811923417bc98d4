"""pytest-benchmark suite: every op of the table x provider (PyTorch eager, torch.compile(dynamic=False) of the same
eager code, and each glo_kernels backend that runs here) x dtype x direction (fwd, bwd, fwd+bwd), plus a device copy
of the same size per dtype.

    pytest bench/ --benchmark-json=results.json      # GLO_BENCH_SMALL=1: the smoke subset CI runs

Each result's extra_info has the minimum bytes the op must move and the bytes it saves for backward; when the run
writes JSON, bench/conftest.py adds GB/s, the copy's GB/s and the fraction of it reached, and the speedups over
eager and torch.compile measured in the same run (results of one group: same op, direction, dtype, shape).
"""
import os

import pytest
import torch

import glo_kernels
from glo_kernels._registry import ALL_OPS

from bench.common import bench_shape, compiled, eager, make_case, min_bytes, ours, runner, saved_bytes, sync

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SMALL = os.environ.get("GLO_BENCH_SMALL", "0") not in ("", "0")
DTYPES = [torch.float32] if SMALL else (
    [torch.float32, torch.bfloat16, torch.float16] if DEVICE.type == "cuda" else [torch.float32, torch.bfloat16])
# The smoke run (CI) compiles two ops only: an Inductor compile costs seconds on 2 cores.
COMPILED_OPS = {"relu", "softmax"} if SMALL else {op.name for op in ALL_OPS}


def _cases():
    status = glo_kernels.available_backends()
    names = ["cuda", "triton"] if DEVICE.type == "cuda" else ["cpu"]
    out = []
    for op in ALL_OPS:
        providers = ["eager"] + (["compile"] if op.name in COMPILED_OPS else [])
        for p in providers:
            out.append(pytest.param(op, p, id=f"{op.name}-{p}"))
        for n in names:
            marks = [] if status[n].available else [pytest.mark.skip(reason=f"backend {n}: {status[n].reason}")]
            out.append(pytest.param(op, n, id=f"{op.name}-{n}", marks=marks))
    return out


def _dtype_id(d):
    return str(d).replace("torch.", "")


def _timed(benchmark, run):
    def timed():
        run()
        sync(DEVICE)

    benchmark.pedantic(timed, rounds=10, warmup_rounds=2, iterations=1)


@pytest.mark.parametrize("direction", ["fwd", "bwd", "fwd+bwd"])
@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
@pytest.mark.parametrize("op,provider", _cases())
def test_bench(benchmark, op, provider, dtype, direction):
    shape = bench_shape()
    kw = op.bench_kwargs_for(shape)
    x, params, dy = make_case(op, shape, dtype, DEVICE, kwargs=kw)
    if provider == "eager":
        fn = eager(op)
    elif provider == "compile":
        fn = compiled(op, kw)
    else:
        fn = ours(op, provider)
    benchmark.group = f"{op.name} {direction} {'x'.join(map(str, shape))} {_dtype_id(dtype)} {DEVICE.type}"
    _timed(benchmark, runner(fn, x, params, dy, direction, kw))
    benchmark.extra_info.update({
        "op": op.name, "provider": provider, "direction": direction, "dtype": _dtype_id(dtype),
        "shape": list(shape), "numel": x.numel(), "device": DEVICE.type,
        "min_bytes": min_bytes(op, direction, x.numel(), x.element_size()),
        "saved_for_backward_bytes": saved_bytes(fn, x, params, kw),
    })


@pytest.mark.parametrize("dtype", DTYPES, ids=_dtype_id)
def test_copy(benchmark, dtype):
    """The device copy every result is compared with: read N and write N elements into a fresh tensor."""
    shape = bench_shape()
    x = torch.randn(shape, dtype=torch.float32).to(dtype=dtype, device=DEVICE)
    benchmark.group = f"copy {'x'.join(map(str, shape))} {_dtype_id(dtype)} {DEVICE.type}"
    _timed(benchmark, lambda: x.clone())
    benchmark.extra_info.update({"op": "copy", "provider": "torch", "dtype": _dtype_id(dtype), "shape": list(shape),
                                 "numel": x.numel(), "device": DEVICE.type,
                                 "min_bytes": 2 * x.numel() * x.element_size()})
