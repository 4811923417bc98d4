"""The CPU kernels' instruction-set levels, chosen at run time (csrc/cpu/cpu_dispatch.h).

- which levels a build holds and this CPU runs, and the choice: the best one, GLO_KERNELS_CPU_CAPABILITY, and
  glo_kernels.use_cpu_capability;
- every level this CPU runs, against the float64 reference (the checks of tests/test_ops.py and test_softmax.py),
  at sizes that reach the kernels' vector loops, chunk tails and threads; the rest of the suite runs at the chosen
  level;
- the levels with FMA (avx2, avx512) against each other, bit for bit, except GELU's erf form, whose AVX-512 loops use
  their own algorithm (csrc/cpu/avx512_math.h, bounded in tests/test_cpu_avx512.py). The default level rounds
  a * b + c twice where the others fuse it (no FMA below x86-64-v3), so it is held to the reference's bounds only;
- the library's machine code: outside the avx2 / avx512 namespaces (and in every static initializer, which runs at
  load on any CPU) no instruction above the baseline.
"""
import os
import platform
import re
import shutil
import subprocess
import sys

import pytest
import torch

import glo_kernels
import test_ops
import test_softmax
from glo_kernels._registry import OPS
from helpers import make_input, seeded

pytestmark = pytest.mark.skipif(not glo_kernels.available_backends()["cpu"].available,
                                reason=f"backend cpu: {glo_kernels.available_backends()['cpu'].reason}")

LEVELS = glo_kernels.cpu_capabilities()
CURRENT = glo_kernels.cpu_capability()
# The levels the rest of the suite does not run (it runs CURRENT).
OTHER_LEVELS = [level for level in LEVELS if level != CURRENT]
FMA_LEVELS = [level for level in LEVELS if level != "default"]
X86 = platform.machine().lower() in ("x86_64", "amd64")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# x86-64 micro-architecture levels (the flags of /proc/cpuinfo that -march=x86-64-v3 / v4 assume).
V3_FLAGS = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "movbe", "abm", "xsave"}
V4_FLAGS = V3_FLAGS | {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), []))
    except OSError:
        return None


def _run_python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k != "GLO_KERNELS_CPU_CAPABILITY"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environ, cwd=ROOT,
                          timeout=300)


def test_levels_follow_the_cpu():
    assert CURRENT in LEVELS and LEVELS[0] == "default"
    if not X86:
        assert LEVELS == ["default"]
        return
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("no /proc/cpuinfo to read this CPU's features from")
    expected = ["default"] + (["avx2"] if V3_FLAGS <= flags else []) + (["avx512"] if V4_FLAGS <= flags else [])
    assert LEVELS == expected, f"this CPU's flags give {expected}, the library runs {LEVELS}"
    assert f"{CURRENT} level" in glo_kernels.available_backends()["cpu"].reason


def test_best_level_by_default_and_the_environment_variable():
    out = _run_python("import glo_kernels; print(glo_kernels.cpu_capability())")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == LEVELS[-1]
    for level in LEVELS:
        out = _run_python("import glo_kernels; print(glo_kernels.cpu_capability())", GLO_KERNELS_CPU_CAPABILITY=level)
        assert out.returncode == 0, out.stderr
        assert out.stdout.split()[-1] == level
    out = _run_python("import glo_kernels", GLO_KERNELS_CPU_CAPABILITY="sse9")
    assert out.returncode != 0
    assert "GLO_KERNELS_CPU_CAPABILITY=sse9" in out.stderr and "default, avx2, avx512" in out.stderr


def test_use_cpu_capability_switches_and_restores():
    x = torch.randn(1000)
    for level in LEVELS:
        with glo_kernels.use_cpu_capability(level):
            assert glo_kernels.cpu_capability() == level
            torch.testing.assert_close(glo_kernels.sigmoid(x), torch.sigmoid(x))
        assert glo_kernels.cpu_capability() == CURRENT
    with pytest.raises(ValueError, match="use_cpu_capability: the CPU capability must be one of"):
        with glo_kernels.use_cpu_capability("neon"):
            pass
    with pytest.raises(RuntimeError, match="unknown CPU capability 'neon'"):
        torch.ops.glo_kernels_debug.set_cpu_capability("neon")
    assert glo_kernels.cpu_capability() == CURRENT
    missing = [level for level in glo_kernels.backends.CPU_CAPABILITIES if level not in LEVELS]
    for level in missing:
        with pytest.raises(RuntimeError, match=f"CPU capability '{level}' cannot run here"):
            with glo_kernels.use_cpu_capability(level):
                pass


# Sizes past a chunk (4096 elements), the AVX-512 GELU blocks (512) and the parallel grain, with odd tails.
BIG_SHAPES = [(5001,), (3, 20001), (2, 3, 4099)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16],
                         ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_level_matches_reference(level, op, dtype):
    with glo_kernels.use_backend("cpu"), glo_kernels.use_cpu_capability(level):
        for shape in [(33,), (7, 13), (2, 3, 5, 7), (3, 0, 2)] + BIG_SHAPES:
            for layout in ("contiguous", "strided"):
                test_ops.test_matches_reference(op, ("cpu", "cpu"), dtype, shape, layout)


@pytest.mark.parametrize("level", OTHER_LEVELS)
def test_level_softmax_matches_reference(level):
    with glo_kernels.use_backend("cpu"), glo_kernels.use_cpu_capability(level):
        for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
            for op in test_softmax.SOFTMAXES:
                for case in test_softmax.CASES:
                    test_softmax.test_softmax_matches_reference(op, ("cpu", "cpu"), dtype, case, "contiguous")
            for case in test_softmax.GROUP_CASES:
                test_softmax.test_grouped_softmax_matches_reference(("cpu", "cpu"), dtype, case, "contiguous")
            for shape in test_softmax.DISTILL_SHAPES:
                test_softmax.test_distillation_matches_kl_div(("cpu", "cpu"), dtype, shape)


def _same_bits(a, b):
    """Equal bits, except that any NaN equals any NaN (its sign and payload follow the order of a multiply's operands,
    which the compiler picks)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
    same = a.contiguous().view(ints) == b.contiguous().view(ints)
    return bool((same | (a.isnan() & b.isnan())).all())


# GELU's erf form runs its own algorithm on AVX-512 (csrc/cpu/avx512_math.h): a few ulp from the functor's bits.
ERF_GELU = {"gelu", "geglu", "bias_gelu"}


@pytest.mark.skipif(len(FMA_LEVELS) < 2, reason=f"this CPU runs fewer than two levels with FMA ({LEVELS})")
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_fma_levels_agree_bitwise(op):
    shape = (3, 20002)
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        gen = seeded(op.name, str(dtype))
        for kwargs in op.cases_for(shape):
            x = make_input(shape, dtype, "cpu", generator=gen)
            params = op.make_params(shape, dtype, "cpu", True)
            results = {}
            for level in FMA_LEVELS:
                with glo_kernels.use_backend("cpu"), glo_kernels.use_cpu_capability(level):
                    xo = x.clone().requires_grad_()
                    po = [p.clone().requires_grad_() for p in params]
                    y = op.fn(xo, *po, **kwargs)
                    dy = make_input(y.shape, dtype, "cpu", specials=False, generator=seeded(op.name, str(dtype), 1))
                    results[level] = [y.detach(), *torch.autograd.grad(y, [xo, *po], dy)]
            first = results[FMA_LEVELS[0]]
            for level in FMA_LEVELS[1:]:
                for name, a, b in zip(["y", "dx", *op.param_names], first, results[level]):
                    exempt = op.name in ERF_GELU and dtype != torch.float64 and kwargs.get("approximate", "none") == "none"
                    assert exempt or _same_bits(a, b), (
                        f"{op.name}{kwargs} {dtype} {name}: {FMA_LEVELS[0]} and {level} differ")


@pytest.mark.skipif(len(FMA_LEVELS) < 2, reason=f"this CPU runs fewer than two levels with FMA ({LEVELS})")
def test_fma_levels_agree_bitwise_softmax():
    gen = seeded("softmax levels")
    for dtype in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        x = make_input((5, 9001), dtype, "cpu", generator=gen)
        t = make_input((5, 9001), dtype, "cpu", specials=False, generator=gen)
        results = {}
        for level in FMA_LEVELS:
            with glo_kernels.use_backend("cpu"), glo_kernels.use_cpu_capability(level):
                xs = x.clone().requires_grad_()
                outs = [glo_kernels.softmax(xs, dim=-1, temperature=0.7), glo_kernels.log_softmax(xs, dim=0),
                        glo_kernels.grouped_softmax(xs, [4000, 5001], dim=-1),
                        glo_kernels.distillation_loss(xs, t, temperature=2.0)]
                grads = torch.autograd.grad(sum(o.float().nan_to_num().sum() for o in outs), xs)
                results[level] = [o.detach() for o in outs] + list(grads)
        for level in FMA_LEVELS[1:]:
            for i, (a, b) in enumerate(zip(results[FMA_LEVELS[0]], results[level])):
                assert _same_bits(a, b), f"softmax family output {i}, {dtype}: {FMA_LEVELS[0]} and {level} differ"


# Instructions a baseline x86-64 CPU lacks: VEX / EVEX encodings (AVX and up: every mnemonic starting with v, and the
# ymm / zmm / mask registers) and the BMI / LZCNT / MOVBE instructions of x86-64-v3.
_ABOVE_BASELINE = re.compile(r"%[yz]mm\d|%k[0-7]\b")
_V3_SCALAR = {"andn", "bextr", "blsi", "blsmsk", "blsr", "bzhi", "mulx", "pdep", "pext", "rorx", "sarx", "shlx", "shrx",
              "lzcnt", "tzcnt", "movbe"}
_LEVEL_TAGS = ("isa_avx2", "isa_avx512")


@pytest.mark.skipif(not X86, reason="the check reads x86-64 machine code")
@pytest.mark.skipif(shutil.which("objdump") is None or shutil.which("nm") is None,
                    reason="objdump and nm (binutils) are not installed")
def test_code_outside_the_levels_runs_on_any_x86_64():
    """The default level's code, torch's and the standard library's inline functions (one copy kept per library:
    setup.py links the default level first) and every static initializer use baseline instructions only. Local
    functions of a level's file (its clones, `static` helpers) are entered from that level only."""
    lib = glo_kernels._C.__file__
    binding = {}
    for line in subprocess.run(["nm", "--defined-only", lib], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            binding[int(parts[0], 16)] = parts[1]
    dis = subprocess.run(["objdump", "-d", "-C", "--no-show-raw-insn", lib], capture_output=True, text=True,
                         check=True).stdout
    bad, functions, shared = {}, 0, 0
    wide = {"isa_avx2": set(), "isa_avx512": set()}  # level functions using ymm / zmm registers (the control)
    name = None
    for line in dis.splitlines():
        m = re.match(r"^([0-9a-f]+) <(.*)>:$", line)
        if m:
            name = m.group(2)
            functions += 1
            level = next((tag for tag in _LEVEL_TAGS if tag in name), None)
            kind = binding.get(int(m.group(1), 16), "t")
            initializer = name.startswith(("_GLOBAL__sub_I", "__static_initialization_and_destruction"))
            # global / weak functions (the linker kept one copy) without a level in their name, and initializers
            checked = (kind in "TWVi" and level is None) or initializer
            shared += checked
            continue
        if name is None or "\t" not in line:
            continue
        ins = line.split("\t", 1)[1].strip()
        if level is not None:
            if re.search(r"%ymm" if level == "isa_avx2" else r"%zmm", ins):
                wide[level].add(name)
            continue
        if not checked:
            continue
        mnemonic = ins.split()[0] if ins else ""
        if mnemonic.startswith("v") or mnemonic in _V3_SCALAR or _ABOVE_BASELINE.search(ins):
            bad.setdefault(name, ins)
    assert functions > 1000 and shared > 100, (functions, shared)
    for level in _LEVEL_TAGS:  # x86-64 builds hold both levels, with their flags, and this reading of the code sees them
        assert len(wide[level]) > 10, f"no {level} function uses its vector registers"
    assert not bad, "code that a baseline x86-64 CPU cannot run, outside the avx2 / avx512 levels:\n" + "\n".join(
        f"  {k[:160]}: {v}" for k, v in list(bad.items())[:20])

