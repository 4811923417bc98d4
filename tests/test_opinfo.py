"""PyTorch's own OpInfo test inputs as a peer suite (issue 12, part 4).

The OpInfos of ``torch.testing._internal.common_methods_invocations.op_db`` for the ops glo_kernels mirrors give the
inputs: every sample of ``reference_inputs`` (it yields the ``sample_inputs`` first, and is ``sample_inputs`` itself
for an OpInfo without reference inputs: test_reference_inputs_start_with_sample_inputs holds torch to that) and every
``error_inputs`` sample. A sample (input, args, kwargs) is bound by name to torch's signature and each argument renamed
to ours (Mirror.args); an argument our API lacks fails the mapping (UnmappedArgument): none is dropped.

On every backend that runs here (the ``backend`` fixture; Triton under its interpreter on a spread subset of small
samples), for every dtype the OpInfo supports on the CPU that glo_kernels supports:
- forward: relu, leaky_relu, prelu bit for bit equal to torch (values, sign of zero, NaN positions); the others
  against float64 on the same rounded inputs, within a derived error bound (helpers.assert_matches_reference);
- backward: the input gradient (bit for bit equal to torch's for the exact ops) and PReLU's weight gradient against
  float64;
- double backward of the element-wise ops against float64 (reference inputs hold huge values: 1e20, 13437.7);
- gradcheck and gradgradcheck in float64 on small samples;
- error inputs raise; dtypes an OpInfo supports and glo_kernels does not (integers, bool, complex) are refused.

Inputs come from op_db's generators with torch's global RNG, which tests/conftest.py seeds per test from the run's seed
(fresh every run; GLO_TEST_SEED=<seed> replays). Samples past LARGE elements are cut to a same-strided view of their
first rows (time). Bounds use helpers.EPS (>= 2 unit roundoffs: "one rounding" is EPS / 2) and the op table's ulps
(glo_kernels._registry, OpSpec.ulps), each derived where it is defined.

The in-place sigmoid / tanh (torch's sigmoid_, tanh_) and softmax / log_softmax dtype= (the with_dtype OpInfos) have
their own delimited part of the mirror table. KNOWN_BUGS lists the parametrizations expected to fail (strict: an
unexpected pass fails), each with its reason. torch.testing._internal needs the package expecttest.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable

import hypothesis
import pytest
import torch
from conftest import DTYPES
from helpers import EPS, assert_matches_reference


def _import_op_db():
    """torch's op_db, importing torch.testing._internal without its global side effects on the rest of the session:
    common_utils freezes torch.backends flags (disable_global_flags) and loads its own default hypothesis profile."""
    flags_frozen = torch.backends.flags_frozen()
    hypothesis_default = hypothesis.settings.default
    from torch.testing._internal.common_methods_invocations import op_db
    from torch.testing._internal.opinfo.core import SampleInput

    if not flags_frozen:
        # (the flag disable_global_flags cleared: a global of the module torch.backends' functions live in)
        torch.backends.flags_frozen.__globals__["__allow_nonbracketed_mutation_flag"] = True
    hypothesis.settings.register_profile("glo_kernels_session_default", hypothesis_default)
    hypothesis.settings.load_profile("glo_kernels_session_default")
    return op_db, SampleInput


op_db, SampleInput = _import_op_db()

import glo_kernels
from glo_kernels import reference
from glo_kernels._registry import ALL_OPS_BY_NAME
from op_db import UNARY
from glo_kernels._layout import channel_view_shape, reduce_to_param

SIXTEEN = (torch.float16, torch.bfloat16)
# Unit roundoff of each dtype; helpers.EPS is at least twice it.
U = {torch.float64: 2.0**-53, torch.float32: 2.0**-24, torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
assert all(EPS[d] >= 2 * U[d] for d in U)
# First-order error bounds times 1.1 cover their second-order terms (the softmax rows here are <= 10 long: n u < 1e-5).
SLACK = 1.1

# Samples past LARGE elements (reference inputs: 1029 x 917 and a transposed 1024 x 1024, contiguous and strided) are
# cut to their first rows, a view with the same strides, keeping LARGE elements at most: the file's time budget.
LARGE = 16384
# Triton runs under its interpreter (numpy, one program at a time) on CPU tensors: a spread subset of small samples.
# Its ReLU / Leaky ReLU kernels that pack the bit mask for backward take ~0.5 s a call there, whatever the size: the
# backward tests of those ops run their first sample only.
MASK_OPS = ("relu", "leaky_relu")
TRITON_MAX_NUMEL = 16384
TRITON_MAX_SAMPLES = 2
# gradcheck / gradgradcheck: the first few finite, moderate samples, cut to GRADCHECK_MAX_NUMEL elements (as LARGE)
GRADCHECK_MAX_NUMEL = 50
GRADCHECK_SAMPLES = 2
GRADCHECK_SAMPLES_TRITON = 1



# ---------------------------------------------------------------------------------------------------------------
# The mirror table: which OpInfo maps to which glo_kernels call
# ---------------------------------------------------------------------------------------------------------------
# torch's signatures, to bind a sample's args and kwargs by name (the OpInfo's op or inplace_variant)
def _sig_relu(input, inplace=False): ...  # torch.nn.functional.relu
def _sig_leaky_relu(input, negative_slope=0.01, inplace=False): ...  # torch.nn.functional.leaky_relu
def _sig_leaky_relu_(x, negative_slope=0.01): ...  # OpInfo inplace_variant: F.leaky_relu(x, negative_slope, inplace=True)
def _sig_prelu(input, weight): ...  # torch.nn.functional.prelu
def _sig_elu(input, alpha=1.0, inplace=False): ...  # torch.nn.functional.elu
def _sig_elu_(x, alpha=1.0): ...  # OpInfo inplace_variant: F.elu(x, alpha, inplace=True)
def _sig_unary(input, *, out=None): ...  # torch.sigmoid, torch.tanh
def _sig_unary_(self): ...  # Tensor.sigmoid_, Tensor.tanh_
def _sig_functional_unary(input, inplace=False): ...  # torch.nn.functional.silu, ...
def _sig_functional_unary_(x): ...  # their OpInfos' inplace_variant: F.silu(x, inplace=True)
def _sig_softmax(input, dim, dtype=None, *, out=None): ...  # torch.softmax, torch.log_softmax
def _sig_gelu(input, approximate="none"): ...  # torch.nn.functional.gelu (UnarySpec.choice)
def _sig_softplus(input, beta=1.0, threshold=20.0): ...  # torch.nn.functional.softplus


@dataclasses.dataclass(frozen=True)
class Mirror:
    """An OpInfo (name, variant) and the glo_kernels function that mirrors its op (or its in-place variant)."""

    opinfo: str
    variant: str
    ours: str  # glo_kernels.<ours>
    signature: Callable  # torch's signature, first parameter the input
    args: dict  # torch argument name -> glo_kernels argument name
    inplace: bool = False  # the OpInfo's inplace_variant, ours called with inplace=True

    @property
    def spec(self):
        return ALL_OPS_BY_NAME[self.ours]

    @property
    def id(self):
        return self.ours + ("_" if self.inplace else "") + (f".{self.variant}" if self.variant else "")

    @property
    def row_op(self):  # softmax / log_softmax
        return self.spec.family == "softmax"

    @property
    def log(self):
        return self.ours == "log_softmax"


_SOFTMAX_ARGS = {"dim": "dim", "dtype": "dtype"}
MIRRORS = (
    Mirror("nn.functional.relu", "", "relu", _sig_relu, {"inplace": "inplace"}),
    Mirror("nn.functional.leaky_relu", "", "leaky_relu", _sig_leaky_relu,
           {"negative_slope": "negative_slope", "inplace": "inplace"}),
    Mirror("nn.functional.leaky_relu", "", "leaky_relu", _sig_leaky_relu_, {"negative_slope": "negative_slope"},
           inplace=True),
    Mirror("nn.functional.prelu", "", "prelu", _sig_prelu, {"weight": "weight"}),
    Mirror("nn.functional.elu", "", "elu", _sig_elu, {"alpha": "alpha", "inplace": "inplace"}),
    Mirror("nn.functional.elu", "", "elu", _sig_elu_, {"alpha": "alpha"}, inplace=True),
    Mirror("nn.functional.softplus", "", "softplus", _sig_softplus, {"beta": "beta", "threshold": "threshold"}),
    Mirror("softmax", "", "softmax", _sig_softmax, _SOFTMAX_ARGS),
    Mirror("log_softmax", "", "log_softmax", _sig_softmax, _SOFTMAX_ARGS),
    # ---- (branch features, merged) softmax / log_softmax dtype= ----
    Mirror("softmax", "with_dtype", "softmax", _sig_softmax, _SOFTMAX_ARGS),
    Mirror("log_softmax", "with_dtype", "log_softmax", _sig_softmax, _SOFTMAX_ARGS),
)


def _find_opinfo(name, variant):
    found = [op for op in op_db if op.name == name and op.variant_test_name == variant]
    assert len(found) == 1, f"op_db has {len(found)} OpInfos named {name!r} (variant {variant!r})"
    return found[0]


def _unary_mirrors(spec) -> tuple:
    """The OpInfo of an op of the unary family (UnarySpec.opinfo), out of place and, where the OpInfo has an in-place
    variant (nn.functional.hardswish has none), in place: torch.<name> and Tensor.<name>_, or
    torch.nn.functional.<name>(input, inplace=False)."""
    if spec.opinfo is None:
        return ()
    has_inplace = _find_opinfo(spec.opinfo, "").inplace_variant is not None
    if spec.choice is not None:  # (F.gelu: no in-place variant; its argument picks our kernel)
        assert not has_inplace and spec.choice[0] == "approximate", spec
        return (Mirror(spec.opinfo, "", spec.name, _sig_gelu, {"approximate": "approximate"}),)
    if spec.opinfo.startswith("nn.functional."):
        mirrors = (Mirror(spec.opinfo, "", spec.name, _sig_functional_unary, {"inplace": "inplace"}),
                   Mirror(spec.opinfo, "", spec.name, _sig_functional_unary_, {}, inplace=True))
    else:
        mirrors = (Mirror(spec.opinfo, "", spec.name, _sig_unary, {}),
                   Mirror(spec.opinfo, "", spec.name, _sig_unary_, {}, inplace=True))
    return mirrors if has_inplace else mirrors[:1]


MIRRORS = MIRRORS + tuple(m for spec in UNARY for m in _unary_mirrors(spec))


OPINFOS = {(m.opinfo, m.variant): _find_opinfo(m.opinfo, m.variant) for m in MIRRORS}
for _m in MIRRORS:
    assert not _m.inplace or OPINFOS[_m.opinfo, _m.variant].inplace_variant is not None, _m


def _opinfo(m):
    return OPINFOS[m.opinfo, m.variant]


def _torch_fn(m):
    op = _opinfo(m)
    return op.inplace_variant if m.inplace else op.op


def _float64_fn(m):
    """The float64 ground truth of mirror m: torch's op (out of place), except for the unary family, whose truth is
    glo_kernels.reference: torch's twin, or the twin's formula where torch's float64 is off (hardsigmoid's gradient
    multiplies by the float32 1/6, and torch has no double backward of it; hardswish's scalar loop passes dy at NaN)."""
    if m.spec.unary is not None:
        spec = m.spec.unary

        def truth(x, *args, **kwargs):
            name = spec.name
            if spec.choice is not None:  # (F.gelu's approximate picks the formula)
                arg, default, values = spec.choice
                name = dict(values)[args[0] if args else kwargs.get(arg, default)]
            return getattr(reference, name)(x)

        return truth
    return _opinfo(m).op


def _second_order_or_none(*args, **kwargs):
    """_second_order of torch in the dtype (the error baseline), or None where torch has no double backward."""
    try:
        return _second_order(*args, **kwargs)
    except RuntimeError as e:
        if "is not implemented" not in str(e):
            raise
        return None, None, None


class UnmappedArgument(TypeError):
    """An OpInfo sample passes an argument that the glo_kernels call has no counterpart for."""


def _our_call(m, x, args, kwargs):
    """glo_kernels.<op> for a sample: each argument bound by name to torch's signature and renamed to ours."""
    bound = inspect.signature(m.signature).bind(x, *args, **kwargs)
    ours = {}
    for name, value in list(bound.arguments.items())[1:]:
        if name not in m.args:
            raise UnmappedArgument(f"{m.id}: OpInfo sample argument {name}={value!r} has no glo_kernels.{m.ours} "
                                   "counterpart")
        ours[m.args[name]] = value
    if m.inplace:
        ours["inplace"] = True
    return getattr(glo_kernels, m.ours)(x, **ours)


def _map_tensors(s, fn):
    """(args, kwargs) of sample s with fn applied to each tensor among them (PReLU's weight)."""
    f = lambda v: fn(v) if isinstance(v, torch.Tensor) else v
    return tuple(f(a) for a in s.args), {k: f(v) for k, v in s.kwargs.items()}


def _params(args, kwargs):
    return [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]


# ---------------------------------------------------------------------------------------------------------------
# Samples, layouts, comparisons
# ---------------------------------------------------------------------------------------------------------------
def _samples(m, dtype, backend, grad=False):
    """The OpInfo's reference inputs (sample inputs first), drawn with the test's seeded global RNG (set_seed=False:
    torch's iterator would reseed to a constant before every sample). Triton under the interpreter: a spread subset
    (for `grad` tests of the mask ops, the first sample)."""
    name, device = backend
    samples = [_cut(s) for s in _opinfo(m).reference_inputs(device, dtype, set_seed=False)]
    assert samples, f"{m.id}: no samples for {dtype}"
    if name == "triton" and device == "cpu":
        if grad and m.ours in MASK_OPS:
            return samples[:1]
        small = [s for s in samples if s.input.numel() <= TRITON_MAX_NUMEL]
        # the first sample input, then a spread of the others (reference inputs: special values, layouts)
        head, rest = small[:1], small[1:]
        step = max(1, -(-len(rest) // (TRITON_MAX_SAMPLES - 1)))
        samples = head + rest[step // 2::step][: TRITON_MAX_SAMPLES - 1]
    return samples


def _special(t) -> bool:
    """Whether t holds a value where second-order gradients have their conventions or overflow: 0, inf, NaN, |x| > 80
    (exp overflows float32 from 88.7, float16 from 11.1)."""
    t = t.detach()
    return bool(((t == 0) | ~torch.isfinite(t) | (t.abs() > 80) | ((t.abs() > 11) & (t.dtype == torch.float16))).any())


def _cut(s, limit=LARGE):
    x = s.input
    if x.numel() <= limit:
        return s
    rows = max(1, limit // (x.numel() // x.shape[0]))
    return SampleInput(x[:rows], args=s.args, kwargs=s.kwargs)


def _describe(i, s):
    x = s.input
    args = [f"tensor{tuple(a.shape)}" if isinstance(a, torch.Tensor) else repr(a) for a in s.args]
    kwargs = [f"{k}=" + (f"tensor{tuple(v.shape)}" if isinstance(v, torch.Tensor) else repr(v)) for k, v in
              s.kwargs.items()]
    return f"sample {i}: x{tuple(x.shape)} stride {x.stride()} {', '.join(args + kwargs)}"


def _copy(t):
    """An independent tensor with t's values, sizes, strides and storage offset (overlapping layouts included)."""
    t = t.detach()
    if t.numel() == 0:
        return t.clone()
    extent = t.storage_offset() + sum((n - 1) * st for n, st in zip(t.shape, t.stride())) + 1
    flat = t.as_strided((extent,), (1,), 0).clone()
    return flat.as_strided(t.shape, t.stride(), t.storage_offset())


def _overlapping(t) -> bool:
    """Whether two elements of t share memory (expanded and some as_strided samples)."""
    if t.numel() <= 1 or t.is_contiguous():
        return False
    dims = sorted((st, n) for n, st in zip(t.shape, t.stride()) if n > 1)
    reach = 0  # largest offset reachable with the smaller strides: a larger stride that exceeds it never collides
    for st, n in dims:
        if st <= reach:
            break
        reach += (n - 1) * st
    else:
        return False
    offsets = torch.zeros((), dtype=torch.int64)
    for n, st in zip(t.shape, t.stride()):
        offsets = offsets.unsqueeze(-1) + torch.arange(n) * st
    return offsets.unique().numel() != t.numel()


_BITS = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
         torch.float16: torch.int16}


def _assert_bitwise(ours, theirs, what):
    """Same shape, dtype, NaN positions, and bits elsewhere (the sign of zero included; a NaN's payload is free)."""
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != {theirs.dtype}"
    ours, theirs = ours.detach().contiguous(), theirs.detach().contiguous()
    nan_o, nan_t = torch.isnan(ours), torch.isnan(theirs)
    assert torch.equal(nan_o, nan_t), f"{what}: NaN at {torch.nonzero(nan_o != nan_t)[:5].tolist()} differs"
    bad = (ours.view(_BITS[ours.dtype]) != theirs.view(_BITS[theirs.dtype])) & ~nan_o
    if bad.any():
        i = tuple(torch.nonzero(bad)[0].tolist())
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.numel()} values differ in their bits; first at {i}: "
                             f"ours {ours[i].item()!r} vs torch {theirs[i].item()!r}")


def _gamma(n, u):
    """Bound of the relative error of n roundings in a row (Higham's gamma_n)."""
    assert n * u < 0.1, (n, u)  # (exact, not first order: needs no SLACK)
    return n * u / (1 - n * u)


def _zeros_if_none(g, like):
    return torch.zeros_like(like) if g is None else g


# ---------------------------------------------------------------------------------------------------------------
# Error bounds
# ---------------------------------------------------------------------------------------------------------------
def _compute_dtype(dtype):
    """16-bit inputs are computed in float32 (README)."""
    return torch.float32 if dtype in SIXTEEN else dtype


def _u(dtype):
    """Unit roundoff of the arithmetic for data of dtype, doubled in float64, where the float64 reference makes the
    same kinds of roundings as the op under test and a bound of their difference counts both (as tests/bounds.py)."""
    c = _compute_dtype(dtype)
    return U[c] * (2 if c == torch.float64 else 1)


def _pointwise_rel(m, dtype, extra=0.0):
    """Relative bound of an element-wise result: the op table's ulps (+ `extra` roundings' worth, in EPS) in
    float32/float64; in 16-bit a float32 result within that bound, rounded once: u16 + 2 * float32 bound."""
    ulps = m.spec.ulps + extra
    if dtype in SIXTEEN:
        return U[dtype] + 2 * ulps * EPS[torch.float32]
    return ulps * EPS[dtype]


def _eager(dtype, torch_result):
    """torch's own result as the error baseline (helpers: max(2 x its error, our bound)) for float32/float64. Not in
    16-bit: there the README's bound (a float32 result rounded once) is sharp, and a tensor-wide maximum of torch's
    error (one rounding) would hide a second rounding."""
    return None if dtype in SIXTEEN else torch_result


def _rows(t, dim):
    """t viewed with its softmax dim kept: 0-d as one row of one, and the dim index normalized."""
    return (t.reshape(1), 0) if t.dim() == 0 else (t, dim % t.dim())


def _softmax_forward_bound(m, x64, y64, dim, out_dtype):
    """Per element bound of softmax / log_softmax computed in the compute dtype, rounded to out_dtype.

    a = x - max(row), A = max |a| over the row, n = row length, u = _u(compute dtype), k = the op table's ulps in u
    (2 OpSpec.ulps: they count EPS, >= 2u):
    a rounds (and may round again when scaled by log2(e)) -> exp(a) off by 2u|a| relative, plus k ulps of its own;
    the row's sum (an online sum rescales partial sums: k + 2 roundings per term) is off by
    sigma = u (2A + k + (k + 2) n) relative. softmax: y off by u (2|a| + k + 1) + sigma relative (division
    included), then rounding. log_softmax: y = a - log(sum) off by u (2|a| + k |log sum| + |y|) + sigma, then rounding.
    Returns kwargs for assert_matches_reference and, for the backward, the relative (softmax) or absolute (log_softmax)
    bound of the saved output."""
    c = _compute_dtype(out_dtype)
    u, uo, k = _u(c), U[out_dtype], 2 * m.spec.ulps
    x, d = _rows(x64.detach(), dim)
    y = y64.detach().reshape(x.shape)
    n = x.shape[d]
    if x.numel() == 0:
        return {"rel": 0.0}, torch.zeros_like(y)
    a = x - x.amax(d, keepdim=True)
    big_a = a.abs().amax(d, keepdim=True)
    _gamma((k + 2) * n, u)
    sigma = u * (2 * big_a + k + (k + 2) * n)
    if not m.log:
        rho = SLACK * (u * (2 * a.abs() + k + 1) + sigma) + uo
        return {"rel": 0.0, "atol": (rho * y.abs()).reshape(y64.shape)}, rho
    log_sum = torch.logsumexp(a, d, keepdim=True)
    err = SLACK * (u * (2 * a.abs() + k * log_sum.abs() + y.abs()) + sigma) + uo * y.abs()
    return {"rel": 0.0, "atol": err.reshape(y64.shape)}, err


def _softmax_backward_bound(m, y64, dy64, fwd_err, dim, out_dtype, grad_dtype):
    """Per element bound of the input gradient computed from the saved output (off by fwd_err) and dy, in the compute
    dtype of out_dtype, rounded to grad_dtype.

    softmax, dx = y (dy - s), s = sum(dy y): s off by sum(|dy| y) (rho_max + gamma_(n+1)); then a subtraction and a
    product: |err| <= y [(rho + 2u) |dy - s| + (rho_max + gamma_(n+1)) sum(|dy| y)].
    log_softmax, dx = dy - exp(y) S, S = sum(dy): exp(y) off by E + (k + 1)u relative (the saved y's absolute error E,
    exp's ulps, the product), S by gamma_n sum|dy|, and the subtraction rounds: |err| <= p [(E + (k + 1)u)|S| +
    gamma_n sum|dy|] + u |dx|. Then rounding to grad_dtype (rel)."""
    c = _compute_dtype(out_dtype)
    u, k = _u(c), 2 * m.spec.ulps
    y, d = _rows(y64.detach(), dim)
    dy = dy64.detach().reshape(y.shape)
    n = y.shape[d]
    if y.numel() == 0:
        return {"rel": U[grad_dtype]}
    if not m.log:
        s = (dy * y).sum(d, keepdim=True)
        sabs = (dy.abs() * y).sum(d, keepdim=True)
        rho_max = fwd_err.amax(d, keepdim=True)
        err = y * ((fwd_err + 2 * u) * (dy - s).abs() + (rho_max + _gamma(n + 1, u)) * sabs)
    else:
        p = y.exp()
        s = dy.sum(d, keepdim=True)
        dx = dy - p * s
        err = p * ((fwd_err + (k + 1) * u) * s.abs() + _gamma(n, u) * dy.abs().sum(d, keepdim=True)) + u * dx.abs()
    return {"rel": U[grad_dtype], "atol": (SLACK * err).reshape(y64.shape)}


def _pointwise_grad_bound(m, dtype, y64, dy64):
    """Bound of an element-wise op's input gradient (helpers' rel and atol)."""
    if m.spec.exact:  # dy * slope: the slope's rounding to the compute dtype and the product's: <= 2u
        return {"rel": EPS[dtype]}
    fwd = _pointwise_rel(m, dtype)
    if m.ours == "elu" and not m.inplace:  # dy * alpha * exp(x) from the saved input: exp's ulps, two products
        return {"rel": _pointwise_rel(m, dtype, extra=1.0)}
    if m.ours == "elu":  # in place, from the output: dy * (y + alpha), the saved y off by fwd |y|
        return {"rel": _pointwise_rel(m, dtype, extra=1.0), "atol": SLACK * fwd * (y64.detach() * dy64).abs()}
    if m.spec.unary is not None and m.spec.unary.saved == "x":
        # the unary family from the saved input: dy * f'(x) with f' within the op's ulps, and where f' cancels (its
        # zeros) a few roundings of its terms, which are O(1): fwd |dy|
        return {"rel": _pointwise_rel(m, dtype, extra=1.0), "atol": SLACK * fwd * dy64.abs()}
    # sigmoid, tanh from the saved output y (1 + d), |d| <= fwd: y (1 - y), 1 - y^2 off by <= 2 fwd + fwd^2; then
    # <= 4 roundings (1 - y, y * y, the products with dy): 2 EPS
    return {"rel": _pointwise_rel(m, dtype, extra=2.0), "atol": SLACK * (2 * fwd + fwd * fwd) * dy64.abs()}


def _arg(m, s, name):
    """The value of torch's argument `name` in sample s (its default when the sample leaves it out)."""
    bound = inspect.signature(m.signature).bind(s.input, *s.args, **s.kwargs)
    bound.apply_defaults()
    return bound.arguments[name]


def _elu_nan_convention(m, x64, g64):
    """README: glo_kernels' ELU gives a NaN gradient for a NaN input (torch's CPU kernel does in its vectorized loop
    but passes the gradient in its scalar tail): the float64 reference follows ours there."""
    if m.ours == "elu":
        return torch.where(torch.isnan(x64.detach()), torch.full_like(g64, float("nan")), g64)
    return g64


# ---------------------------------------------------------------------------------------------------------------
# Known bugs: (test kind, mirror id, backend) -> (dtypes whose parametrization fails for every seed, reason)
# ---------------------------------------------------------------------------------------------------------------
# (Fixed by the merge of branch features: the reference backend's ELU computed 16-bit inputs in 16-bit arithmetic,
# forward with alpha != 1 and backward, and its double backward was NaN for large positive x. These tests caught
# both on the main before that merge.)
# (Also fixed: its double backward gave 0, not NaN, at a NaN input: it took exp(clamp(x, max=0)), and clamp's
# gradient drops NaN.)
KNOWN_BUGS: dict = {}


def _known_bug(request, kind, m, dtype, backend_name):
    dtypes, reason = KNOWN_BUGS.get((kind, m.id, backend_name), ((), ""))
    if dtype in dtypes:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


def _dtype_id(d):
    return str(d).replace("torch.", "")


def _value_params(pointwise_only=False):
    """(mirror, dtype) for every dtype the OpInfo supports on the CPU that glo_kernels supports."""
    params = []
    for m in MIRRORS:
        if pointwise_only and m.row_op:
            continue
        supported = _opinfo(m).supported_dtypes("cpu")
        for d in DTYPES:
            if d in supported:
                params.append(pytest.param(m, d, id=f"{m.id}-{_dtype_id(d)}"))
    return params


# ---------------------------------------------------------------------------------------------------------------
# Forward
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("m, dtype", _value_params())
def test_forward(m, dtype, backend, request):
    name, _ = backend
    _known_bug(request, "forward", m, dtype, name)
    op = _opinfo(m)
    for i, s in enumerate(_samples(m, dtype, backend)):
        what = f"{m.id}[{name}, {_dtype_id(dtype)}] {_describe(i, s)} forward"
        xt, xo = _copy(s.input), _copy(s.input)
        if m.inplace and _overlapping(s.input):
            # Two elements share memory: torch refuses when it can tell (expanded input); ours must refuse then too.
            try:
                _torch_fn(m)(xt, *s.args, **s.kwargs)
            except RuntimeError:
                with pytest.raises(RuntimeError):
                    _our_call(m, xo, s.args, s.kwargs)
            continue  # (if torch writes, the result depends on the write order: nothing to compare)
        yt = _torch_fn(m)(xt, *s.args, **s.kwargs)
        layout = (xo.data_ptr(), xo.stride())
        y = _our_call(m, xo, s.args, s.kwargs)
        if m.inplace:
            assert y is xo and (y.data_ptr(), y.stride()) == layout, f"{what}: in place did not return its input"
        else:
            _assert_bitwise(xo, s.input, f"{what}: input modified")
        if m.spec.exact:
            _assert_bitwise(y, yt, what)
            continue
        out_dtype = s.kwargs.get("dtype") or dtype
        x64 = s.input.detach().double()
        args64, kwargs64 = _map_tensors(s, lambda t: t.detach().double())
        y64 = _float64_fn(m)(x64, *args64, **kwargs64)
        if m.row_op:
            bound, _ = _softmax_forward_bound(m, x64, y64, _arg(m, s, "dim"), out_dtype)
        else:
            bound = {"rel": _pointwise_rel(m, dtype)}
        assert_matches_reference(y, y64, out_dtype, eager=_eager(out_dtype, yt), what=what, **bound)


# ---------------------------------------------------------------------------------------------------------------
# Backward
# ---------------------------------------------------------------------------------------------------------------
def _grad_inputs(m, s, convert=None):
    """A leaf with s.input's values (and layout, unless converted), the tensor the op gets (in place: a non-leaf
    same-layout copy of the leaf), and the sample's args/kwargs with leaf copies of its tensors (PReLU's weight)."""
    conv = convert or (lambda t: t)
    if convert is None:
        leaf = _copy(s.input).requires_grad_()
    else:
        leaf = conv(s.input.detach()).requires_grad_()
    x = leaf
    if m.inplace:
        x = torch.empty_strided(leaf.shape, leaf.stride(), dtype=leaf.dtype, device=leaf.device)
        x.copy_(leaf)
    args, kwargs = _map_tensors(s, lambda t: conv(t.detach().clone()).requires_grad_())
    return leaf, x, args, kwargs


@pytest.mark.parametrize("m, dtype", _value_params())
def test_backward(m, dtype, backend, request):
    name, device = backend
    _known_bug(request, "backward", m, dtype, name)
    op = _opinfo(m)
    for i, s in enumerate(_samples(m, dtype, backend, grad=True)):
        what = f"{m.id}[{name}, {_dtype_id(dtype)}] {_describe(i, s)}"
        if m.inplace and _overlapping(s.input):
            continue  # an in-place op cannot take it (test_forward)
        out_dtype = s.kwargs.get("dtype") or dtype
        # ours
        leaf, x, args, kwargs = _grad_inputs(m, s)
        y = _our_call(m, x, args, kwargs)
        dy = torch.randn(y.shape, dtype=torch.float64).to(device=device, dtype=out_dtype)
        grads = torch.autograd.grad(y, [leaf, *_params(args, kwargs)], dy, allow_unused=True)
        # torch in the same dtype (the error baseline), and float64 on the same rounded values
        leaf_t, x_t, args_t, kwargs_t = _grad_inputs(m, s)
        y_t = _torch_fn(m)(x_t, *args_t, **kwargs_t)
        grads_t = torch.autograd.grad(y_t, [leaf_t, *_params(args_t, kwargs_t)], dy, allow_unused=True)
        leaf64, _, args64, kwargs64 = _grad_inputs(dataclasses.replace(m, inplace=False), s, lambda t: t.double())
        y64 = _float64_fn(m)(leaf64, *args64, **kwargs64)
        dy64 = dy.double()
        grads64 = torch.autograd.grad(y64, [leaf64, *_params(args64, kwargs64)], dy64, allow_unused=True)
        grads = [_zeros_if_none(g, p) for g, p in zip(grads, [leaf, *_params(args, kwargs)])]
        grads_t = [_zeros_if_none(g, p) for g, p in zip(grads_t, [leaf_t, *_params(args_t, kwargs_t)])]
        grads64 = [_zeros_if_none(g, p) for g, p in zip(grads64, [leaf64, *_params(args64, kwargs64)])]
        gx64 = _elu_nan_convention(m, leaf64, grads64[0])

        if m.spec.exact:
            _assert_bitwise(grads[0], grads_t[0], f"{what} grad x (vs torch)")
            assert_matches_reference(grads[0], gx64, dtype, eager=grads_t[0], what=f"{what} grad x", rel=EPS[dtype])
        elif m.row_op:
            _, fwd_err = _softmax_forward_bound(m, leaf64, y64, _arg(m, s, "dim"), out_dtype)
            bound = _softmax_backward_bound(m, y64, dy64, fwd_err, _arg(m, s, "dim"), out_dtype, dtype)
            assert_matches_reference(grads[0], gx64, dtype, eager=_eager(dtype, grads_t[0]), what=f"{what} grad x",
                                     **bound)
        else:
            bound = _pointwise_grad_bound(m, dtype, y64, dy64)
            assert_matches_reference(grads[0], gx64, dtype, eager=_eager(dtype, grads_t[0]), what=f"{what} grad x",
                                     **bound)
        if m.ours == "prelu":
            (w64,) = _params(args64, kwargs64)
            x64 = leaf64.detach()
            # grad w = per-channel sum of where(x > 0, 0, x dy): n = numel / channels terms, each product and the
            # accumulation in the compute dtype (gamma_(n+1) of the sum of |terms|), then rounding to the dtype
            terms = reduce_to_param(torch.where(x64 > 0, 0.0, x64 * dy64).abs(), w64)
            n = max(1, x64.numel() // w64.numel())
            atol = _gamma(n + 1, _u(dtype)) * terms
            assert_matches_reference(grads[1], grads64[1], dtype, eager=grads_t[1], rel=EPS[dtype], atol=atol,
                                     what=f"{what} grad weight")


# ---------------------------------------------------------------------------------------------------------------
# Double backward (element-wise ops; the softmax family's is covered by gradgradcheck)
# ---------------------------------------------------------------------------------------------------------------
def _second_order(m, s, call, convert, dy, vs=None):
    """Gradients of L = sum(v * first-order gradients) w.r.t. x, dy and the weight; returns (seconds, vs, wrt)."""
    leaf, x, args, kwargs = _grad_inputs(m, s, convert)
    params = _params(args, kwargs)
    y = call(x, args, kwargs)
    dy = dy.detach().requires_grad_()
    firsts = torch.autograd.grad(y, [leaf, *params], dy, create_graph=True, allow_unused=True)
    firsts = [_zeros_if_none(g, p) for g, p in zip(firsts, [leaf, *params])]
    if vs is None:
        vs = [torch.randn(g.shape, dtype=torch.float64).to(g.dtype) for g in firsts]
    loss = sum((g * v.to(g.dtype)).sum() for g, v in zip(firsts, vs) if g.requires_grad)
    wrt = [leaf, dy, *params]
    if not isinstance(loss, torch.Tensor):  # no first-order gradient depends on anything (never here)
        return [torch.zeros_like(t) for t in wrt], vs, wrt
    seconds = torch.autograd.grad(loss, wrt, allow_unused=True)
    return [_zeros_if_none(g, t) for g, t in zip(seconds, wrt)], vs, wrt


def _at_zero_convention(m, x64, dy64, vs64, params64, alpha, ref):
    """Second-order gradients at x = +-0, where torch's float64 reference is not glo_kernels' (documented) convention.

    PReLU: the first-order gradient at 0 is w dy (the slope applies at 0: README, and torch's own first-order
    gradient), linear in dy and w, so d/d(dy) = w v and d/dw gets v dy there, and d/dx = vw dy (the x <= 0 side); torch's
    double backward gives v, nothing and 0 at x = 0, contradicting its own first-order gradient.
    ELU: f' = alpha exp(x) for x <= 0 (alpha at 0, README and torch), 1 above: d/dx at 0 takes that same x <= 0 side,
    alpha dy v; torch's double backward masks x < 0 and gives 0 there."""
    zero = x64 == 0
    if not zero.any():
        return
    if m.ours == "prelu":
        (w64,) = params64
        shape = channel_view_shape(x64, w64)
        w, vw = w64.detach().reshape(shape), vs64[1].reshape(shape)
        ref[1] = torch.where(zero, w * vs64[0], ref[1])
        ref[0] = torch.where(zero, vw * dy64, ref[0])
        ref[2] = ref[2] + reduce_to_param(torch.where(zero, vs64[0] * dy64, 0.0), w64)
    elif m.ours == "elu":
        ref[0] = torch.where(zero, alpha * dy64 * vs64[0], ref[0])


@pytest.mark.parametrize("m, dtype", _value_params(pointwise_only=True))
def test_double_backward(m, dtype, backend, request):
    """Second-order gradients against float64: d/dx, d/d(dy) (and d/dweight) of sum(v * first-order gradients).

    Bounds: ours is plain torch ops in the dtype on top of the backward kernels: the op table's ulps for a
    transcendental plus <= 4 products / sums, each rounding (ulps + 4) EPS relative; from a saved output y
    (sigmoid, tanh, in-place ELU) y's own error r (the forward bound) enters: d/d(dy) = v f'(x) as in the backward
    ((2r + r^2)|v|), d/dx = dy v g(y) with |g'| <= 4 on [-1, 1] (tanh's -2y(1 - y^2); sigmoid's |g'| <= 1):
    5 r |dy v| (times max(1, alpha) for ELU's dy v (y + alpha)). PReLU's d/dweight = per-channel sum of v dy where
    x <= 0: gamma_(n+1) of the sum of |terms| plus rounding each term."""
    name, device = backend
    _known_bug(request, "double_backward", m, dtype, name)
    plain = dataclasses.replace(m, inplace=False)
    samples = _samples(m, dtype, backend, grad=True)
    # (time: the first sample inputs, every fourth of the others, and all that hold special values)
    samples = [s for i, s in enumerate(samples) if i < 3 or i % 4 == 0 or _special(s.input)]
    for i, s in enumerate(samples):
        what = f"{m.id}[{name}, {_dtype_id(dtype)}] {_describe(i, s)} double backward"
        if m.inplace and _overlapping(s.input):
            continue
        dy = torch.randn(s.input.shape, dtype=torch.float64).to(device=device, dtype=dtype)
        ours, vs, _ = _second_order(m, s, lambda x, a, k: _our_call(m, x, a, k), None, dy)
        eager, _, _ = _second_order_or_none(m, s, lambda x, a, k: _torch_fn(m)(x, *a, **k), None, dy, vs)
        eager = eager or [None] * len(ours)
        ref, _, wrt64 = _second_order(plain, s, lambda x, a, k: _float64_fn(m)(x, *a, **k), lambda t: t.double(),
                                      dy.double(), [v.double() for v in vs])
        x64, dy64 = wrt64[0].detach(), wrt64[1].detach()
        v64 = vs[0].double()
        r = _pointwise_rel(m, dtype)
        rel = (m.spec.ulps + 4) * EPS[dtype]
        alpha = _arg(m, s, "alpha") if m.ours == "elu" else 1.0
        unary = m.spec.unary
        from_output = (unary is not None and unary.saved == "y") or (m.ours == "elu" and m.inplace)
        atol_x = 5 * max(1.0, abs(alpha)) * r * (dy64 * v64).abs() if from_output else 0.0
        atol_dy = SLACK * (2 * r + r * r) * v64.abs() if from_output else 0.0
        if unary is not None and unary.saved == "x":  # f'(x), f''(x) where they cancel: rounding of O(1) terms
            atol_x, atol_dy = SLACK * rel * (dy64 * v64).abs(), SLACK * rel * v64.abs()
        ref[0] = _elu_nan_convention(m, x64, ref[0])
        ref[1] = _elu_nan_convention(m, x64, ref[1])
        _at_zero_convention(m, x64, dy64, [v.double() for v in vs], wrt64[2:], alpha, ref)
        if m.ours == "prelu":
            (w64,) = wrt64[2:]
            vw64 = vs[1].double().reshape(channel_view_shape(x64, w64))
            w = w64.detach().reshape(channel_view_shape(x64, w64))
            neg = ~(x64 > 0)
            # d/d(dy) = v (x > 0) or w v + vw x: two products and a sum, each rounded, with cancellation
            atol_dy = 2 * EPS[dtype] * torch.where(neg, (w * v64).abs() + (vw64 * x64).abs(), 0.0)
            n = max(1, x64.numel() // w64.numel())
            terms = reduce_to_param(torch.where(neg, v64 * dy64, 0.0).abs(), w64)
            atol_w = (EPS[dtype] + _gamma(n + 1, _u(dtype))) * terms
            assert_matches_reference(ours[2], ref[2], dtype, eager=eager[2], rel=EPS[dtype], atol=atol_w,
                                     what=f"{what} d/dweight")
        assert_matches_reference(ours[0], ref[0], dtype, eager=eager[0], rel=rel, atol=atol_x, what=f"{what} d/dx")
        assert_matches_reference(ours[1], ref[1], dtype, eager=eager[1], rel=rel, atol=atol_dy,
                                 what=f"{what} d/d(dy)")


# ---------------------------------------------------------------------------------------------------------------
# gradcheck, gradgradcheck (float64, small samples)
# ---------------------------------------------------------------------------------------------------------------
def _gradcheck_samples(m, device, count):
    samples = []
    for s in _opinfo(m).reference_inputs(device, torch.float64, set_seed=False):
        s = _cut(s, GRADCHECK_MAX_NUMEL)
        x = s.input
        # finite, moderate values (central differences of eps = 1e-6 are meaningless at 1e20 or inf)
        if x.numel() <= GRADCHECK_MAX_NUMEL and bool(torch.isfinite(x).all()) and bool((x.abs() <= 100).all()):
            samples.append(s)
        if len(samples) == count:
            return samples
    return samples


def _away_from_kink(m, x):
    """relu, leaky_relu, prelu (and ELU's derivative) have a kink at 0: move |x| < 1e-3 to +-1e-3 so that
    gradcheck's central differences (eps = 1e-6) never straddle it."""
    if not (m.spec.exact or m.ours == "elu"):
        return x
    return torch.where(x.abs() < 1e-3, torch.where(x.signbit(), -1e-3, 1e-3).to(x.dtype), x)


def _gradcheck_params():
    return [pytest.param(m, id=m.id) for m in MIRRORS
            if torch.float64 in _opinfo(m).supported_backward_dtypes("cpu")]


@pytest.mark.parametrize("m", _gradcheck_params())
def test_gradcheck(m, backend):
    name, device = backend
    fast = name == "triton" and device == "cpu"  # the interpreter: one Jacobian-vector product, not the Jacobian
    samples = _gradcheck_samples(m, device, GRADCHECK_SAMPLES_TRITON if fast else GRADCHECK_SAMPLES)
    assert samples, f"{m.id}: no small sample"
    for i, s in enumerate(samples):
        x = _away_from_kink(m, s.input.detach().clone()).requires_grad_()
        args, kwargs = _map_tensors(s, lambda t: t.detach().clone().requires_grad_())
        params = _params(args, kwargs)

        def fn(x, *ps, args=args, kwargs=kwargs):
            it = iter(ps)
            a, k = _map_tensors(SampleInput(x, args=args, kwargs=kwargs), lambda t: next(it))
            return _our_call(m, x.clone() if m.inplace else x, a, k)

        what = f"{m.id}[{name}] {_describe(i, s)}"
        assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=fast), what
        if fast and m.ours in MASK_OPS:
            # (time: their double backward is the backward kernel again, linear in dy with d/dx = 0; checked against
            # float64 by test_double_backward)
            continue
        assert torch.autograd.gradgradcheck(fn, (x, *params), fast_mode=fast), what


# ---------------------------------------------------------------------------------------------------------------
# Errors: error inputs, unsupported dtypes, unmapped arguments
# ---------------------------------------------------------------------------------------------------------------
ERROR_MIRRORS = [m for m in MIRRORS if _opinfo(m).error_inputs_func is not None]


@pytest.mark.parametrize("m", ERROR_MIRRORS, ids=lambda m: m.id)
def test_error_inputs(m, backend):
    """Each error input of the OpInfo (torch raises: checked) makes glo_kernels raise an error naming the op.
    (PReLU's three: a 0-d input with 2 weights, 9 weights for 8 channels, a 2-d weight; glo_kernels accepts none.)"""
    _, device = backend
    errors = list(_opinfo(m).error_inputs(device, set_seed=False))
    assert errors, f"{m.id}: no error inputs"
    for e in errors:
        s = e.sample_input
        with pytest.raises(e.error_type, match=e.error_regex):
            _torch_fn(m)(_copy(s.input), *s.args, **s.kwargs)
        with pytest.raises((ValueError, TypeError, RuntimeError), match=rf"glo_kernels\.{m.ours}\b"):
            _our_call(m, _copy(s.input), s.args, s.kwargs)


def _unsupported_params():
    params = []
    for m in MIRRORS:
        for d in sorted(set(_opinfo(m).supported_dtypes("cpu")) - set(DTYPES), key=str):
            params.append(pytest.param(m, d, id=f"{m.id}-{_dtype_id(d)}"))
    return params


@pytest.mark.parametrize("m, dtype", _unsupported_params())
def test_refuses_unsupported_dtype(m, dtype, backend):
    """A dtype the OpInfo supports (integers, bool, complex) but glo_kernels does not: a TypeError naming the op and
    the dtype, for each of the OpInfo's samples in it."""
    _, device = backend
    samples = list(_opinfo(m).sample_inputs(device, dtype, set_seed=False))
    assert samples
    for s in samples:
        with pytest.raises(TypeError, match=rf"glo_kernels\.{m.ours}: .*{re.escape(str(dtype))}"):
            _our_call(m, _copy(s.input), s.args, s.kwargs)


def test_unmapped_argument_fails_loudly():
    """An argument of torch's signature that our API lacks fails the mapping; it is not dropped."""
    x = torch.randn(3)
    by_id = {m.id: m for m in MIRRORS}
    with pytest.raises(UnmappedArgument, match="out="):
        _our_call(by_id["sigmoid"], x, (), {"out": torch.empty(3)})
    with pytest.raises(UnmappedArgument, match="out="):
        _our_call(by_id["softmax"], x, (0,), {"out": torch.empty(3)})
    with pytest.raises(TypeError):  # not even torch's signature
        _our_call(by_id["relu"], x, (), {"negative_slope": 0.1})


@pytest.mark.parametrize("key", sorted({(m.opinfo, m.variant) for m in MIRRORS}), ids=lambda k: ".".join(filter(None, k)))
def test_reference_inputs_start_with_sample_inputs(key):
    """The suite iterates reference_inputs only: that covers sample_inputs because it yields them first."""
    op = OPINFOS[key]
    sig = lambda s: (tuple(s.input.shape), tuple(type(a).__name__ if isinstance(a, torch.Tensor) else a
                                                 for a in s.args), tuple(sorted(s.kwargs)))
    samples = [sig(s) for s in op.sample_inputs("cpu", torch.float32, set_seed=False)]
    references = [sig(s) for s in op.reference_inputs("cpu", torch.float32, set_seed=False)]
    assert samples and references[: len(samples)] == samples
