"""The report (the README's main job) runs end to end on tiny sizes: a CSV row per op x backend x dtype x size x
direction, the markdown summary, the plots, and torch.compile columns where asked. Timings are not asserted: they
belong to the benchmarks."""
import csv
import os
import subprocess
import sys

import glo_kernels
from glo_kernels._registry import ALL_OPS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
