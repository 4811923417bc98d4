"""Static performance check of the Triton kernels, without a GPU: each kernel variant the launchers use is compiled
for sm_90 (Triton's own ptxas, in its wheel under triton/backends/nvidia/bin/, as its cuobjdump) and read back:

    python -m bench.triton_sass [--out DIR]

Per variant: registers, spill bytes (ptxas -v), the widths of the global loads and stores (LDG.E.128 / STG.E.128:
128-bit), and SASS instructions per element: every instruction of the kernel (prologue and epilogue included, so an
upper bound of the main loop's) over the elements one thread handles, against the H100 issue budget:

    budget = (SMs x 4 schedulers x 1 warp-instruction per clock x 32 threads x clock) / (copy bandwidth / bytes per
    element moved) = 132 x 4 x 32 x 1.755e9 / (3.0e12 / bytes) ~ 9.9 x bytes instructions per element,

about 40 for a bfloat16 forward (4 bytes: read 2, write 2), 59 for a bfloat16 backward reading two tensors (6),
79 / 119 in float32. The check requires a margin: at most 75% of the budget (MARGIN), since the issue rate is never
reached (dual issue is gone since Volta; address arithmetic, predication and the long-latency MUFU units compete) and
the prologue is counted. Prints a markdown table; with --out writes triton_sass.md there. tests/test_triton_sass.py
asserts its findings when the compiler is present.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass

H100_SMS = 132
H100_CLOCK_HZ = 1.755e9
H100_COPY_BPS = 3.0e12
MARGIN = 0.75


def budget(bytes_per_element: float) -> float:
    """SASS instructions per element the H100's SMs can issue while its memory moves the element's bytes."""
    issue = H100_SMS * 4 * 32 * H100_CLOCK_HZ  # thread-instructions per second
    return issue / (H100_COPY_BPS / bytes_per_element)


@dataclass
class Variant:
    name: str
    fn: object  # the @triton.jit kernel
    signature: dict  # argument -> Triton type, constexprs excluded
    constexprs: dict
    num_warps: int
    elements: int  # elements of one program
    bytes_per_element: float  # bytes moved per element (reads + writes, at the data dtype)
    vector: bool  # its loads and stores should be 128-bit
    div16: tuple = ()  # integer / pointer arguments Triton specializes as multiples of 16 at these shapes


def _bin(tool: str) -> str:
    import triton

    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", tool)


def available() -> bool:
    try:
        import triton  # noqa: F401
        from triton.backends.compiler import GPUTarget  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return os.path.exists(_bin("ptxas")) and os.path.exists(_bin("cuobjdump"))


def compile_variant(v: Variant):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = v.fn.arg_names
    sig = dict(v.signature)
    for k in v.constexprs:
        sig[k] = "constexpr"
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in v.div16}
    src = ASTSource(fn=v.fn, signature=sig, constexprs={(names.index(k),): c for k, c in v.constexprs.items()},
                    attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": v.num_warps, "enable_reflect_ftz": False})


def analyse(v: Variant) -> dict:
    k = compile_variant(v)
    with tempfile.TemporaryDirectory() as d:
        ptx, cubin = os.path.join(d, "k.ptx"), os.path.join(d, "k.cubin")
        with open(ptx, "w") as f:
            f.write(k.asm["ptx"])
        with open(cubin, "wb") as f:
            f.write(k.asm["cubin"])
        arch = re.search(r"\.target\s+(sm_\w+)", k.asm["ptx"]).group(1)
        info = subprocess.run([_bin("ptxas"), "-v", f"-arch={arch}", ptx, "-o", os.path.join(d, "k.o")],
                              capture_output=True, text=True, check=True).stderr
        sass = subprocess.run([_bin("cuobjdump"), "-sass", cubin], capture_output=True, text=True, check=True).stdout
    ops = re.findall(r"^\s+/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]+)", sass, re.MULTILINE)
    mem = {}
    for o in ops:
        if o.startswith(("LDG", "STG")):
            mem[o] = mem.get(o, 0) + 1
    per_thread = v.elements / (32 * v.num_warps)
    ipe = len(ops) / per_thread
    return {"name": v.name, "regs": int(re.search(r"Used (\d+) registers", info).group(1)),
            "spill": int(re.search(r"(\d+) bytes spill stores", info).group(1)),
            "mem": mem, "wide": all(o.endswith(".128") or o.endswith(".64") for o in mem),
            "has128": any(o.endswith(".128") for o in mem),
            "ipe": ipe, "budget": budget(v.bytes_per_element), "vector": v.vector}


def variants() -> list[Variant]:
    import torch
    import triton.language as tl

    from glo_kernels.ops.unary import UNARY
    from glo_kernels.triton import kernels as K
    from glo_kernels.triton import softmax_kernels as SK

    out = []
    for dt, nb in (("fp32", 4), ("bf16", 2)):
        cfg_m, cfg_u = K.MASK_CONFIGS[0], K.UNARY_CONFIGS[0]
        words = cfg_m.kwargs["WORDS"]
        for opn, op in (("relu", K.RELU), ("leaky_relu", K.LEAKY_RELU)):
            out.append(Variant(
                f"{opn} fwd {dt}", K._mask_forward_kernel,
                {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "mask_ptr": "*i32", "numel": "i32", "mask_len": "i32",
                 "slope": "fp64", "size_bucket": "i32"},
                dict(OP=op, SAVE_MASK=True, OPMATH=tl.float32, WORDS=words, NEG_ZERO=False), cfg_m.num_warps,
                32 * words, 2 * nb + 1 / 8, True, ("x_ptr", "y_ptr", "mask_ptr", "numel", "mask_len")))
            out.append(Variant(
                f"{opn} bwd {dt}", K._mask_backward_kernel,
                {"g_ptr": f"*{dt}", "mask_ptr": "*i32", "dx_ptr": f"*{dt}", "numel": "i32", "slope": "fp64",
                 "size_bucket": "i32"},
                dict(OP=op, OPMATH=tl.float32, WORDS=words, NEG_ZERO=False), cfg_m.num_warps, 32 * words,
                2 * nb + 1 / 8, True, ("g_ptr", "mask_ptr", "dx_ptr", "numel")))
        for opn in ("elu", "softplus") + tuple(spec.name for spec in UNARY):  # (the unary family: glo_kernels/ops/unary.py)
            fwd, bwd = K.unary_pair(opn)
            block = cfg_u.kwargs["BLOCK"]
            out.append(Variant(
                f"{opn} fwd {dt}", K._unary_forward_kernel,
                {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", "numel": "i32", "alpha": "fp64", "alpha2": "fp64",
                 "size_bucket": "i32"},
                dict(FWD=fwd, OPMATH=tl.float32, LIBDEVICE=True, BLOCK=block, NEG_ZERO=False), cfg_u.num_warps, block,
                2 * nb, True, ("x_ptr", "y_ptr", "numel")))
            out.append(Variant(
                f"{opn} bwd {dt}", K._unary_backward_kernel,
                {"g_ptr": f"*{dt}", "s_ptr": f"*{dt}", "dx_ptr": f"*{dt}", "numel": "i32", "alpha": "fp64",
                 "alpha2": "fp64", "size_bucket": "i32"},
                dict(BWD=bwd, OPMATH=tl.float32, LIBDEVICE=True, BLOCK=block, NEG_ZERO=False), cfg_u.num_warps, block,
                3 * nb, True, ("g_ptr", "s_ptr", "dx_ptr", "numel")))
        # Per-channel kernels: channels_last / [N, C] (inner == 1, C = 64) and NCHW with 32 x 32 planes.
        for geom in ((1 << 16, 64, 1), (64, 64, 1024)):
            nbk, cb, sb = K.channel_tiles(*geom)
            tag = "inner 1" if geom[2] == 1 else "NCHW"
            for opn, op in (("prelu", K.PRELU), ("pelu", K.PELU)):
                relu_fwd, relu_bwd = K.unary_pair("relu")  # (BIAS_ACT's activation: unused here)
                const = dict(OP=op, OPMATH=tl.float32, LIBDEVICE=True, NB=nbk, CB=cb, SB=sb, FWD=relu_fwd,
                             BWD=relu_bwd)
                if geom[2] == 1:
                    const["S"] = 1  # (Triton specializes an integer argument of 1 as a constant)
                    const["ST"] = 1  # (= cdiv(S, SB) = 1, specialized likewise)
                kty = f"*{dt}" if op == K.PRELU else "*fp32"  # (channel_constants: PELU's in opmath)
                sig = {"x_ptr": f"*{dt}", "k_ptr": kty, "y_ptr": f"*{dt}", "N": "i32",
                       "C": "i32", "S": "i32", "CT": "i32", "ST": "i32"}
                for c in const:
                    sig.pop(c, None)
                out.append(Variant(f"{opn} fwd {dt} {tag}", K._channel_forward_kernel, sig, const,
                                   K.CHANNEL_NUM_WARPS, nbk * cb * sb, 2 * nb, True,
                                   ("x_ptr", "k_ptr", "y_ptr", "C") + (("S",) if geom[2] > 1 else ())))
                bsig = {"g_ptr": f"*{dt}", "x_ptr": f"*{dt}", "k_ptr": kty,
                        "dx_ptr": f"*{dt}", "q0_ptr": "*fp32", "q1_ptr": "*fp32", "N": "i32", "C": "i32", "S": "i32",
                        "CT": "i32", "ST": "i32"}
                bconst = dict(const, NP=K.CHANNEL_PARAMS[op])
                for c in bconst:
                    bsig.pop(c, None)
                bwarps = K.channel_backward_num_warps(torch.float32 if dt == "fp32" else torch.bfloat16)
                out.append(Variant(f"{opn} bwd {dt} {tag}", K._channel_backward_kernel, bsig, bconst,
                                   bwarps, nbk * cb * sb, 3 * nb, True,
                                   ("g_ptr", "x_ptr", "k_ptr", "dx_ptr", "C") + (("S",) if geom[2] > 1 else ())))
        # Softmax rows of 1k, 4k, 16k and 32k elements (forward; backward up to 16k), read once.
        for n in (1024, 4096, 16384, 32768):
            for backward in (False, True):
                tdt = torch.float32 if dt == "fp32" else torch.bfloat16
                plan = SK.softmax_plan(((1 << 26) // n, n, 1), tdt, backward=backward)
                if not plan["SINGLE"]:
                    continue
                const = dict(HAS_T=False, LOG=False, GROUPED=False, INNER1=True, SINGLE=True, OPMATH=tl.float32,
                             LIBDEVICE=True, R=plan["R"], S=plan["S"])
                common = {"t_ptr": "*fp32", "offs_ptr": "*i64", "outer": "i32", "size": "i32", "inner": "i32",
                          "IT": "i32", "n_groups": "i32", "temperature": "fp64"}
                if backward:
                    sig = {"g_ptr": f"*{dt}", "y_ptr": f"*{dt}", "dx_ptr": f"*{dt}", **common}
                    fn, div = SK._softmax_backward_kernel, ("g_ptr", "y_ptr", "dx_ptr", "size")
                else:
                    sig = {"x_ptr": f"*{dt}", "y_ptr": f"*{dt}", **common}
                    fn, div = SK._softmax_forward_kernel, ("x_ptr", "y_ptr", "size")
                out.append(Variant(f"softmax {'bwd' if backward else 'fwd'} {dt} row {n}", fn, sig, const,
                                   plan["num_warps"], plan["R"] * plan["S"], (3 if backward else 2) * nb, True, div))
    return out


def report(rows: list[dict]) -> list[str]:
    md = ["| kernel | registers | spill bytes | global loads / stores | SASS per element | H100 budget (75%) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        mem = ", ".join(f"{k} x{v}" for k, v in sorted(r["mem"].items()))
        md.append(f"| {r['name']} | {r['regs']} | {r['spill']} | {mem} | {r['ipe']:.1f} | "
                  f"{r['budget']:.0f} ({MARGIN * r['budget']:.0f}) |")
    return md


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default="", help="substring of the variants' names to keep")
    ap.add_argument("--names", default="", help="';'-separated exact names of the variants to keep")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON (with each variant's elements per "
                                                        "thread) instead of the table")
    args = ap.parse_args(argv)
    if not available():
        print("triton with its NVIDIA backend (ptxas, cuobjdump) is not available: nothing to check")
        return 0
    from glo_kernels.triton import kernels

    if kernels.INTERPRETED:
        print("TRITON_INTERPRET is set: the kernels are interpreted functions and cannot be compiled; unset it")
        return 2
    names = [n for n in args.names.split(";") if n]
    rows = []
    for v in variants():
        if args.only in v.name and (not names or v.name in names):
            r = analyse(v)
            r["per_thread"] = v.elements // (32 * v.num_warps)
            rows.append(r)
    if args.json:
        import json

        print(json.dumps(rows))
        return 0
    import datetime

    import triton

    md = [f"# Triton {triton.__version__} kernels compiled for sm_90 without a GPU (ptxas -v, cuobjdump -sass of its "
          f"wheel), {datetime.date.today().isoformat()}", "",
          "SASS per element: all the kernel's instructions over the elements of one thread (prologue included). "
          "Budget: instructions the H100 can issue per element while its memory moves the element's bytes "
          f"(`python -m bench.triton_sass`; margin {MARGIN:.0%}, in parentheses).", ""] + report(rows)
    print("\n".join(md))
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "triton_sass.md"), "w") as f:
            f.write("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
