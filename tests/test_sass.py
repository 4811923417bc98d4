"""Static performance check of the CUDA kernels (bench/sass_report.py): what ptxas made of them for sm_90.

No GPU needed: the sm_90 SASS inside the built extension is read with cuobjdump / nvdisasm (seconds, no compile). The
build tests skip, with the reason, when the extension holds no CUDA code or the tools are missing. The parser tests run
everywhere, on a hand-written SASS snippet.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench import sass_report as sr  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
# The parser, on a snippet shaped like nvdisasm's output (independent of the build)
# ---------------------------------------------------------------------------------------------------------------
SNIPPET = """
\t.text.kern:
kern:
        /*0000*/                   LDC R1, c[0x0][0x28] ;
        /*0010*/                   I2F.U32.RP R0, UR6 ;
        /*0020*/                   MUFU.RCP R0, R0 ;
.L_x_1:
        /*0030*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0040*/                   FMUL R4, R4, 2 ;
        /*0050*/              @!P0 BRA `(.L_x_2) ;
        /*0060*/                   CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;
.L_x_2:
        /*0070*/                   STG.E.128 desc[UR4][R8.64], R4 ;
        /*0080*/                   MEMBAR.ALL.GPU ;
        /*0090*/                   STG.E desc[UR4][R10.64], R4 ;
        /*00a0*/                   STG.E desc[UR4][R10.64+0x4], R5 ;
        /*00b0*/                   ISETP.GE.AND P1, PT, R2, R3, PT ;
        /*00c0*/              @!P1 BRA `(.L_x_1) ;
        /*00d0*/                   FCHK P0, R4, R5 ;
        /*00e0*/                   EXIT ;
.L_x_3:
        /*00f0*/                   BRA `(.L_x_3) ;
        .weak           $__internal_0_$__cuda_sm20_div_s64
$__internal_0_$__cuda_sm20_div_s64:
        /*0100*/                   STL [R1], R4 ;
        /*0110*/                   RET.REL.NODEC R0 `(kern) ;
"""


def test_parser_finds_the_loop_and_its_contents():
    funcs = sr.parse_nvdisasm(SNIPPET)
    assert set(funcs) == {"kern", "$__internal_0_$__cuda_sm20_div_s64"}
    fn = funcs["kern"]
    assert fn.labels == {".L_x_1": 0x30, ".L_x_2": 0x70, ".L_x_3": 0xF0}
    loops = sr.find_loops(fn)
    # The backward branch at 0xc0 closes the loop 0x30..0xc0 (10 instructions); 0xf0 branches to itself.
    main = [lp for lp in loops if lp.start == 0x30]
    assert len(main) == 1 and main[0].end == 0xC0 and main[0].count == 10
    body = main[0].body
    # float32: one 128-bit store = 4 elements, plus the two 4-byte stores = 1 each.
    assert sr.elements_per_iteration(body, 4, "st") == 6
    # bfloat16: only the 128-bit store counts (4-byte stores are not of the element size): 8 elements.
    assert sr.elements_per_iteration(body, 2, "st") == 8
    assert sr.elements_per_iteration(body, 2, "ld") == 8
    # The two 4-byte stores share R10 at offsets 0 and 4: a split vector for float32, not for bfloat16.
    assert sr.split_accesses(body, 4) == 2
    assert sr.split_accesses(body, 2) == 0
    calls = [c for c in sr._calls(fn)]
    assert calls == ["$__internal_0_$__cuda_sm20_div_s64"]
    assert sr.int_divisions(body, calls) == 1  # the call; the inline I2F.U32.RP lies before the loop
    assert sr.int_divisions(fn.instrs, calls) == 2
    assert sr.float_divides(body, []) == 0 and sr.float_divides(fn.instrs, []) == 1
    assert sum(1 for x in body if sr._is_barrier(x.op)) == 1


def test_parser_widths_and_res_usage():
    assert sr.mem_width("LDG.E.128.CONSTANT") == 16
    assert sr.mem_width("STG.E.U16") == 2
    assert sr.mem_width("LDG.E.64") == 8
    assert sr.mem_width("LDG.E") == 4
    res = sr.parse_res_usage(
        " Function _Z1kPf:\n  REG:40 STACK:8 SHARED:1056 LOCAL:8 CONSTANT[0]:625 TEXTURE:0 SURFACE:0 SAMPLER:0\n")
    assert list(res) == ["_Z1kPf"]
    assert {k: res["_Z1kPf"][k] for k in ("REG", "STACK", "SHARED", "LOCAL")} == {
        "REG": 40, "STACK": 8, "SHARED": 1056, "LOCAL": 8}


def test_budget_formula():
    # 132 SMs x 4 schedulers x 32 lanes x 1.755 GHz over 3.0e12 B/s: 9.88 instructions per byte moved.
    assert sr.ISSUE_RATE == pytest.approx(2.965e13, rel=1e-3)
    assert sr.budget(4) == pytest.approx(39.5, abs=0.1)  # bfloat16 forward: read 2 B, write 2 B
    assert sr.budget(8) == pytest.approx(79.1, abs=0.1)  # float32 forward
    assert sr.budget(12) == pytest.approx(118.6, abs=0.1)  # float32 backward


def test_template_split():
    fam, tmpl = sr._split_template(
        "void glo::(anonymous namespace)::channel_forward_kernel<c10::BFloat16, glo::PELU<float> >"
        "(c10::BFloat16 const*, long)")
    assert fam == "channel_forward_kernel" and tmpl == "c10::BFloat16, glo::PELU<float>"
    assert sr._kernel_dtype(fam, tmpl) == "bfloat16"
    # glo's inline namespace of the CPU level (glo/isa.h) does not enter the name
    assert sr._split_template("void glo::isa_default::(anonymous namespace)::channel_forward_kernel<c10::BFloat16, "
                              "glo::isa_default::PELU<float> >(c10::BFloat16 const*, long)") == (fam, tmpl)
    assert sr._kernel_dtype("softmax_rows_backward_kernel", "float, c10::Half, 2") == "float16"
    assert sr._kernel_dtype("x", "double, double") == "float64"


# ---------------------------------------------------------------------------------------------------------------
# The built extension
# ---------------------------------------------------------------------------------------------------------------
def _extension_status():
    so = os.environ.get("GLO_SASS_SO") or sr.find_extension()  # GLO_SASS_SO: check another build (a .so or .o)
    if so is None:
        return None, "glo_kernels/_C*.so not built"
    cuobjdump, nvdisasm = sr.find_tool("cuobjdump"), sr.find_tool("nvdisasm")
    if cuobjdump is None or nvdisasm is None:
        return None, "cuobjdump / nvdisasm not found (PATH, the Triton wheel, CUDA_HOME)"
    listing = subprocess.run([cuobjdump, "-lelf", so], capture_output=True, text=True).stdout
    if ".sm_90.cubin" not in listing:
        return None, f"{os.path.basename(so)} holds no sm_90 code (built without CUDA, or without 9.0 in the arch list)"
    return so, ""


@pytest.fixture(scope="module")
def kernels():
    so, why = _extension_status()
    if so is None:
        pytest.skip(f"static SASS check: {why}")
    return sr.analyse(so)


def _main(ks):
    """The main instantiations: not float64, not the fallbacks for rows that are not whole vectors (sr.scalar_fallback)."""
    return [k for k in ks if k.dtype != "float64" and not sr.scalar_fallback(k.family, k.template)]


def _name(k):
    return f"{k.family}<{k.template}>"


# Kernels predicted over the 50% margin, each with its reason. The strict xfail below turns into a failure when one
# of them gets within the margin, so that it leaves this list. (The 16-bit ELU, sigmoid and PELU kernels left it when
# they took the fast16 device math of csrc/include/glo/activations.h: expm1 and sigmoid's reciprocal.)
OVER_MARGIN = {
    ("channel_backward_rows_kernel", "PELU", "bfloat16"): "the terms' pass through shared memory (about 6 "
    "instructions per element over the plane kernel's 29) and expf per element",
    ("channel_backward_rows_kernel", "PELU", "float16"): "the terms' pass through shared memory (about 6 "
    "instructions per element over the plane kernel's 28) and expf per element",
    **{(f"unary_{d}_kernel", op, dt): {
        "GELU": "the erf form without erf: a polynomial of degree 6 (16-bit) or 10 (float32, and degree 5 near 0), "
                "two reciprocals and an exp per element",
        "GELUTanh": "z = k1 x + k3 x^3 (in float32 as hi + lo, six FMAs more), an exp and a reciprocal per element"}[op]
       for op, d, dt in (("GELU", "forward", "bfloat16"), ("GELU", "forward", "float16"), ("GELU", "forward", "float32"),
                         ("GELU", "backward", "bfloat16"), ("GELU", "backward", "float16"),
                         ("GELU", "backward", "float32"),
                         ("GELUTanh", "forward", "bfloat16"), ("GELUTanh", "forward", "float16"),
                         ("GELUTanh", "forward", "float32"), ("GELUTanh", "backward", "bfloat16"),
                         ("GELUTanh", "backward", "float16"), ("GELUTanh", "backward", "float32"))},
    **{("unary_forward_kernel", "Softplus", dt): "an exp and a log1p (a polynomial of degree 8 in float32) per element"
       for dt in ("bfloat16", "float16", "float32")},
    # GeGLU: GELU's math per element of y, on a budget of 3 bytes moved per byte of y (the unary kernels': 2)
    **{(f"gated_{d}_kernel", op, dt): f"GeGLU: GELU's {'tanh form' if op == 'GELUTanh' else 'erf form'} per element"
       for op, d, dt in (("GELU", "forward", "bfloat16"), ("GELU", "forward", "float16"), ("GELU", "forward", "float32"),
                         ("GELU", "backward", "bfloat16"), ("GELU", "backward", "float16"),
                         ("GELUTanh", "forward", "float32"))},
    # bias_gelu: GELU's math per element through the per-channel kernels (a bias constant per element; the backward's
    # per-tile sums of the bias gradient)
    **{(fam, op, dt): f"bias_gelu: GELU's {'tanh form' if op == 'GELUTanh' else 'erf form'} per element, plus the bias"
       for fam in ("channel_forward_kernel", "channel_inner_forward_kernel", "channel_backward_plane_kernel",
                   "channel_backward_rows_kernel")
       for op in ("GELU", "GELUTanh") for dt in ("bfloat16", "float16", "float32")},
}


def _known(k):
    for (fam, op, dt), why in OVER_MARGIN.items():
        if k.family == fam and f"glo::{op}<" in k.template and k.dtype == dt:
            return why
    return None


def test_every_kernel_family_found(kernels):
    fams = {k.family for k in kernels}
    for fam in sr.FAMILIES:
        assert fam in fams, f"no {fam} in the sm_90 SASS"
    assert any(k.family.startswith("softmax") for k in kernels)


def _spills(k):
    # Spilled registers go to local memory: LOCAL bytes, or STL / LDL to the stack frame (STACK > 0, LOCAL 0).
    return k.local > 0 or k.stl_ldl > 0


def test_no_spills(kernels):
    bad = [f"{_name(k)}: LOCAL {k.local} B, STACK {k.stack} B, {k.stl_ldl} STL/LDL" for k in kernels
           if k.dtype != "float64" and _spills(k)]
    assert bad == []


def test_vector_paths_are_128_bit(kernels):
    bad = []
    for k in _main(kernels):
        if k.family not in sr.VECTOR_FAMILIES:
            continue
        if k.ldg128 == 0 or k.stg128 == 0:
            bad.append(f"{_name(k)}: {k.ldg128} LDG.128, {k.stg128} STG.128")
        if k.split_in_vec:
            bad.append(f"{_name(k)}: {k.split_in_vec} scalar accesses split from a vector")
    assert bad == []


def test_channel_backward_has_vector_instantiations(kernels):
    # Each (dtype, op) of the channel backward kernels has its 128-bit instantiation beside the scalar fallback.
    for fam in ("channel_backward_plane_kernel", "channel_backward_rows_kernel"):
        ks = [k for k in kernels if k.family == fam]
        scalar = {k.template.rsplit(",", 1)[0] for k in ks if k.template.endswith(", 1")}
        vector = {k.template.rsplit(",", 1)[0] for k in ks if not k.template.endswith(", 1")}
        assert scalar and scalar == vector, (fam, scalar ^ vector)


def test_no_division_in_main_loops(kernels):
    bad = [f"{_name(k)}: {k.int_div_loop} integer divisions in the main loop" for k in _main(kernels)
           if k.family in sr.FAMILIES and k.int_div_loop]
    bad += [f"{_name(k)}: {k.fdiv_loop} IEEE divides in the main loop" for k in _main(kernels)
            if "PELU" in k.template and k.fdiv_loop]
    assert bad == []


def test_main_loops_within_budget(kernels):
    ks = [k for k in _main(kernels) if k.family in sr.FAMILIES and k.dtype in ("float32", "bfloat16", "float16")]
    missing = [_name(k) for k in ks if k.ipe is None]
    assert missing == [], "no main loop found"
    bad = [f"{_name(k)} {k.dtype}: {k.ipe:.1f} instr/el, {k.pct_budget:.0f}% of {k.budget:.1f}" for k in ks
           if k.pct_budget > 100 * sr.MARGIN and _known(k) is None]
    assert bad == []
    # The known exceptions still fit the whole budget (no margin): predicted bound by memory only when the
    # schedulers issue nearly every clock.
    over = [f"{_name(k)}: {k.pct_budget:.0f}%" for k in ks if _known(k) is not None and k.pct_budget > 100]
    assert over == []


@pytest.mark.xfail(strict=True, reason="predicted over the 50% margin (see OVER_MARGIN): " +
                   "; ".join(f"{f} {o} {d}: {w}" for (f, o, d), w in OVER_MARGIN.items()))
def test_known_over_margin(kernels):
    ks = [k for k in _main(kernels) if k.family in sr.FAMILIES and _known(k) is not None]
    assert ks, "none of OVER_MARGIN's kernels found"
    assert all(k.pct_budget <= 100 * sr.MARGIN for k in ks)


def _softmax(kernels, clusters):
    return [k for k in kernels if (k.family.startswith("softmax") or k.family.startswith("distill"))
            and (k.cluster_barriers > 0) == clusters]


def test_no_full_barrier_in_softmax_row_loops(kernels):
    bad = [f"{_name(k)}: {k.barriers_in_loop}" for k in _softmax(kernels, clusters=False) if k.barriers_in_loop]
    assert bad == []


def test_no_memory_barrier_in_softmax_row_loops_with_mbarrier_exchange(kernels):
    """The mbarrier exchange's row loops have no MEMBAR (they keep one L1 invalidate, CCTL.IVALL, per exchange: the
    cluster-scope acquire of the mbarrier wait); the exchange kernels exist for every dtype."""
    ks = [k for k in _softmax(kernels, clusters=True) if sr._xchg(k) == 1]
    assert {k.dtype for k in ks} >= {"float32", "bfloat16", "float16"}
    assert [f"{_name(k)}: {k.membar_in_loop}" for k in ks if k.membar_in_loop] == []


def test_cluster_sync_exchange_is_the_one_with_memory_barriers(kernels):
    """The kernels of the non-default exchange (GLO_SOFTMAX_EXCHANGE=sync) are the ones with MEMBAR.ALL.GPU in their
    row loops (cluster.sync), which is why the mbarrier exchange is the default: the parser sees them."""
    ks = [k for k in _softmax(kernels, clusters=True) if sr._xchg(k) == 0]
    assert ks and all(k.membar_in_loop for k in ks if k.family.startswith("softmax_rows"))


def test_softmax_strided_tiles_are_128_bit(kernels):
    """Softmax along a strided dim reads its tile with 16-byte copies (cp.async: LDGSTS.128) for every dtype pair, and
    writes 16 bytes per store where a chunk's outputs take 16 bytes (the same dtype in and out)."""
    ks = [k for k in kernels if k.family in ("softmax_tiles_forward_kernel", "softmax_tiles_backward_kernel")]
    assert {(k.family, k.dtype) for k in ks} >= {(f, d) for f in ("softmax_tiles_forward_kernel",
                                                                  "softmax_tiles_backward_kernel")
                                                 for d in ("float32", "bfloat16", "float16")}
    bad = [f"{_name(k)}: {k.ldg128} LDG.128" for k in ks if k.ldg128 == 0]
    same = [k for k in ks if len({t.strip() for t in k.template.split(",")}) == 1]
    assert same
    bad += [f"{_name(k)}: {k.stg128} STG.128" for k in same if k.stg128 == 0]
    assert bad == []
