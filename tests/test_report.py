"""The report (the README's main job) runs end to end on a small shape and writes a row per op x backend x dtype.
Timings are not asserted: they belong to the benchmarks."""
import csv
import os
import subprocess
import sys

import glo_kernels
from glo_kernels._registry import ALL_OPS


def test_report_runs_and_covers_every_op(tmp_path):
    env = dict(os.environ, GLO_BENCH_SMALL="1")
    r = subprocess.run([sys.executable, "-m", "bench.report", "--device", "cpu", "--dtypes", "float32",
                        "--out", str(tmp_path)], env=env, capture_output=True, text=True, timeout=600,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr[-3000:]
    with open(tmp_path / "report.csv") as f:
        rows = list(csv.DictReader(f))
    backends = [b for b in ("cpu", "reference") if glo_kernels.available_backends()[b].available]
    assert {(row["op"], row["backend"]) for row in rows} == {(op.name, b) for op in ALL_OPS for b in backends}
    for row in rows:
        assert float(row["err_fwd"]) < 1e-5 and float(row["err_grad"]) < 1e-5, row
        assert float(row["fwd+bwd_ours_ms"]) > 0
    assert (tmp_path / "report.md").read_text().count("\n|") >= len(rows) + 1
