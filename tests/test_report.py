"""The report (the README's main job) runs end to end on tiny sizes: a CSV row per op x backend x dtype x size x
direction, the markdown summary, the plots, and torch.compile columns where asked; and its copy yardstick (unit tests
on tiny tensors): a copy that moves the op's bytes into fresh allocations of the op's sizes, timed in the same rounds
as the op and its baselines. Timings are not asserted: they belong to the benchmarks."""
import csv
import os
import re
import subprocess
import sys

import pytest
import torch

import glo_kernels
from glo_kernels._registry import ALL_OPS, ALL_OPS_BY_NAME

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # bench/ is a package of the repository, not of the installed glo_kernels
    sys.path.insert(0, ROOT)

from bench import common, report

TINY = ["--device", "cpu", "--sizes", "10,12", "--rows", "64,256", "--softmax-numel", "4096", "--budget", "0.005"]


def _run(tmp_path, *extra):
    r = subprocess.run([sys.executable, "-m", "bench.report", *TINY, "--out", str(tmp_path), *extra],
                       capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    with open(tmp_path / "report.csv") as f:
        return list(csv.DictReader(f)), r.stdout


def test_report_runs_and_covers_every_op(tmp_path):
    rows, out = _run(tmp_path, "--dtypes", "float32,bfloat16", "--no-compile")
    backends = [b for b in ("cpu",) if glo_kernels.available_backends()[b].available]
    assert {(row["op"], row["backend"], row["dtype"]) for row in rows} == {
        (op.name, b, d) for op in ALL_OPS for b in backends for d in ("float32", "bfloat16")}
    for op in ALL_OPS:  # the first dtype sweeps two sizes; the largest has every direction
        mine = [r for r in rows if r["op"] == op.name and r["dtype"] == "float32"]
        assert len({r["shape"] for r in mine}) == 2, op.name
        assert {r["direction"] for r in mine} == {"fwd", "bwd", "fwd+bwd"}
    for row in rows:
        assert float(row["ours_ms"]) > 0 and float(row["GBps"]) > 0 and float(row["copy_GBps"]) > 0
        assert float(row["speedup_eager"]) > 0 and row["speedup_compile"] == ""
    # One progress line per case, with that case's rows only (the softmax family's sizes share a numel: each line
    # used to repeat the earlier sizes'); a % copy above 105 is marked "!".
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert len(lines) == len({(r["op"], r["backend"], r["dtype"], r["shape"]) for r in rows})
    for line in lines:
        assert line.count("fwd+bwd") == 1, line
        assert line.count(" | ") == len(re.findall(r"(?:^|\| )(?:fwd|bwd|fwd\+bwd) ", line)), line
        for pct, mark in re.findall(r"\(\s*(\d+)%(!?) copy\)", line):
            assert (int(pct) > 105) == (mark == "!") or int(pct) == 105, line
    md = (tmp_path / "report.md").read_text()
    assert all(f"| {op.name} | cpu | float32 |" in md for op in ALL_OPS)
    assert "Per-call overhead" in md and "[" in out
    for plot in ("gbps.png", "speedup.png"):
        assert (tmp_path / plot).stat().st_size > 10_000


def test_report_with_torch_compile(tmp_path):
    rows, _ = _run(tmp_path, "--dtypes", "float32", "--ops", "relu,softmax", "--compile-at", "12",
                   "--compile-rows", "256", "--no-plots")
    compiled = [r for r in rows if r["speedup_compile"] != ""]
    assert {(r["op"], r["direction"]) for r in compiled} == {(op, d) for op in ("relu", "softmax")
                                                              for d in ("fwd", "bwd", "fwd+bwd")}
    assert all(float(r["compile_ms"]) > 0 for r in compiled)


# ---- the copy yardstick ----
def _case(name, shape=(64, 64)):
    op = ALL_OPS_BY_NAME[name]
    kw = op.bench_kwargs_for(shape)
    x, params, dy = common.make_case(op, shape, torch.float32, torch.device("cpu"), kwargs=kw)
    return op, kw, x, params, dy


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_traffic_is_min_bytes_split_into_reads_and_the_ops_allocations(op):
    """Per phase reads + writes, summed, = min_bytes; the writes are the sizes of what the op allocates: its output
    forward, dx backward (its saved mask or indices too under autograd)."""
    op, kw, x, params, dy = _case(op.name)
    n, e = x.numel(), x.element_size()
    for d in ("fwd", "bwd", "fwd+bwd"):
        phases = common.traffic(op, d, n, dy.numel(), e)
        assert len(phases) == (2 if d == "fwd+bwd" else 1)
        assert all(r >= 0 for r, _ in phases)
        assert sum(r + sum(w) for r, w in phases) == common.min_bytes(op, d, n, e), d
    with torch.no_grad():
        y = common.ours(op, "cpu")(x, *params, **kw)
    assert common.traffic(op, "fwd", n, dy.numel(), e) == [(common.min_bytes(op, "fwd", n, e) - y.nbytes, [y.nbytes])]
    assert common.traffic(op, "bwd", n, dy.numel(), e)[0][1] == [x.nbytes]


def test_traffic_of_ops_that_read_more_or_less_than_they_write():
    n, e = 4096, 4
    relu, maxout, loss = (ALL_OPS_BY_NAME[k] for k in ("relu", "maxout", "distillation_loss"))
    assert common.traffic(relu, "fwd", n, n, e) == [(n * e, [n * e])]  # no mask without autograd
    assert common.traffic(relu, "bwd", n, n, e) == [(n * e + n // 8, [n * e])]  # dy and the 1-bit mask
    assert common.traffic(relu, "fwd+bwd", n, n, e) == [(n * e, [n * e, n // 8]), (n * e + n // 8, [n * e])]
    assert common.traffic(maxout, "fwd", n, n // 4, e) == [(n * e, [n // 4 * e])]  # 4 inputs read per output
    assert common.traffic(maxout, "bwd", n, n // 4, e) == [(n // 4 * e + n // 4, [n * e])]  # dy, indices; dx
    assert common.traffic(loss, "fwd", n, 1, e) == [(2 * n * e - e, [e])]  # student and teacher; one number


@pytest.mark.parametrize("reads,write,dtype,kind,moved", [
    (4096, 4096, torch.float32, "copy", 8192),  # an element-wise forward
    (4096 + 128, 4096, torch.float32, "copy", 8192),  # ReLU's backward: dy and a 1-bit mask (the mask left out)
    (8192, 4096, torch.float32, "add", 12288),  # a backward reading dy and x (or y)
    (4096, 2048, torch.bfloat16, "add", 6144),  # as float32 words: 512 written
    (4096, 1024, torch.bfloat16, "sum of 4", 5120),  # Maxout's forward on bfloat16
    (16384, 4096, torch.float32, "sum of 4", 20480),  # Maxout's forward, pieces = 4
    (1280, 4096, torch.float32, "copy x3", 1364 + 4092),  # 341 floats read, 3 x 341 written  # Maxout's backward: a quarter of dy + indices; dx
    (8188, 4, torch.float32, "sum", 8188),  # the loss: two tensors read, one number written
])
def test_stream_kernel_moves_the_bytes_into_a_fresh_output(reads, write, dtype, kind, moved):
    fn, nbytes, name = common.stream_kernel(reads, write, dtype, torch.device("cpu"))
    assert name == kind and nbytes == moved
    assert abs(nbytes - reads - write) <= 0.03 * (reads + write) + 4  # ratios rounded, the mask left out
    first, second = fn(), fn()
    if kind != "sum":  # a fresh output per call, as the op's (first is still alive here), of the op's size
        assert second.nbytes == write and first.data_ptr() != second.data_ptr()
        written = second[:second.numel() // 3 * 3] if kind == "copy x3" else second  # whole chunks of 3
        assert (written == {"copy": 1, "add": 2, "sum of 4": 4, "copy x3": 1}[kind]).all()  # the source holds ones


def test_copy_yardstick_runs_the_phases_back_to_back():
    relu = ALL_OPS_BY_NAME["relu"]
    phases = common.traffic(relu, "fwd+bwd", 4096, 4096, 4)
    run, moved, name = common.copy_yardstick(phases, torch.float32, torch.device("cpu"))
    outs = run()
    assert name == "copy + copy" and moved == 4 * 4096 * 4  # mask left out: 4 x 4096 floats of 4 x 4096 + 2 x 512
    assert [o.nbytes for o in outs] == [4096 * 4, 4096 * 4] and outs[0].data_ptr() != outs[1].data_ptr()


def test_pct_of_copy_and_its_mark():
    assert common.pct_of_copy(100, 1.0, 100, 0.5) == pytest.approx(50.0)  # same bytes: time ratio
    assert common.pct_of_copy(200, 1.0, 100, 1.0) == pytest.approx(200.0)  # else a ratio of GB/s
    assert common.fmt_pct(87.2) == "87%" and common.fmt_pct(104.9) == "105%"
    assert common.fmt_pct(130.0) == "130%!"


def test_time_case_times_the_yardstick_in_the_same_rounds_as_the_op():
    """Per direction one call of the timer (interleaved rounds) with every provider and the yardstick, whose outputs
    are the op's sizes and whose bytes are the op's (up to rounding and the indices it leaves out)."""
    op, kw, x, params, dy = _case("maxout")
    providers = [("eager", common.eager(op)), ("cpu", common.ours(op, "cpu"))]
    calls = []

    def timer(fns, device, budget_s, min_rounds):
        calls.append(fns)
        return [1.0 + i for i in range(len(fns))]

    times, yard = report.time_case(op, providers, x, params, dy, report.DIRECTIONS, kw, torch.device("cpu"), 0.01,
                                   timer=timer)
    assert len(calls) == 3 and all(len(fns) == len(providers) + 1 for fns in calls)
    for d, fns in zip(report.DIRECTIONS, calls):
        assert (times[("eager", d)], times[("cpu", d)], times[("copy", d)]) == (1.0, 2.0, 3.0)
        phases = common.traffic(op, d, x.numel(), dy.numel(), x.element_size())
        assert [o.nbytes for o in fns[-1]()] == [w[0] for _, w in phases]
        assert abs(yard[d][0] - common.min_bytes(op, d, x.numel(), x.element_size())) <= 0.1 * yard[d][0]
    assert yard["fwd"][1] == "sum of 4" and yard["bwd"][1] == "copy x3" and yard["fwd+bwd"][1] == "sum of 4 + copy x3"
    import inspect

    assert inspect.signature(report.time_case).parameters["timer"].default is common.median_times


def test_device_slug(monkeypatch):
    monkeypatch.setattr(common, "device_name", lambda d: "Intel(R) Xeon(R) Processor (AVX512, 2 cores)")
    assert common.device_slug(torch.device("cpu")) == "intel-xeon-avx512-2-cores"
    monkeypatch.setattr(common, "device_name", lambda d: "AMD EPYC 7B13 64-Core Processor (AVX2, 2 cores)")
    assert common.device_slug(torch.device("cpu")) == "amd-epyc-7b13-64-core-avx2-2-cores"
