"""Static performance check of the CUDA kernels, without a GPU: what ptxas made of them for sm_90 (H100 / H200).

    python -m bench.sass_report [--so PATH] [--arch sm_90] [--out DIR] [--readme README.md | --no-readme]

Reads the sm_90 SASS already inside the built extension (glo_kernels/_C*.so; `make build` compiles the CUDA sources for
sm_80 and sm_90): `cuobjdump -xelf all` extracts the cubins, `cuobjdump -res-usage` gives registers, stack, local
(spill) and shared memory per kernel, `nvdisasm` gives the SASS with branch labels and the names of the subroutines a
kernel calls. Nothing is compiled, so it takes seconds. The tools are taken from PATH or from the Triton wheel
(triton/backends/nvidia/bin/).

For every kernel instantiation it reports:
  * regs, spill bytes (local memory, or the stack frame when STL / LDL instructions use it), shared memory;
  * whether its vector path has 128-bit global loads and stores (LDG.E.128[.CONSTANT] / STG.E.128);
  * integer divisions: calls to the 64-bit division subroutines ($__internal_*_div_s64 / _div_u64 / _rem_*) and the
    inline 32-bit unsigned division (`/` by a run-time int compiles on sm_90 to I2F.U32.RP, MUFU.RCP,
    F2I.FTZ.U32.TRUNC, then IMAD.HI.U32 and a correction step: counted by its I2F.U32.RP / I2F.RP);
  * IEEE float divides: FCHK (the range check of the fast path of a correctly rounded float divide) and calls to
    $__internal_*_div_rn_*_slowpath;
  * full barriers: MEMBAR.ALL.GPU / MEMBAR.SC.GPU and CCTL.IVALL, and whether any sits inside a loop;
  * instructions per element of the main loop (below) against the H100 issue budget (below).

Loops are found from backward branches: a BRA whose target label lies at or before it closes a loop whose body is the
instructions from the label to the branch. The body is counted statically, every instruction once, rarely taken paths
included (a division's slow path, a channel change): an upper bound of what one iteration issues. Only innermost loops
(holding no other loop) are candidates for the main loop: Maxout's per-piece loop, not the loop around it, whose
per-vector work is spread over the pieces. Elements per iteration: if the body has 128-bit global stores, each moves 16 bytes = 16 / sizeof(dtype)
elements of the kernel's main output (4 for float32, 8 for bfloat16 / float16, 2 for float64); a kernel that stores
nothing 128-bit counts its stores of exactly sizeof(dtype) bytes, one element each. (Narrower or other-width stores,
the packed mask words and the uint8 Maxout indices, are side outputs and are not counted.) Maxout forward counts its
loads of x the same way (it stores one output per `pieces` inputs). The main loop is the loop with the most elements
per iteration (ties: the shorter body, i.e. the innermost).

The budget. An H100 SXM has 132 SMs, each issuing 4 warp-instructions per clock (one per scheduler), at a boost clock
of about 1.755 GHz: 132 * 4 * 32 lanes * 1.755e9 = 2.97e13 thread-instructions per second. While memory moves the
data, the kernel moves BW / B elements per second (B = bytes per element the op must move, BW = copy bandwidth;
ASSUMED 3.0e12 B/s, the copy rate an H100 reaches, not measured here). So the SMs can issue
    budget = 2.97e13 * B / BW = 9.88 * B instructions per element,
e.g. 39.5 for a bfloat16 forward (B = 4: read 2, write 2), 79 for float32 forward (B = 8), 59 / 119 for bfloat16 /
float32 backward (B = 6 / 12). The margin we require: main loop <= 50% of the budget. The budget assumes every
scheduler issues every clock; a memory-bound kernel does not: warps stall on loads, the grid-stride loop's tail and the
scalar tail leave slots idle, and dual-issue does not exist on sm_90. Half the issue rate leaves room for that, so a
kernel within the margin is bound by memory, not by issue.

Writes DIR/sass.md and DIR/sass.csv (DIR defaults to bench/results/static-sm90/) and the summary table into the README
between the markers <!-- sass-report:begin --> and <!-- sass-report:end -->.
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "bench", "results", "static-sm90")
README = os.path.join(ROOT, "README.md")
BEGIN, END = "<!-- sass-report:begin -->", "<!-- sass-report:end -->"

# H100 SXM issue rate and the assumed copy bandwidth (see the module docstring).
SMS, SCHEDULERS, LANES, CLOCK_HZ = 132, 4, 32, 1.755e9
ISSUE_RATE = SMS * SCHEDULERS * LANES * CLOCK_HZ  # thread-instructions per second, 2.97e13
COPY_BW = 3.0e12  # bytes per second: an assumption (the copy rate of an H100), not a measurement
MARGIN = 0.5  # the main loop may use at most this fraction of the budget

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2, "float64": 8}
_CPP_DTYPES = {"float": "float32", "double": "float64", "c10::BFloat16": "bfloat16", "c10::Half": "float16"}

# Kernel families with an element budget: bytes moved per element as a function of sizeof(dtype) s, the direction,
# and which global accesses define an element ("st": the main output's stores, "ld": the input's loads).
# Maxout: per element of x (forward) or dx (backward), with pieces P = 4 (its reads / writes of the narrower tensors
# shrink as P grows; P = 4 is typical and close to the limit s).
FAMILIES = {
    "mask_forward_kernel": ("fwd", lambda s: 2 * s, "ld"),  # its 4-byte mask-word stores look like float32 ones
    "mask_backward_kernel": ("bwd", lambda s: 2 * s, "st"),
    "unary_forward_kernel": ("fwd", lambda s: 2 * s, "st"),
    "unary_backward_kernel": ("bwd", lambda s: 3 * s, "st"),
    "channel_forward_kernel": ("fwd", lambda s: 2 * s, "st"),
    "channel_inner_forward_kernel": ("fwd", lambda s: 2 * s, "st"),  # (channels innermost: channels_last, a bias)
    "channel_backward_plane_kernel": ("bwd", lambda s: 3 * s, "st"),
    "channel_backward_rows_kernel": ("bwd", lambda s: 3 * s, "st"),
    "maxout_forward_kernel": ("fwd", lambda s: s + (s + 1) / 4, "ld"),
    "maxout_backward_kernel": ("bwd", lambda s: s + (s + 1) / 4, "st"),
    # gated units: per element of y (a and b in, y out); backward per stored element, da's and db's alike (grad, a
    # and b in, da and db out: 5 s per two stores)
    "gated_forward_kernel": ("fwd", lambda s: 3 * s, "st"),
    "gated_backward_kernel": ("bwd", lambda s: 2.5 * s, "st"),
}
# Families whose vector path must use 128-bit loads and stores.
VECTOR_FAMILIES = tuple(FAMILIES)


def scalar_fallback(family: str, template: str) -> bool:
    """The channel backward kernels' kV = 1 instantiations and the gated and channels-innermost forward kernels' VEC
    = 1 ones: the scalar paths for rows that are not whole 16-byte vectors (or unaligned pointers). Reported in the per-kernel table, not held to
    the 128-bit / budget checks."""
    if family.startswith("gated_"):
        return template.split(", ")[1] == "1"
    return (family.startswith("channel_backward") or family == "channel_inner_forward_kernel") and \
        template.endswith(", 1")


def budget(bytes_per_element: float) -> float:
    """Instructions per element the H100 can issue while memory moves one element (see the module docstring)."""
    return ISSUE_RATE * bytes_per_element / COPY_BW


# ---------------------------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------------------------
_INSTR = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:(@!?U?P[0-9T])\s+)?([A-Z][A-Z0-9_.]*)\s*(.*?)\s*;")
_LABEL = re.compile(r"^(\.L_x_\d+):\s*$")
_FUNC = re.compile(r"^([A-Za-z_$][^\s:]*):\s*$")
_BRANCH_TARGET = re.compile(r"`\(([^)]+)\)")
_GLOBAL_MEM = re.compile(r"^(LDG|STG)(\.|$)")
_WIDTH = {"128": 16, "64": 8, "U16": 2, "S16": 2, "U8": 1, "S8": 1}


@dataclass
class Instr:
    addr: int
    pred: str | None
    op: str
    args: str


@dataclass
class Loop:
    start: int  # address of the label the back branch jumps to
    end: int  # address of the back branch
    body: list[Instr]

    @property
    def count(self) -> int:
        return len(self.body)


@dataclass
class Function:
    name: str
    instrs: list[Instr] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def parse_nvdisasm(text: str) -> dict[str, Function]:
    """Functions (kernels and $__internal subroutines) of nvdisasm's output, with their instructions and labels."""
    funcs: dict[str, Function] = {}
    cur: Function | None = None
    pending_labels: list[str] = []
    for line in text.splitlines():
        m = _INSTR.match(line)
        if m:
            if cur is None:
                continue
            ins = Instr(int(m.group(1), 16), m.group(2), m.group(3), m.group(4))
            for lab in pending_labels:
                cur.labels[lab] = ins.addr
            pending_labels = []
            cur.instrs.append(ins)
            continue
        m = _LABEL.match(line)
        if m:
            pending_labels.append(m.group(1))
            continue
        m = _FUNC.match(line)
        if m and not line.startswith(".text") and not line.startswith("."):
            cur = funcs.setdefault(m.group(1), Function(m.group(1)))
            pending_labels = []
    return funcs


def mem_width(op: str) -> int:
    """Bytes of a global load / store opcode (LDG.E.128.CONSTANT -> 16, STG.E.U16 -> 2, LDG.E -> 4)."""
    for part in op.split(".")[1:]:
        if part in _WIDTH:
            return _WIDTH[part]
    return 4


def _blocks(fn: Function) -> tuple[list[tuple[int, int]], dict[int, list[int]]]:
    """Basic blocks of fn as (first, last) instruction indices, and each block's successors (block indices)."""
    starts = {0}
    label_at = {addr for addr in fn.labels.values()}
    for i, ins in enumerate(fn.instrs):
        if ins.addr in label_at:
            starts.add(i)
        if ins.op.startswith(("BRA", "EXIT", "RET", "BRX", "JMP")) and i + 1 < len(fn.instrs):
            starts.add(i + 1)
    order = sorted(starts)
    blocks = [(b, (order[j + 1] if j + 1 < len(order) else len(fn.instrs)) - 1) for j, b in enumerate(order)]
    block_of_addr = {fn.instrs[b].addr: j for j, (b, _) in enumerate(blocks)}
    succ: dict[int, list[int]] = {}
    for j, (_, last) in enumerate(blocks):
        ins = fn.instrs[last]
        out = []
        m = _BRANCH_TARGET.search(ins.args) if ins.op.startswith("BRA") else None
        if m and m.group(1) in fn.labels:
            out.append(block_of_addr[fn.labels[m.group(1)]])
        unconditional = ins.pred is None and (ins.op.startswith(("BRA", "EXIT", "RET", "BRX", "JMP")))
        if not unconditional and j + 1 < len(blocks):
            out.append(j + 1)
        succ[j] = out
    return blocks, succ


def find_loops(fn: Function) -> list[Loop]:
    """Natural loops: for each backward branch (target at or before the branch), the blocks that reach the branch's
    block without passing through the target block, plus the target block. The count is static: each instruction of
    those blocks once."""
    if not fn.instrs:
        return []
    blocks, succ = _blocks(fn)
    pred: dict[int, list[int]] = {j: [] for j in range(len(blocks))}
    for j, outs in succ.items():
        for t in outs:
            pred[t].append(j)
    loops = []
    for j, outs in succ.items():
        for h in outs:
            if h > j:
                continue
            body = {h, j}
            stack = [j] if j != h else []
            while stack:
                b = stack.pop()
                for p in pred[b]:
                    if p not in body:
                        body.add(p)
                        stack.append(p)
            instrs = [fn.instrs[i] for b in sorted(body) for i in range(blocks[b][0], blocks[b][1] + 1)]
            loops.append(Loop(fn.instrs[blocks[h][0]].addr, fn.instrs[blocks[j][1]].addr, instrs))
    return loops


def innermost(loops: list[Loop]) -> list[Loop]:
    """The loops that hold no other loop (an outer loop's count would include its inner loops' bodies once)."""
    sets = [frozenset(x.addr for x in lp.body) for lp in loops]
    return [lp for i, lp in enumerate(loops) if not any(j != i and sets[j] < sets[i] for j in range(len(loops)))]


def elements_per_iteration(body: list[Instr], dsize: int, kind: str) -> int:
    """Elements of the main tensor one iteration moves (module docstring): each 128-bit access of the counted kind
    (stores "st" or loads "ld") counts 16 / dsize elements, each access of exactly dsize bytes one."""
    prefix = "STG" if kind == "st" else "LDG"
    widths = [mem_width(x.op) for x in body if x.op.startswith(prefix + ".")]
    return sum(16 // dsize if w == 16 else 1 for w in widths if w == 16 or w == dsize)


_ADDR = re.compile(r"\[(R\d+)(?:\.64)?(?:\+(0x[0-9a-f]+|-0x[0-9a-f]+))?\]")


def split_accesses(body: list[Instr], dsize: int) -> int:
    """Vector accesses the compiler split: global loads / stores of exactly dsize bytes (dsize < 16) that share a base
    register with another such access of the same kind at a different offset less than 16 bytes away
    (STG.E [R22.64], STG.E [R22.64+0x4], ...), counted in loops that also hold 128-bit accesses. Scalar loads of
    per-channel parameters or mask words use distinct addresses and do not count."""
    mem = [x for x in body if _GLOBAL_MEM.match(x.op)]
    if dsize >= 16 or not any(mem_width(x.op) == 16 for x in mem):
        return 0
    groups: dict[tuple[str, str], set[int]] = {}
    for x in mem:
        if mem_width(x.op) != dsize:
            continue
        m = _ADDR.search(x.args)
        if not m:
            continue
        off = int(m.group(2), 16) if m.group(2) else 0
        groups.setdefault((x.op[:3], m.group(1)), set()).add(off)
    n = 0
    for offs in groups.values():
        offs_sorted = sorted(offs)
        if any(b - a < 16 for a, b in zip(offs_sorted, offs_sorted[1:])):
            n += len(offs_sorted)
    return n


def _calls(fn: Function) -> list[str]:
    out = []
    for ins in fn.instrs:
        if ins.op.startswith("CALL"):
            m = _BRANCH_TARGET.search(ins.args)
            if m:
                out.append(m.group(1))
    return out


_INT_DIV_CALL = re.compile(r"_(div|rem)_[su](32|64)\b")
_FDIV_CALL = re.compile(r"div_rn.*f32|div_f32|frcp|rcp_rn.*f32")


def int_divisions(instrs: list[Instr], calls: list[str]) -> int:
    inline = sum(1 for x in instrs if x.op in ("I2F.U32.RP", "I2F.RP", "I2F.U64.RP"))
    return inline + sum(1 for c in calls if _INT_DIV_CALL.search(c))


def float_divides(instrs: list[Instr], calls: list[str]) -> int:
    return sum(1 for x in instrs if x.op.startswith("FCHK")) + sum(1 for c in calls if _FDIV_CALL.search(c))


def _xchg(k) -> int | None:
    """A softmax rows kernel's cluster exchange (its last template argument: 0 cluster.sync, 1 mbarrier)."""
    if not k.family.startswith("softmax_rows"):
        return None
    return int(k.template.rsplit(",", 1)[1])


def _is_barrier(op: str) -> bool:
    return op.startswith("MEMBAR.ALL") or op.startswith("MEMBAR.SC") or op.startswith("CCTL.IVALL")


# ---------------------------------------------------------------------------------------------------------------
# Kernels
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class Kernel:
    mangled: str
    demangled: str
    family: str
    dtype: str  # of the first template argument that is a scalar type
    template: str
    cubin: str
    regs: int = 0
    stack: int = 0
    local: int = 0
    shared: int = 0
    stl_ldl: int = 0
    ldg128: int = 0
    stg128: int = 0
    int_div_kernel: int = 0
    int_div_loop: int = 0
    fdiv_kernel: int = 0
    fdiv_loop: int = 0
    barriers_in_loop: int = 0
    barriers: int = 0
    loop_instrs: int | None = None
    loop_elems: int | None = None
    loop_range: str = ""
    split_in_vec: int = 0  # dtype-wide scalar global accesses inside vector loops (see split_accesses)
    cluster_barriers: int = 0  # UCGABAR_* (barrier.cluster arrive / wait): the kernel synchronizes a cluster
    membar_in_loop: int = 0  # MEMBAR.ALL / MEMBAR.SC inside loops (barriers_in_loop also counts L1 invalidates)

    @property
    def spill_bytes(self) -> int:
        """Local memory per thread, or the stack frame when STL / LDL use it (LOCAL 0, STACK > 0 and STL / LDL: a
        spilled register, or one saved around a call, in the stack frame; either way a round trip to memory)."""
        return self.local if self.local else (self.stack if self.stl_ldl else 0)

    @property
    def direction(self) -> str:
        return FAMILIES[self.family][0] if self.family in FAMILIES else ""

    @property
    def bytes_per_element(self) -> float | None:
        if self.family not in FAMILIES:
            return None
        return FAMILIES[self.family][1](DTYPE_BYTES[self.dtype])

    @property
    def budget(self) -> float | None:
        b = self.bytes_per_element
        return None if b is None else budget(b)

    @property
    def ipe(self) -> float | None:
        if not self.loop_instrs or not self.loop_elems:
            return None
        return self.loop_instrs / self.loop_elems

    @property
    def pct_budget(self) -> float | None:
        if self.ipe is None or self.budget is None:
            return None
        return 100.0 * self.ipe / self.budget


def _split_template(demangled: str) -> tuple[str, str]:
    """('channel_forward_kernel', 'c10::BFloat16, glo::PELU<float>') from a demangled kernel name."""
    # (glo's inline namespace of the CPU level, glo::isa_default:: in CUDA files: csrc/include/glo/isa.h)
    head = re.sub(r"\bisa_\w+::", "", demangled.replace("(anonymous namespace)::", "")).split("(")[0]
    m = re.search(r"(?:::|^|\s)([A-Za-z_0-9]+)<(.*)>\s*$", head)
    if m:
        return m.group(1), m.group(2).strip()
    return head.split("::")[-1].strip(), ""


def _first_dtype(template: str) -> str:
    for arg in re.split(r",\s*", template):
        arg = arg.strip()
        if arg in _CPP_DTYPES:
            return _CPP_DTYPES[arg]
    return "float64" if "double" in template else "float32"


def _kernel_dtype(family: str, template: str) -> str:
    # Any double argument makes it a float64 kernel (softmax kernels name the opmath type first).
    args = [a.strip() for a in re.split(r",\s*", template)]
    if "double" in args:
        return "float64"
    names = [_CPP_DTYPES[a] for a in args if a in _CPP_DTYPES]
    narrow = [n for n in names if n in ("bfloat16", "float16")]
    return narrow[0] if narrow else (names[0] if names else _first_dtype(template))


def find_tool(name: str) -> str | None:
    path = shutil.which(name)
    if path:
        return path
    try:
        import triton  # noqa: F401

        cand = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", name)
        if os.path.exists(cand):
            return cand
    except ImportError:
        pass
    for home in [os.environ.get("CUDA_HOME", ""), "/usr/local/cuda"]:
        cand = os.path.join(home, "bin", name)
        if home and os.path.exists(cand):
            return cand
    return None


def find_extension() -> str | None:
    found = sorted(glob.glob(os.path.join(ROOT, "glo_kernels", "_C*.so")))
    return found[0] if found else None


def _run(cmd: list[str], cwd: str | None = None) -> str:
    return subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True).stdout


def parse_res_usage(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"^\s*Function ([^\s:]+):\s*$", line)
        if m:
            name = m.group(1)
            continue
        if name and "REG:" in line:
            out[name] = {k: int(v) for k, v in re.findall(r"([A-Z]+):(\d+)", line)}
            name = None
    return out


def demangle(names: list[str]) -> dict[str, str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if tool is None:
        return {n: n for n in names}
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def analyse_cubin(cubin_name: str, res: dict[str, dict[str, int]], sass: str) -> list[Kernel]:
    funcs = parse_nvdisasm(sass)
    dem = demangle(list(res))
    kernels = []
    for mangled, usage in res.items():
        fn = funcs.get(mangled)
        family, template = _split_template(dem[mangled])
        k = Kernel(mangled, dem[mangled], family, _kernel_dtype(family, template), template, cubin_name,
                   regs=usage.get("REG", 0), stack=usage.get("STACK", 0), local=usage.get("LOCAL", 0),
                   shared=usage.get("SHARED", 0))
        if fn is None:
            kernels.append(k)
            continue
        # The kernel's code plus the subroutines it calls (one level; they are leaves).
        calls = _calls(fn)
        sub_instrs = [x for c in set(calls) if c in funcs for x in funcs[c].instrs]
        everything = fn.instrs + sub_instrs
        k.stl_ldl = sum(1 for x in everything if x.op.startswith("STL") or x.op.startswith("LDL"))
        k.ldg128 = sum(1 for x in fn.instrs if x.op.startswith("LDG") and mem_width(x.op) == 16)
        k.stg128 = sum(1 for x in fn.instrs if x.op.startswith("STG") and mem_width(x.op) == 16)
        k.int_div_kernel = int_divisions(fn.instrs, calls)
        k.fdiv_kernel = float_divides(fn.instrs, calls)
        k.barriers = sum(1 for x in fn.instrs if _is_barrier(x.op))
        k.cluster_barriers = sum(1 for x in fn.instrs if x.op.startswith("UCGABAR"))
        loops = find_loops(fn)
        in_loop = set()
        for lp in loops:
            for x in lp.body:
                in_loop.add(x.addr)
        k.barriers_in_loop = sum(1 for x in fn.instrs if _is_barrier(x.op) and x.addr in in_loop)
        k.membar_in_loop = sum(1 for x in fn.instrs if x.op.startswith("MEMBAR") and x.addr in in_loop)
        if family in FAMILIES:
            dsize = DTYPE_BYTES[k.dtype]
            k.split_in_vec = max((split_accesses(lp.body, dsize) for lp in loops),
                                 default=0)
            kind = FAMILIES[family][2]
            best = None
            for lp in innermost(loops):
                el = elements_per_iteration(lp.body, dsize, kind)
                if el == 0:
                    continue
                key = (el, -lp.count)
                if best is None or key > best[0]:
                    best = (key, lp, el)
            if best is not None:
                _, lp, el = best
                k.loop_instrs, k.loop_elems = lp.count, el
                k.loop_range = f"{lp.start:#x}-{lp.end:#x}"
                lcalls = [m.group(1) for x in lp.body if x.op.startswith("CALL")
                          for m in [_BRANCH_TARGET.search(x.args)] if m]
                k.int_div_loop = int_divisions(lp.body, lcalls)
                k.fdiv_loop = float_divides(lp.body, lcalls)
        kernels.append(k)
    return kernels


def analyse(so: str, arch: str = "sm_90") -> list[Kernel]:
    """Every kernel of the extension's `arch` SASS."""
    cuobjdump, nvdisasm = find_tool("cuobjdump"), find_tool("nvdisasm")
    if cuobjdump is None or nvdisasm is None:
        raise FileNotFoundError("cuobjdump / nvdisasm not found (PATH, the Triton wheel, CUDA_HOME)")
    with tempfile.TemporaryDirectory() as tmp:
        _run([cuobjdump, "-xelf", "all", os.path.abspath(so)], cwd=tmp)
        cubins = sorted(glob.glob(os.path.join(tmp, f"*.{arch}.cubin")))
        if not cubins:
            raise RuntimeError(f"{so} holds no {arch} code (was it built with CUDA for {arch}?)")

        def one(cubin):
            res = parse_res_usage(_run([cuobjdump, "-res-usage", cubin]))
            sass = _run([nvdisasm, "-c", cubin])
            return analyse_cubin(os.path.basename(cubin), res, sass)

        with ThreadPoolExecutor(max_workers=len(cubins)) as pool:
            results = list(pool.map(one, cubins))
    kernels = [k for ks in results for k in ks]
    kernels.sort(key=lambda k: (k.cubin, k.family, k.template))
    return kernels


# ---------------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------------
COLUMNS = ["family", "template", "dtype", "direction", "regs", "spill_bytes", "stl_ldl", "shared", "ldg128",
           "stg128", "split_in_vec", "int_div_loop", "fdiv_loop", "barriers_in_loop", "loop_instrs", "loop_elems", "ipe", "budget",
           "pct_budget", "loop_range", "int_div_kernel", "fdiv_kernel", "barriers", "cluster_barriers"]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def row(k: Kernel) -> dict:
    return {c: getattr(k, c) for c in COLUMNS}


def _short(template: str) -> str:
    return template.replace("c10::", "").replace("glo::", "").replace("at::", "")


def markdown(kernels: list[Kernel], so: str) -> str:
    lines = [
        f"Static SASS report (sm_90) of `{os.path.relpath(so, ROOT)}`, by `bench/sass_report.py`. Budget: H100 issue "
        f"rate {ISSUE_RATE:.3g} thread-instr/s x bytes per element / {COPY_BW:.1e} B/s (assumed copy bandwidth) = "
        f"{ISSUE_RATE / COPY_BW:.2f} instr per byte; required: main loop <= {MARGIN:.0%} of the budget. "
        "instr/el: static instruction count of the main loop body / elements per iteration (predictions, not "
        "measurements).",
        "",
        "| kernel | template | regs | spill B | smem | LDG.128 | STG.128 | split | int div (loop) | fdiv (loop) | "
        "barriers (in loop) | instr/el | budget | % budget |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for k in kernels:
        lines.append(
            f"| {k.family} | {_short(k.template)} | {k.regs} | {k.spill_bytes} | {k.shared} | {k.ldg128} | "
            f"{k.stg128} | {k.split_in_vec} | {k.int_div_kernel} ({k.int_div_loop}) | {k.fdiv_kernel} ({k.fdiv_loop}) | "
            f"{k.barriers} ({k.barriers_in_loop}) | {_fmt(k.ipe)} | {_fmt(k.budget)} | {_fmt(k.pct_budget)} |")
    return "\n".join(lines) + "\n"


def summary(kernels: list[Kernel]) -> str:
    """Per family and dtype (float32, bfloat16): the worst kernel's instr/el and % of budget, max regs, spills."""
    lines = [
        "| kernel family | dir | float32 instr/el (% budget) | bfloat16 instr/el (% budget) | max regs | spill B | "
        "128-bit path |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for fam in FAMILIES:
        ks = [k for k in kernels if k.family == fam and not scalar_fallback(k.family, k.template)]
        if not ks:
            continue
        cells = []
        for dt in ("float32", "bfloat16"):
            d = [k for k in ks if k.dtype == dt and k.ipe is not None]
            if not d:
                cells.append("")
                continue
            w = max(d, key=lambda k: k.pct_budget)
            cells.append(f"{w.ipe:.1f} ({w.pct_budget:.0f}%)")
        nonf64 = [k for k in ks if k.dtype != "float64"]
        vec = all(k.ldg128 > 0 and k.stg128 > 0 and k.split_in_vec == 0 for k in nonf64)
        lines.append(f"| {fam.replace('_kernel', '')} | {FAMILIES[fam][0]} | {cells[0]} | {cells[1]} | "
                     f"{max(k.regs for k in ks)} | {max(k.spill_bytes for k in nonf64)} | {'yes' if vec else 'NO'} |")
    lines.append("")
    lines.append("Worst instantiation per family and dtype (float16 as bfloat16); the channel backward kernels' scalar "
                 "fallbacks (kV = 1, for rows that are not whole 16-byte vectors) are in the per-kernel table only.")
    smx = [k for k in kernels if k.family.startswith("softmax") or k.family.startswith("distill")]
    if smx:
        lines.append("")
        lines.append(f"Softmax / distillation kernels: {len(smx)}, max regs {max(k.regs for k in smx)}, spill bytes "
                     f"(non-float64) {max((k.spill_bytes for k in smx if k.dtype != 'float64'), default=0)}, "
                     f"MEMBAR inside row loops: {sum(k.membar_in_loop for k in smx if _xchg(k) == 1)} in the "
                     f"kernels of the default cluster exchange (mbarriers; "
                     f"{sum(k.barriers_in_loop - k.membar_in_loop for k in smx if _xchg(k) == 1)} "
                     f"L1 invalidates, one per exchange), "
                     f"{sum(k.membar_in_loop for k in smx if _xchg(k) == 0)} in those of the cluster.sync exchange "
                     f"(GLO_SOFTMAX_EXCHANGE=sync), and "
                     f"{sum(k.membar_in_loop for k in smx if _xchg(k) is None)} in the others.")
    return "\n".join(lines) + "\n"


def write_readme(path: str, text: str) -> bool:
    with open(path) as f:
        content = f.read()
    if BEGIN not in content or END not in content:
        return False
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path, "w") as f:
        f.write(head + BEGIN + "\n" + text + END + tail)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", default=None, help="the built extension (default glo_kernels/_C*.so)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--readme", default=README)
    ap.add_argument("--no-readme", action="store_true")
    args = ap.parse_args(argv)
    so = args.so or find_extension()
    if so is None:
        print("sass_report: no built extension (glo_kernels/_C*.so); run make build", file=sys.stderr)
        return 2
    kernels = analyse(so, args.arch)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "sass.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for k in kernels:
            w.writerow({c: _fmt(v) for c, v in row(k).items()})
    md = markdown(kernels, so)
    summ = summary(kernels)
    with open(os.path.join(args.out, "sass.md"), "w") as f:
        f.write("# Static SASS report\n\n## Summary\n\n" + summ + "\n## Every kernel\n\n" + md)
    print(summ)
    if not args.no_readme:
        if not write_readme(args.readme, summ):
            print(f"sass_report: {args.readme} has no {BEGIN} / {END} markers; README not updated", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
