"""bench/gpu_table.py (the table gpu_check.sh prints first on a lent GPU) runs its whole code path on the CPU with tiny
sizes (--device cpu --small), and plans every op x float32 / bfloat16 at 2^26 elements (softmax family: rows of 1k to
256k). Timings are not asserted: they belong to the GPU run. bench/gpu_check.sh parses (bash -n) and its step limits
fit the first lent device (build included, under ~9.5 minutes)."""
import csv
import os
import re
import shutil
import subprocess
import sys

import pytest

from glo_kernels._registry import ALL_OPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from bench import gpu_table


def test_plan_covers_every_op_dtype_and_row_length_at_2_26():
    plan = gpu_table.cases(1 << 26, gpu_table.SOFTMAX_ROWS)
    seen = {(op.name, d) for op, d, *_ in plan}
    assert seen == {(op.name, d) for op in ALL_OPS for d in ("float32", "bfloat16")}
    for op, d, shape, dim in plan:
        n = 1
        for s in shape:
            n *= s
        if dim is None:
            assert n == 1 << 26, (op.name, shape)
        else:  # softmax along dim 1 of [16, 1000, 4096]: a strided dim, within 3% of 2^26 elements
            assert op.name == "softmax" and dim == 1 and shape == (16, 1000, 4096), (op.name, shape, dim)
    for op in ALL_OPS:
        if op.family == "softmax":
            rows = sorted(shape[-1] for o, d, shape, dim in plan if o is op and d == "float32" and dim is None)
            assert rows == [1024, 4096, 16384, 65536, 262144], op.name
    assert sum(dim is not None for *_, dim in plan) == 2  # softmax float32 and bfloat16


def test_small_cpu_run_prints_the_table_first(tmp_path):
    ops = "relu,prelu,maxout,softmax,distillation_loss"
    r = subprocess.run([sys.executable, "-m", "bench.gpu_table", "--device", "cpu", "--small", "--ops", ops,
                        "--budget", "0.001", "--time-limit", "600", "--compile-until", "0", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert lines[0].startswith("# glo_kernels") and "| op | dtype | shape | dir | copy ms | cpu ms | cpu % copy" in r.stdout
    table = [line for line in lines if line.startswith("| ") and not line.startswith("| op ")]
    assert not [line for line in table if "FAILED" in line]
    with open(tmp_path / "gpu_table.csv") as f:
        recs = list(csv.DictReader(f))
    want = {(o, d, s, dr) for o in ("relu", "prelu", "maxout") for d in ("float32", "bfloat16") for s in (None,)
            for dr in ("fwd", "bwd")}
    got = {(r_["op"], r_["dtype"], None, r_["direction"]) for r_ in recs if r_["op"] in ("relu", "prelu", "maxout")}
    assert got == want
    for name in ("softmax", "distillation_loss"):  # one row per row length, dtype and direction
        assert {(r_["shape"].split("x")[-1], r_["dtype"], r_["direction"]) for r_ in recs
                if r_["op"] == name and "dim" not in r_["shape"]} == {
            (str(n), d, dr) for n in gpu_table.SMALL_ROWS for d in ("float32", "bfloat16") for dr in ("fwd", "bwd")}
    assert {(r_["shape"], r_["dtype"], r_["direction"]) for r_ in recs if "dim" in r_["shape"]} == {
        ("4x16x64 dim 1", d, dr) for d in ("float32", "bfloat16") for dr in ("fwd", "bwd")}
    assert len(table) == len(recs)
    for rec in recs:
        assert int(rec["numel"]) == 1 << gpu_table.SMALL_NUMEL_LOG2
        assert float(rec["cpu_ms"]) > 0 and float(rec["copy_ms"]) > 0 and float(rec["cpu_pct_copy"]) > 0
        assert float(rec["cpu_x_eager"]) > 0 and rec["cpu_x_compile"] == "" and rec["compile_ms"] == ""
    assert (tmp_path / "gpu_table.md").read_text().count("\n| ") == len(recs) + 1  # rows and the separator


def test_gpu_check_script_parses_and_fits_the_lease():
    script = os.path.join(ROOT, "bench", "gpu_check.sh")
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    r = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with open(script) as f:
        text = f.read()
    # Every default step limit, build included, sums to at most 9.5 minutes; the table runs first after the build.
    limits = [int(v) for v in re.findall(r"\$\{GLO_GPU_T_\w+:-(\d+)\}", text)]
    assert limits and sum(limits) <= 570, limits
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    order = [code.index(k) for k in ("build_ext", "bench.gpu_table", "--tool memcheck", '"GPU parity tests"')]
    assert order == sorted(order)
