"""pytest-benchmark suite: every op of the table, ours (each backend that runs here) vs eager, fwd and fwd+bwd.

    pytest bench/ --benchmark-json=results.json        # GLO_BENCH_SMALL=1 for a quick smoke run
Each result's extra_info has the minimum bytes moved, GB/s and the bytes saved for backward.
"""
import pytest
import torch

import glo_kernels
from glo_kernels._registry import ALL_OPS

from bench.common import bench_shape, eager, make_case, min_bytes, ours, runner, saved_bytes, sync

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _providers():
    status = glo_kernels.available_backends()
    names = ["cuda", "triton"] if DEVICE.type == "cuda" else ["cpu"]
    out = [pytest.param("eager", id="eager")]
    for n in names:
        marks = [] if status[n].available else [pytest.mark.skip(reason=f"backend {n}: {status[n].reason}")]
        out.append(pytest.param(n, id=n, marks=marks))
    return out


@pytest.mark.parametrize("direction", ["fwd", "bwd", "fwd+bwd"])
@pytest.mark.parametrize("provider", _providers())
@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_bench(benchmark, op, provider, direction):
    shape = bench_shape()
    kw = op.bench_kwargs_for(shape)
    x, params, dy = make_case(op, shape, torch.float32, DEVICE, kwargs=kw)
    fn = eager(op) if provider == "eager" else ours(op, provider)
    run = runner(fn, x, params, dy, direction, kw)

    def timed():
        run()
        sync(DEVICE)

    benchmark.group = f"{op.name} {direction} {tuple(shape)} float32 {DEVICE.type}"
    benchmark.pedantic(timed, rounds=10, warmup_rounds=2, iterations=1)
    nbytes = min_bytes(op, direction, x.numel(), x.element_size())
    benchmark.extra_info["min_bytes"] = nbytes
    if benchmark.stats is not None:  # None under --benchmark-disable
        benchmark.extra_info["GB/s"] = nbytes / benchmark.stats.stats.median / 1e9
    benchmark.extra_info["saved_for_backward_bytes"] = saved_bytes(fn, x, params, kw)
