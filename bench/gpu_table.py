"""The table that answers issue 13, printed first by bench/gpu_check.sh on a lent GPU:

    python -m bench.gpu_table [--out DIR] [--time-limit S] [--device cpu --small]

Every op x float32 / bfloat16 x forward / backward at 2^26 elements (softmax family: rows of 1k, 4k, 16k, 64k and
256k elements, 2^26 in all; softmax also along dim 1 of [16, 1000, 4096], the tiles path of a strided dim), each of our backends on the device (GPU: cuda and triton) with its % of a copy moving the
same bytes, and its speedup over eager PyTorch and over torch.compile of the same eager code. Everything is timed with
bench/report.py's machinery (report.time_case): per case and direction, our backends, eager, torch.compile and the
copy yardstick (bench.common.copy_yardstick: the op's reads into a fresh output of the op's size) interleaved in the
same rounds; medians. % copy = the op's GB/s (bench.common.min_bytes) over the yardstick's; speedup = baseline
time / ours.

Each row is printed as soon as it is measured (a markdown table, header first), so a run cut short by its step limit
still leaves every finished row in the log; it is also written to DIR/gpu_table.md and gpu_table.csv (default
bench/results/<device>/). torch.compile compiles per shape and dtype (dynamic=False, as the report): its columns are
filled while the time used stays under --compile-until of --time-limit, "-" after that.

--device cpu --small runs the same code path on the CPU backend with tiny sizes (the test of this script).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys
import time

import torch

import glo_kernels
from glo_kernels._registry import ALL_OPS

from bench.common import (compiled, device_name, device_slug, eager, make_case, min_bytes, ours, pct_of_copy,
                          softmax_shape, sweep_shape)
from bench.report import DTYPES, _backends_for, _fmt_shape, time_case

DIRECTIONS = ("fwd", "bwd")
NUMEL_LOG2 = 26
SOFTMAX_ROWS = (1024, 4096, 16384, 65536, 262144)
# softmax along a strided dim (dim 1 of [outer, size, inner]): size 1000, inner 4096 (2^12 * 1000 * outer elements)
STRIDED_SIZE, STRIDED_INNER_LOG2 = 1000, 12
SMALL_STRIDED = (4, 16, 64)
# --small (CPU smoke test): sizes that keep every op under a few ms.
SMALL_NUMEL_LOG2 = 12
SMALL_ROWS = (64, 256)


def strided_shape(numel: int) -> tuple[int, int, int]:
    """[outer, size, inner] of the strided softmax case: about numel elements (SMALL_STRIDED for tiny numel)."""
    if numel < STRIDED_SIZE << STRIDED_INNER_LOG2:
        return SMALL_STRIDED
    return (max(1, round(numel / (STRIDED_SIZE << STRIDED_INNER_LOG2))), STRIDED_SIZE, 1 << STRIDED_INNER_LOG2)


def cases(numel: int, rows, ops=None, dtypes=("float32", "bfloat16")):
    """[(op, dtype name, shape, dim)] in the order they run: per op (the registry's order: element-wise ops first),
    each dtype at numel elements, at each row length for the softmax family (numel elements in all), and softmax along
    dim 1 of strided_shape(); dim None: the op's benchmark default."""
    out = []
    for op in ALL_OPS:
        if ops and op.name not in ops:
            continue
        for dtype_name in dtypes:
            if op.family == "softmax":
                out += [(op, dtype_name, softmax_shape(r, numel), None) for r in rows]
                if op.name == "softmax":
                    out.append((op, dtype_name, strided_shape(numel), 1))
            else:
                out.append((op, dtype_name, sweep_shape(op, numel), None))
    return out


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def header_lines(backends) -> list[str]:
    cols = ["op", "dtype", "shape", "dir", "copy ms"]
    for b in backends:
        cols += [f"{b} ms", f"{b} % copy", f"{b} x eager", f"{b} x compile"]
    cols += ["eager ms", "compile ms"]
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]


def row_line(r: dict, backends) -> str:
    cells = [r["op"], r["dtype"], r["shape"], r["direction"], _f(r["copy_ms"], "{:.3f}")]
    for b in backends:
        cells += [_f(r[f"{b}_ms"], "{:.3f}"), _f(r[f"{b}_pct_copy"], "{:.0f}%"), _f(r[f"{b}_x_eager"]),
                  _f(r[f"{b}_x_compile"])]
    cells += [_f(r["eager_ms"], "{:.3f}"), _f(r["compile_ms"], "{:.3f}")]
    return "| " + " | ".join(cells) + " |"


def _shape_label(shape, dim) -> str:
    return _fmt_shape(shape) + ("" if dim is None else f" dim {dim}")


def measure(op, dtype_name, shape, backends, device, budget, with_compile, dim=None) -> list[dict]:
    """One row per direction: our backends, eager, torch.compile (if with_compile) and the copy, same rounds."""
    dtype = DTYPES[dtype_name]
    kw = dict(op.bench_kwargs_for(shape))
    if dim is not None:
        kw["dim"] = dim
    x, params, dy = make_case(op, shape, dtype, device, kwargs=kw)
    providers = [(b, ours(op, b)) for b in backends] + [("eager", eager(op))]
    if with_compile:
        providers.append(("compile", compiled(op, kw)))
    times, yard = time_case(op, providers, x, params, dy, DIRECTIONS, kw, device, budget)
    out = []
    for d in DIRECTIONS:
        nbytes = min_bytes(op, d, x.numel(), x.element_size())
        t_copy, t_eager = times[("copy", d)], times[("eager", d)]
        t_comp = times.get(("compile", d))
        r = {"op": op.name, "dtype": dtype_name, "shape": _shape_label(shape, dim), "numel": x.numel(), "direction": d,
             "min_bytes": nbytes, "copy_kernel": yard[d][1], "copy_ms": t_copy * 1e3, "eager_ms": t_eager * 1e3,
             "compile_ms": None if t_comp is None else t_comp * 1e3}
        for b in backends:
            t = times[(b, d)]
            r[f"{b}_ms"] = t * 1e3
            r[f"{b}_pct_copy"] = pct_of_copy(nbytes, t, yard[d][0], t_copy)
            r[f"{b}_x_eager"] = t_eager / t
            r[f"{b}_x_compile"] = None if t_comp is None else t_comp / t
        out.append(r)
    del x, params, dy
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="tiny sizes (2^12 elements, rows 64 and 256): a smoke run")
    ap.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per case and direction, all "
                                                                "providers together (default GPU 0.05, CPU 0.01)")
    ap.add_argument("--time-limit", type=float, default=180.0, help="seconds this run should take at most (the "
                                                                     "step limit of gpu_check.sh)")
    ap.add_argument("--compile-until", type=float, default=0.4, help="fraction of --time-limit after which "
                                                                      "torch.compile is no longer timed (its "
                                                                      "compilations take seconds per shape)")
    ap.add_argument("--no-compile", dest="compile", action="store_false")
    ap.add_argument("--out", default=None, help="output folder (default bench/results/<device>/)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device(args.device)
    numel = 1 << (SMALL_NUMEL_LOG2 if args.small else NUMEL_LOG2)
    rows_len = SMALL_ROWS if args.small else SOFTMAX_ROWS
    budget = args.budget if args.budget is not None else (0.05 if device.type == "cuda" else 0.01)
    out_dir = args.out or os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       device_slug(device)))
    os.makedirs(out_dir, exist_ok=True)
    backends = _backends_for(device)
    plan = cases(numel, rows_len, [o for o in args.ops.split(",") if o], args.dtypes.split(","))
    title = (f"glo_kernels {glo_kernels.__version__} on {device_name(device)}; torch {torch.__version__}"
             + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else "")
             + f"; {datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}")
    intro = [f"# {title}", "",
             f"Every op x dtype x direction at {numel} elements (softmax family: rows of "
             f"{', '.join(map(str, rows_len))}); medians of rounds interleaving our backends, eager, torch.compile and "
             "a copy of the same bytes (bench.common.copy_yardstick); % copy = GB/s over the copy's; x eager, "
             "x compile = baseline time / ours; '-': not timed (torch.compile after the time budget).", ""]
    lines = intro + header_lines(backends)
    print("\n".join(lines), flush=True)
    records = []
    md_path, csv_path = os.path.join(out_dir, "gpu_table.md"), os.path.join(out_dir, "gpu_table.csv")
    for op, dtype_name, shape, dim in plan:
        elapsed = time.perf_counter() - t0
        with_compile = args.compile and elapsed < args.compile_until * args.time_limit
        try:
            try:
                recs = measure(op, dtype_name, shape, backends, device, budget, with_compile, dim)
            except Exception as e:  # noqa: BLE001 - torch.compile failing must not cost the row: again without it
                if not with_compile:
                    raise
                print(f"(torch.compile of {op.name} {dtype_name} {_shape_label(shape, dim)} failed: "
                      f"{type(e).__name__}; timed without it)", flush=True)
                recs = measure(op, dtype_name, shape, backends, device, budget, False, dim)
        except Exception as e:  # noqa: BLE001 - one failing case must not hide the rest of the table
            print(f"| {op.name} | {dtype_name} | {_shape_label(shape, dim)} | FAILED: {type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200] if str(e) else ''} |", flush=True)
            lines.append(f"| {op.name} | {dtype_name} | {_shape_label(shape, dim)} | FAILED: {type(e).__name__} |")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            continue
        for r in recs:
            line = row_line(r, backends)
            print(line, flush=True)
            lines.append(line)
        records += recs
        with open(md_path, "w") as f:  # rewritten after every case: a run cut short keeps what it measured
            f.write("\n".join(lines) + "\n")
        with open(csv_path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(records[0].keys()))
            w.writeheader()
            w.writerows(records)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(f"{len(records)} rows in {time.perf_counter() - t0:.0f} s; wrote {md_path} and {csv_path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
