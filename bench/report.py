"""The main job: for each op and backend available on this device, the max error against the float64 reference and
the time against PyTorch eager, forward and forward + backward.

    python -m bench.report [--device cpu|cuda] [--dtypes float32,bfloat16] [--out DIR]

Prints a table and writes report.md and report.csv into DIR (default results/<device>/).
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import sys

import torch

import glo_kernels
from glo_kernels._registry import ALL_OPS

from bench.common import (bench_shape, device_name, device_slug, eager, make_case, median_time, min_bytes, ours,
                          runner, saved_bytes)

DIRECTIONS = ("fwd", "bwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}


def _backends_for(device: torch.device) -> list[str]:
    status = glo_kernels.available_backends()
    if device.type == "cuda":
        names = ["cuda", "triton", "reference"]
    else:
        names = ["cpu", "reference"]  # Triton runs CPU tensors only under its (slow) interpreter: not timed
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    ap.add_argument("--out", default=None, help="output folder (default results/<device>/)")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    shape = bench_shape()
    numel = 1
    for s in shape:
        numel *= s
    out_dir = args.out or os.path.join("results", device_slug(device))
    os.makedirs(out_dir, exist_ok=True)

    header = (f"glo_kernels {glo_kernels.__version__} report on {device_name(device)}; torch {torch.__version__}"
              + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else f", {torch.get_num_threads()} threads")
              + f"; {datetime.date.today().isoformat()}")
    print(header)
    print("backends:", ", ".join(f"{k}={'yes' if v.available else 'no'}" for k, v in glo_kernels.available_backends().items()))
    print(f"shape {shape} ({numel} elements); times are medians after warm-up; speedup = eager time / ours")
    rows = []
    for dtype_name in args.dtypes.split(","):
        dtype = DTYPES[dtype_name]
        for op in ALL_OPS:
            kw = op.bench_kwargs_for(shape)
            x, params, dy = make_case(op, shape, dtype, device, kwargs=kw)
            base = {}
            for direction in DIRECTIONS:
                base[direction] = median_time(runner(eager(op), x, params, dy, direction, kw), device)
            se = saved_bytes(eager(op), x, params, kw)
            for backend in _backends_for(device):
                err_f, err_g = max_errors(op, backend, dtype, device)
                saved = saved_bytes(ours(op, backend), x, params, kw)
                row = {"op": op.name, "backend": backend, "dtype": dtype_name, "shape": "x".join(map(str, shape)),
                       "err_fwd": err_f, "err_grad": err_g, "saved_eager_MB": se / 1e6, "saved_ours_MB": saved / 1e6}
                for direction in DIRECTIONS:
                    t = median_time(runner(ours(op, backend), x, params, dy, direction, kw), device)
                    row[f"{direction}_eager_ms"] = base[direction] * 1e3
                    row[f"{direction}_ours_ms"] = t * 1e3
                    row[f"{direction}_speedup"] = base[direction] / t
                    row[f"{direction}_GBps"] = min_bytes(op, direction, numel, x.element_size()) / t / 1e9
                rows.append(row)
                print(f"  {op.name:11s} {backend:9s} {dtype_name:8s} err fwd {err_f:.1e} grad {err_g:.1e} | "
                      + " | ".join(f"{d} {row[d + '_ours_ms']:7.2f} ms (eager {row[d + '_eager_ms']:7.2f}, "
                                   f"x{row[d + '_speedup']:.2f})" for d in DIRECTIONS), flush=True)

    cols = list(rows[0].keys())
    with open(os.path.join(out_dir, "report.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    md = [f"# {header}", "", f"Shape {shape}; speedup = eager / ours; error = max |ours - fp64 reference| / max |reference|.",
          "", "| op | backend | dtype | err fwd | err grad | fwd ms (eager) | bwd ms (eager) | fwd+bwd ms (eager) | "
          "speedup fwd / bwd / fwd+bwd | fwd+bwd GB/s | saved for bwd MB (eager) |", "|" + "---|" * 11]
    for r in rows:
        md.append(f"| {r['op']} | {r['backend']} | {r['dtype']} | {r['err_fwd']:.1e} | {r['err_grad']:.1e} | "
                  + " | ".join(f"{r[d + '_ours_ms']:.2f} ({r[d + '_eager_ms']:.2f})" for d in DIRECTIONS)
                  + " | " + " / ".join(f"{r[d + '_speedup']:.2f}" for d in DIRECTIONS)
                  + f" | {r['fwd+bwd_GBps']:.1f} | {r['saved_ours_MB']:.1f} ({r['saved_eager_MB']:.1f}) |")
    with open(os.path.join(out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")
    print(f"wrote {out_dir}/report.md and report.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
