"""Plots of the report: GB/s against size per op (ours, eager, torch.compile, and as a line the bandwidth of the copy
yardstick: a copy moving the op's bytes in the same rounds), and the speedup over eager and torch.compile against size.
Forward + backward, the first dtype of the report."""
from __future__ import annotations

import math
import os


def _x(r) -> int:
    """The x axis: elements for element-wise ops, the row length for the softmax family."""
    return int(r["numel"]) if r["family"] == "elementwise" else int(r["shape"].split("x")[-1])


def plot_report(rows, out_dir: str, title: str, direction: str = "fwd+bwd") -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # the GPU machines may lack it: the tables and CSV are still written
        return f"plots skipped: matplotlib is not importable ({e})"
    if not rows:
        return "plots skipped: no rows"
    dtype = rows[0]["dtype"]
    sel = [r for r in rows if r["direction"] == direction and r["dtype"] == dtype]
    ops = list(dict.fromkeys(r["op"] for r in sel))
    ncol = 4
    nrow = math.ceil(len(ops) / ncol)
    written = []
    for kind in ("gbps", "speedup"):
        fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False)
        for ax, op in zip(axes.flat, ops):
            mine = [r for r in sel if r["op"] == op]
            family = mine[0]["family"]
            for backend in dict.fromkeys(r["backend"] for r in mine):
                pts = sorted(((_x(r), r) for r in mine if r["backend"] == backend), key=lambda p: p[0])
                xs = [p[0] for p in pts]
                if kind == "gbps":
                    ax.plot(xs, [p[1]["GBps"] for p in pts], "o-", label=f"ours ({backend})")
                else:
                    ax.plot(xs, [p[1]["speedup_eager"] for p in pts], "o-", label=f"{backend} vs eager")
                    cp = [(x, p["speedup_compile"]) for x, p in pts if p["speedup_compile"] != ""]
                    if cp:
                        ax.plot([c[0] for c in cp], [c[1] for c in cp], "s--", label=f"{backend} vs compile")
            first = sorted(((_x(r), r) for r in mine if r["backend"] == mine[0]["backend"]), key=lambda p: p[0])
            xs = [p[0] for p in first]
            if kind == "gbps":
                ax.plot(xs, [p[1]["eager_GBps"] for p in first], "^-", label="eager")
                cp = [(x, p["compile_GBps"]) for x, p in first if p["compile_GBps"] != ""]
                if cp:
                    ax.plot([c[0] for c in cp], [c[1] for c in cp], "s-", label="torch.compile")
                ax.plot(xs, [p[1]["copy_GBps"] for p in first], "k:", label="copy, same bytes")
                ax.set_ylabel("GB/s")
            else:
                ax.axhline(1.0, color="k", lw=0.8, ls=":")
                ax.set_ylabel("speedup")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("row length" if family == "softmax" else "elements")
            ax.set_title(op)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(ops):]:
            ax.axis("off")
        fig.suptitle(f"{title}\n{direction}, {dtype}", fontsize=9)
        fig.tight_layout()
        path = os.path.join(out_dir, f"{kind}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return "wrote " + " and ".join(written)
