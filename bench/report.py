"""The main job: a compact speed and accuracy sweep of every op on the current device.

    python -m bench.report [--device cpu|cuda] [--dtypes float32,bfloat16] [--sizes 16,18,20,22,24] [--out DIR]

For each op of the table (glo_kernels._registry.ALL_OPS) and each backend available on the device: the max error
against the float64 reference, and times forward, backward and forward + backward against PyTorch eager and
torch.compile(dynamic=False) of the same eager code, and a copy yardstick moving the same bytes, all timed in the same
interleaved rounds. Element-wise ops sweep 2^16 .. 2^26 elements (PReLU / PELU as NCHW with C from 16 to 1024); the
softmax family sweeps rows of 128 .. 262144 elements. GB/s counts the fewest bytes an op must move
(bench.common.min_bytes). "% copy" is that bandwidth over the yardstick's (bench.common.copy_yardstick): per op,
direction and phase (forward, backward) the simplest streaming kernel with the op's reads and a fresh output of the
op's size, so that both pay the same page faults: a copy where the op reads as much as it writes, the sum of the k
inputs where it reads k per output (torch.add, STREAM's Add, for the backwards that read dy and x or y), a broadcast
copy where it reads less (Maxout's backward), a sum where it writes next to nothing (the loss); medians, as the op's.
100% is the op at the yardstick's speed; above 105% is printed marked "!": the yardstick did not bound that row (a noisy
host, per-call overhead at small sizes).

Writes into DIR (default bench/results/<device>/): report.csv (one row per op x backend x dtype x size x direction),
report.md (summary tables), gbps.png and speedup.png (plots; skipped with a note if matplotlib is missing).
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

from bench.common import (compiled, copy_yardstick, device_name, device_slug, eager, fmt_pct, make_case, min_bytes,
                          ours, overhead_us, pct_of_copy, median_times, runner, saved_bytes, softmax_shape, sweep_shape,
                          traffic)

DIRECTIONS = ("fwd", "bwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
SOFTMAX_ROWS = (128, 1024, 8192, 32768, 262144)
# Rounds per case and direction at least, whatever the budget: with 5, the medians on a 2-core host shared with other
# work moved by 10-20% from run to run (relu forward at 2^24 read 92% and 117% of a copy of the same bytes in two runs;
# over 18 rounds the two were within 2%).
MIN_ROUNDS = 9


def _backends_for(device: torch.device) -> list[str]:
    status = glo_kernels.available_backends()
    names = ["cuda", "triton"] if device.type == "cuda" else ["cpu"]  # Triton on CPU only in its slow interpreter
    return [n for n in names if status[n].available]


def max_errors(op, backend, dtype, device) -> tuple[float, float]:
    """Max |ours - float64 reference| / max|reference| for the forward and for all gradients, on 2^16 values."""
    kw = op.bench_kwargs_for((64, 1024))
    x, params, _ = make_case(op, (64, 1024), dtype, device, seed=1, kwargs=kw)
    xo = x.detach().clone().requires_grad_()
    po = [p.detach().clone().requires_grad_() for p in params]
    with glo_kernels.use_backend(backend):
        y = op.fn(xo, *po, **kw)
    dy = torch.randn_like(y)
    grads = torch.autograd.grad(y, [xo, *po], dy)
    x64 = x.detach().double().requires_grad_()
    p64 = [p.detach().double().requires_grad_() for p in params]
    y64 = op.reference(x64, *p64, **kw)
    g64 = torch.autograd.grad(y64, [x64, *p64], dy.double())

    def rel(a, b):
        return ((a.double() - b).abs().max() / b.abs().max().clamp_min(1e-300)).item()

    return rel(y, y64), max(rel(g, r) for g, r in zip(grads, g64))


def _plan(args, device):
    """[(op, dtype_name, shape, directions, with_compile)] in the order they run."""
    sizes = [1 << int(k) for k in args.sizes.split(",")]
    rows = [int(r) for r in args.rows.split(",")]
    compile_sizes = {1 << int(k) for k in args.compile_at.split(",") if k}
    compile_rows = {int(r) for r in args.compile_rows.split(",") if r}
    dtypes = args.dtypes.split(",")
    plan = []
    for i, dtype_name in enumerate(dtypes):
        for op in ALL_OPS:
            if args.ops and op.name not in args.ops.split(","):
                continue
            if op.family == "softmax":
                shapes = [softmax_shape(r, args.softmax_numel) for r in rows]
            else:
                shapes = [sweep_shape(op, n) for n in sizes]
            if i > 0 and device.type == "cpu":
                shapes = shapes[-1:]  # further dtypes on the CPU: the largest case only (time)
            for j, shape in enumerate(shapes):
                last = j == len(shapes) - 1
                directions = DIRECTIONS if (last or device.type == "cuda") else ("fwd+bwd",)
                numel = 1
                for s in shape:
                    numel *= s
                at = shape[-1] in compile_rows if op.family == "softmax" else numel in compile_sizes
                plan.append((op, dtype_name, shape, directions, args.compile and i == 0 and at))
    return plan


def _fmt_shape(shape) -> str:
    return "x".join(map(str, shape))


def time_case(op, providers, x, params, dy, directions, kw, device, budget, timer=median_times):
    """({(provider, direction): median seconds}, with ("copy", direction) for the yardstick, and {direction: (bytes the
    yardstick moves, its kernels)}). Per direction the providers and the yardstick are timed interleaved in the same
    rounds (`timer`, bench.common.median_times): the same machine state, allocator and load from other processes."""
    times, yard = {}, {}
    for d in directions:
        phases = traffic(op, d, x.numel(), dy.numel(), x.element_size())
        run, moved, name = copy_yardstick(phases, x.dtype, device)
        yard[d] = (moved, name)
        fns = [runner(fn, x, params, dy, d, kw) for _, fn in providers] + [run]
        meds = timer(fns, device, budget_s=budget, min_rounds=MIN_ROUNDS)
        times.update({(p, d): t for (p, _), t in zip(providers, meds)})
        times[("copy", d)] = meds[len(providers)]
    return times, yard


def progress_line(k: int, total: int, elapsed: float, op, backend: str, dtype_name: str, shape, case_rows) -> str:
    """One line per case and backend: this case's rows only (one per direction timed)."""
    return (f"[{k:3d}/{total} {elapsed:5.0f}s] {op.name:17s} {backend:6s} {dtype_name:8s} {_fmt_shape(shape):>16s} | "
            + " | ".join(f"{r['direction']} {r['ours_ms']:8.3f} ms {r['GBps']:7.1f} GB/s "
                         f"({fmt_pct(r['pct_copy']):>5s} copy) x{r['speedup_eager']:.2f} eager"
                         + (f" x{r['speedup_compile']:.2f} compile" if r["speedup_compile"] != "" else "")
                         for r in case_rows))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    gpu = torch.cuda.is_available()
    ap.add_argument("--device", default="cuda" if gpu else "cpu")
    ap.add_argument("--dtypes", default=None, help="default: float32,bfloat16 (GPU: and float16)")
    ap.add_argument("--sizes", default=None, help="element-wise sizes as powers of 2 (default CPU 16,18,20,22,24, "
                                                  "GPU 16,18,20,22,24,26)")
    ap.add_argument("--rows", default=",".join(map(str, SOFTMAX_ROWS)), help="softmax row lengths")
    ap.add_argument("--softmax-numel", type=int, default=None, help="elements per softmax case (default 2^24: "
                                                                   "(64, 262144) at the longest rows)")
    ap.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    ap.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile")
    ap.add_argument("--compile-at", default=None, help="element-wise sizes (powers of 2) timed with torch.compile, "
                                                        "first dtype only (default CPU 24, GPU 20,24)")
    ap.add_argument("--compile-rows", default=None, help="softmax row lengths timed with torch.compile (default CPU "
                                                          "262144, GPU 8192,262144)")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per case and direction, all "
                                                                "providers together (default CPU 1.0, GPU 0.5)")
    ap.add_argument("--out", default=None, help="output folder (default bench/results/<device>/)")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    on_gpu = device.type == "cuda"
    args.dtypes = args.dtypes or ("float32,bfloat16,float16" if on_gpu else "float32,bfloat16")
    args.sizes = args.sizes or ("16,18,20,22,24,26" if on_gpu else "16,18,20,22,24")
    args.softmax_numel = args.softmax_numel or (1 << 24)
    args.compile_at = args.compile_at if args.compile_at is not None else ("20,24" if on_gpu else "24")
    args.compile_rows = args.compile_rows if args.compile_rows is not None else ("8192,262144" if on_gpu else "262144")
    budget = args.budget if args.budget is not None else (0.5 if on_gpu else 1.0)  # per direction, all providers
    out_dir = args.out or os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                       device_slug(device)))
    os.makedirs(out_dir, exist_ok=True)

    header = (f"glo_kernels {glo_kernels.__version__} report on {device_name(device)}; torch {torch.__version__}"
              + (f", CUDA {torch.version.cuda}" if on_gpu else
                 f", {torch.get_num_threads()} threads, CPU kernels at the {glo_kernels.cpu_capability()} level")
              + f"; {datetime.date.today().isoformat()}")
    print(header)
    print("backends:", ", ".join(f"{k}={'yes' if v.available else 'no'}" for k, v in glo_kernels.available_backends().items()))
    backends = _backends_for(device)
    plan = _plan(args, device)
    print(f"{len(plan)} cases x backends {backends}; times are medians after warm-up; speedup = baseline time / ours; "
          "% copy = our GB/s over a copy's of the same bytes in the same rounds (! above 105%: not a bound there)",
          flush=True)

    t_start = time.perf_counter()
    rows = []
    for k, (op, dtype_name, shape, directions, with_compile) in enumerate(plan, 1):
        dtype = DTYPES[dtype_name]
        kw = op.bench_kwargs_for(shape)
        x, params, dy = make_case(op, shape, dtype, device, kwargs=kw)
        numel = x.numel()
        # Per direction, eager, torch.compile, every backend and the copy yardstick are timed interleaved.
        providers = [("eager", eager(op))] + ([("compile", compiled(op, kw))] if with_compile else []) + [
            (b, ours(op, b)) for b in backends]
        times, yard = time_case(op, providers, x, params, dy, directions, kw, device, budget)
        base = {d: times[("eager", d)] for d in directions}
        comp = {d: times[("compile", d)] for d in directions if ("compile", d) in times}
        se = saved_bytes(eager(op), x, params, kw)
        for backend in backends:
            saved = saved_bytes(ours(op, backend), x, params, kw)
            case_rows = []
            for d in directions:
                t = times[(backend, d)]
                t_copy = times[("copy", d)]
                nbytes = min_bytes(op, d, numel, x.element_size())
                case_rows.append({
                    "op": op.name, "family": op.family, "backend": backend, "dtype": dtype_name,
                    "shape": _fmt_shape(shape), "numel": numel, "direction": d,
                    "ours_ms": t * 1e3, "eager_ms": base[d] * 1e3,
                    "compile_ms": comp[d] * 1e3 if d in comp else "", "copy_ms": t_copy * 1e3,
                    "min_bytes": nbytes, "GBps": nbytes / t / 1e9, "eager_GBps": nbytes / base[d] / 1e9,
                    "compile_GBps": nbytes / comp[d] / 1e9 if d in comp else "",
                    "copy_kernel": yard[d][1], "copy_GBps": yard[d][0] / t_copy / 1e9,
                    "pct_copy": pct_of_copy(nbytes, t, yard[d][0], t_copy),
                    "speedup_eager": base[d] / t, "speedup_compile": comp[d] / t if d in comp else "",
                    "saved_ours_MB": saved / 1e6, "saved_eager_MB": se / 1e6,
                })
            rows += case_rows
            print(progress_line(k, len(plan), time.perf_counter() - t_start, op, backend, dtype_name, shape,
                                case_rows), flush=True)

    errors = []
    for dtype_name in args.dtypes.split(","):
        for op in ALL_OPS:
            if args.ops and op.name not in args.ops.split(","):
                continue
            for backend in backends:
                ef, eg = max_errors(op, backend, DTYPES[dtype_name], device)
                errors.append({"op": op.name, "backend": backend, "dtype": dtype_name, "err_fwd": ef, "err_grad": eg})

    overhead = []
    xs = torch.randn(16, 64, device=device)
    for op in ALL_OPS:
        if args.ops and op.name not in args.ops.split(","):
            continue
        kw = op.bench_kwargs_for(xs.shape)
        params = op.make_params(xs.shape, xs.dtype, device, True)
        row = {"op": op.name, "eager_us": overhead_us(lambda v: eager(op)(v, *params, **kw), xs, device)}
        default = glo_kernels.backend_for(device, op.name)
        for backend in backends:  # the default backend as users call it (no use_backend context around the call)
            fn = op.fn if backend == default else ours(op, backend)
            row[f"{backend}_us"] = overhead_us(lambda v: fn(v, *params, **kw), xs, device)
        overhead.append(row)

    _write(out_dir, header, rows, errors, overhead, backends)
    if args.plots:
        from bench.plots import plot_report

        print(plot_report(rows, out_dir, header))
    print(f"wrote {out_dir}/report.md and report.csv in {time.perf_counter() - t_start:.0f} s")
    return 0


def _write(out_dir, header, rows, errors, overhead, backends):
    cols = list(rows[0].keys())
    with open(os.path.join(out_dir, "report.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    err = {(e["op"], e["backend"], e["dtype"]): e for e in errors}
    md = [f"# {header}", "",
          "Each op at its largest size of the sweep (element-wise: the largest power of 2; softmax family: the longest "
          "rows). ms: ours (eager, torch.compile); GB/s counts the fewest bytes the op must move; % copy: that over the "
          "GB/s of a copy moving the same bytes (the op's reads, a fresh output of the op's size: a copy, or the sum of "
          "k inputs where the op reads k per output; report.csv's copy_kernel) timed in the same rounds, marked ! above "
          "105% (the yardstick did not bound the row); speedup = "
          "baseline / ours; error = max |ours - fp64 reference| / max |reference|. The full sweep is in report.csv and "
          "the plots.", "",
          "| op | backend | dtype | shape | err fwd / grad | fwd ms (eager, compile) | bwd ms (eager, compile) | "
          "fwd+bwd ms (eager, compile) | fwd / bwd GB/s (% copy) | speedup vs eager fwd / bwd / fwd+bwd | "
          "vs compile fwd / bwd / fwd+bwd | saved MB (eager) |", "|" + "---|" * 12]
    keys = []
    for r in rows:
        k = (r["op"], r["backend"], r["dtype"])
        if k not in keys:
            keys.append(k)

    def f2(v, fmt="{:.2f}"):
        return fmt.format(v) if v != "" else "-"

    for k in keys:
        cand = [r for r in rows if (r["op"], r["backend"], r["dtype"]) == k]
        top = max(r["numel"] if r["family"] == "elementwise" else int(r["shape"].split("x")[-1]) for r in cand)
        sel = {r["direction"]: r for r in cand
               if (r["numel"] if r["family"] == "elementwise" else int(r["shape"].split("x")[-1])) == top}
        if set(sel) != set(DIRECTIONS):
            continue
        e = err.get(k, {"err_fwd": float("nan"), "err_grad": float("nan")})
        md.append(
            f"| {k[0]} | {k[1]} | {k[2]} | {sel['fwd']['shape']} | {e['err_fwd']:.1e} / {e['err_grad']:.1e} | "
            + " | ".join(f"{sel[d]['ours_ms']:.3f} ({sel[d]['eager_ms']:.3f}, {f2(sel[d]['compile_ms'], '{:.3f}')})"
                         for d in DIRECTIONS)
            + f" | {sel['fwd']['GBps']:.0f} ({fmt_pct(sel['fwd']['pct_copy'])}) / {sel['bwd']['GBps']:.0f} "
              f"({fmt_pct(sel['bwd']['pct_copy'])}) | "
            + " / ".join(f"{sel[d]['speedup_eager']:.2f}" for d in DIRECTIONS) + " | "
            + " / ".join(f2(sel[d]["speedup_compile"]) for d in DIRECTIONS)
            + f" | {sel['fwd']['saved_ours_MB']:.1f} ({sel['fwd']['saved_eager_MB']:.1f}) |")
    md += ["", "Per-call overhead on a 16 x 64 float32 tensor (µs per call, forward without autograd, through the "
           "Python API: glo_kernels.<op>(x) against the eager baseline):", "",
           "| op | eager µs | " + " | ".join(f"{b} µs" for b in backends) + " |", "|" + "---|" * (2 + len(backends))]
    for o in overhead:
        md.append(f"| {o['op']} | {o['eager_us']:.1f} | " + " | ".join(f"{o[f'{b}_us']:.1f}" for b in backends) + " |")
    md += ["", "![GB/s against size](gbps.png)", "", "![speedup against size](speedup.png)", ""]
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    for line in md[:4 + len(keys) + 2]:
        print(line)


if __name__ == "__main__":
    sys.exit(main())
