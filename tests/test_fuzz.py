"""Property-based fuzzing (hypothesis) of every op in the op table x every backend against the float64 reference.

One generic test, driven by ``glo_kernels._registry.ALL_OPS`` (new ops are fuzzed automatically, with the scalar
arguments of their ``cases_for`` and the learned tensors of their ``make_params`` when nothing more specific is known
about them). Each example draws:

- a shape: 0-d, empty, 1 to 5 dims, odd sizes; on the native backends sometimes a long row (past the CPU kernels'
  4096-element chunk, so the online max/sum of the softmax family crosses chunks);
- a layout: contiguous, permuted (``.mT``, random permutations), channels_last (4-d and 5-d), sliced with steps,
  expanded (stride 0; out-of-place calls only) and storage offsets of 1 to 3 elements that break 16-byte alignment;
  every view lives in a buffer whose gaps hold NaN, so a kernel that reads or writes outside the view is caught;
- a dtype: float32, float64, bfloat16, float16;
- values: normal, tied (a few distinct values: ReLU zeros, maxout ties, softmax rows with equal maxima), log-uniform
  over the dtype's whole range, or around the smallest normal, mixed with NaN, +-inf, +-0.0, subnormals, +-1e4, +-1 and
  values right at and on both sides of the op's break point (0 for the ReLU family, ELU and PELU; saturation points
  of sigmoid / tanh / exp);
- op arguments: leaky slopes in [-2, 2], ELU alpha in (0, 3], PReLU weights (1 or C elements, negative too), PELU a, b
  in [0.1, 3], maxout pieces dividing the (any, also negative) dim, temperatures log-uniform in [1e-3, 1e3] given as a
  number, a CPU tensor, or a 0-d / 1-element tensor that requires grad, grouped softmax sizes (random positive sizes
  summing to the dim), distillation reductions and a teacher that may require grad;
- in-place or not (ops that have ``inplace``), with or without autograd, and the upstream gradient's layout.

Checks: forward and every gradient (input, learned parameters, temperature, teacher) against ``op.reference`` on
float64 copies of the same (rounded) values, with tolerances derived as tests/helpers.py ``assert_matches_reference``
does (a relative error in units of the dtype's eps, at least ``factor`` x PyTorch eager's own error on the same input,
plus the normwise row floors of tests/test_softmax.py for the softmax family and the accumulation error of sums);
exact ops (no transcendentals) also bit for bit against torch's own op in the same dtype; NaN and infinities where the
reference has them; output dtype, device and shape; outputs contiguous and not aliasing the input (in place: the very
same tensor); inputs, parameters and the gaps of every buffer unmodified, bit for bit.

Budget: a fixed number of examples per op and backend (fewer, on smaller tensors, for Triton under its interpreter),
about 2 minutes for the whole file on 2 CPU cores when it passes. ``GLO_FUZZ_SCALE=10`` multiplies the number of
examples for a longer local run. The run's seed drives hypothesis: GLO_TEST_SEED=<seed> replays a failing example
(GLO_FUZZ_DB=1 runs unseeded with the example database tests/hypothesis-db/, see its README).
"""
from __future__ import annotations

import functools
import math
import os
import types
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from glo_kernels._registry import ALL_OPS
from glo_kernels._layout import channel_view_shape, dense_format, maxout_format, reduce_to_param
from conftest import backend_params
from helpers import EPS, assert_matches_reference, with_torch_nan
from bounds import (distillation_bounds, finite as _fin, gated_subnormal_floor, row_max as _row_max,
                    softmax_backward_atol, softmax_forward_atol, softmax_tol, sum_gamma, temperature_grad_atol)
from op_db import UNARY, UNARY_NAMES

# ---------------------------------------------------------------------------------------------------------------
# Settings: a profile of this file's own (not loaded globally), whose database lives in the repository.
# ---------------------------------------------------------------------------------------------------------------
DB_DIR = Path(__file__).resolve().parent / "hypothesis-db"
PROFILE = "glo_kernels_fuzz"
settings.register_profile(
    PROFILE,
    database=DirectoryBasedExampleDatabase(str(DB_DIR)),
    deadline=None,  # the Triton interpreter and the first call of a kernel take long and vary
    print_blob=True,  # on failure: the @reproduce_failure blob, besides the drawn values and the notes below
    # The `backend` fixture only forces a backend for the test's duration; nothing in it is per-example state.
    # too_slow is hypothesis' one check that depends on timing (how long drawing the examples took): on a loaded host
    # (a seed sweep beside builds) it can fail a run whose examples are all correct, and timings belong in
    # benchmarks, not in pass/fail tests.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ_SETTINGS = settings.get_profile(PROFILE)

_SCALE = float(os.environ.get("GLO_FUZZ_SCALE", "1"))
NATIVE_EXAMPLES = max(1, round(300 * _SCALE))  # per op, on the cpu / reference / cuda backends
INTERPRETED_EXAMPLES = max(1, round(80 * _SCALE))  # per op, Triton under its interpreter (CPU tensors)
NATIVE_MAX_NUMEL = 3000
INTERPRETED_MAX_NUMEL = 2000
FORMAT_KEEPING_OPS = ("relu", "leaky_relu", "elu", "softplus", "prelu", "pelu") + UNARY_NAMES  # output in dense_format(x)
LONG_ROW = (4097, 9000)  # row lengths of the "long" shapes (native backends only)

DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)  # the first one is what examples shrink to
INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
            torch.float16: torch.int16}
def _is_interpreted(param) -> bool:
    name, device = param.values[0]
    return name == "triton" and device == "cpu"


NATIVE_BACKENDS = [p for p in backend_params() if not _is_interpreted(p)]
INTERPRETED_BACKENDS = [p for p in backend_params() if _is_interpreted(p)]
OP_PARAMS = [pytest.param(op, id=op.name) for op in ALL_OPS]

pytestmark = [
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # numpy's inf/NaN notices inside the Triton interpreter
    pytest.mark.filterwarnings("ignore:reduction. 'mean':UserWarning"),
]


# ---------------------------------------------------------------------------------------------------------------
# Shapes and layouts
# ---------------------------------------------------------------------------------------------------------------
def _min_ndim(op) -> int:
    return 1 if op.name in ("maxout", "distillation_loss") or op.gated is not None or op.bias is not None else 0


@st.composite
def shapes(draw, min_ndim: int, max_numel: int, long_rows: bool):
    if long_rows and draw(st.integers(0, 9)) == 9:  # a long row: the last dim crosses the CPU chunk (4096)
        lead = draw(st.lists(st.integers(1, 2), min_size=max(min_ndim, 1) - 1, max_size=1))
        return tuple(lead) + (draw(st.integers(*LONG_ROW)),)
    ndim = draw(st.integers(min_ndim, 5))
    caps = {1: max_numel, 2: 70, 3: 24, 4: 12, 5: 7}
    shape, room = [], max_numel
    for _ in range(ndim):
        size = draw(st.integers(1, max(1, min(caps[ndim], room))))
        shape.append(size)
        room = max(1, room // size)
    if ndim and draw(st.integers(0, 7)) == 7:  # empty: one dim of size 0
        shape[draw(st.integers(0, ndim - 1))] = 0
    return tuple(shape)


class Layout:
    """Where the elements of a view of `shape` live in a 1-D buffer: strides (0 where expanded) and offset."""

    def __init__(self, shape, strides, offset, tail, kind):
        self.shape, self.strides, self.offset, self.tail, self.kind = tuple(shape), tuple(strides), offset, tail, kind

    @property
    def expanded(self):
        return tuple(d for d, s in enumerate(self.strides) if s == 0 and self.shape[d] > 1)

    def base_shape(self):
        """The shape of the distinct values: 1 along expanded dims."""
        return tuple(1 if d in self.expanded else n for d, n in enumerate(self.shape))

    def buffer_numel(self):
        if math.prod(self.shape) == 0:
            return self.offset + self.tail
        return self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides)) + 1 + self.tail

    def __repr__(self):
        return f"Layout({self.kind}, shape={self.shape}, strides={self.strides}, offset={self.offset})"


@st.composite
def layouts(draw, shape, allow_expand: bool):
    nd = len(shape)
    kinds = ["contiguous", "offset", "strided"]
    if nd >= 2:
        kinds += ["mT", "permuted"]
    if nd in (4, 5):
        kinds.append("channels_last")
    if allow_expand and any(n > 1 for n in shape):
        kinds.append("expanded")
    kind = draw(st.sampled_from(kinds), label="layout")
    order = list(range(nd))  # storage order, outermost first
    steps = [1] * nd
    offset = 0
    if kind == "mT":
        order[-2], order[-1] = order[-1], order[-2]
    elif kind == "permuted":
        order = draw(st.permutations(range(nd)))
    elif kind == "channels_last":
        order = [0] + list(range(2, nd)) + [1]
    if kind in ("strided", "permuted", "channels_last", "expanded") or draw(st.booleans()):
        steps = draw(st.lists(st.sampled_from([1, 2, 3]), min_size=nd, max_size=nd))  # sliced with steps
    if kind == "offset" or draw(st.booleans()):
        offset = draw(st.integers(1, 3))  # one element in: the data pointer is off 16-byte alignment
    strides = [0] * nd
    running = 1
    for d in reversed(order):
        strides[d] = running * steps[d]
        running = strides[d] * max(shape[d], 1)
    if kind == "expanded":
        dims = [d for d in range(nd) if shape[d] > 1]
        for d in draw(st.lists(st.sampled_from(dims), min_size=1, unique=True)):
            strides[d] = 0
    tail = draw(st.integers(0, 2))
    return Layout(shape, strides, offset, tail, kind)


def materialize(values64: torch.Tensor, layout: Layout, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(buffer, view): the view has `layout` and the values of `values64` (of the layout's base shape) rounded to
    `dtype`; every other element of the buffer is NaN."""
    buf = torch.full((layout.buffer_numel(),), float("nan"), dtype=dtype)
    if values64.numel():
        base = buf.as_strided(layout.base_shape(), layout.strides, layout.offset)
        base.copy_(values64.to(dtype))
    return buf, buf.as_strided(layout.shape, layout.strides, layout.offset)


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of t (NaN-aware, sign-of-zero-aware equality via torch.equal)."""
    return t.detach().contiguous().view(INT_VIEW[t.dtype]).clone()


# ---------------------------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------------------------
def _edges(dtype):
    fi = torch.finfo(dtype)
    sub_min = fi.smallest_normal * fi.eps  # the smallest subnormal
    return fi, sub_min


# Largest magnitude of the "wide" values: the domain the README's guarantees state. float64 data: 1e300 (its float64
# reference could not represent x / T beyond 1e300 / 1e-3). float32 and bfloat16 data: 1e30, not the float32 max:
# beyond it some intermediates of the kernels overflow float32 where the exact result does not (x - max for rows
# holding +-1e38, (t - s) / T in the reduced distillation loss, x / b^2 in PELU's db; found by this file's first runs,
# kept out of the contract: docs/softmax_contract.md). float16: its whole range (65504).
WIDE_MAX = {torch.float64: 1e300, torch.float32: 1e30, torch.bfloat16: 1e30}


def special_values(op, dtype) -> list[float]:
    fi, sub_min = _edges(dtype)
    vals = [float("nan"), float("inf"), -float("inf"), 0.0, -0.0, sub_min, -sub_min, fi.smallest_normal / 3,
            -fi.smallest_normal / 3, fi.smallest_normal, -fi.smallest_normal, 1e4, -1e4, 1.0, -1.0,
            fi.eps, -fi.eps, 1e-30, -1e-30]
    # Saturation / underflow points of exp, expm1, sigmoid, tanh (float32 and float64 thresholds), both sides; those
    # of the unary family are in its specs (UnarySpec.edges).
    edges = {
        "elu": (1e-8, 1e-4, 0.5, 17.0, 17.4, 36.8, 37.5, 87.3, 88.8, 103.0, 104.0, 745.0),
        "pelu": (1e-8, 1e-4, 0.5, 8.9, 17.0, 37.0, 88.8, 104.0),
        # softplus: its thresholds (x beta = 20, 5, with beta 1, 2, 0.5) and exp's underflow (float32, float64)
        "softplus": (2.5, 5.0, 10.0, 20.0, 40.0, 87.3, 103.9, 745.0),
        **{spec.name: spec.edges for spec in UNARY if spec.edges},
    }.get(op.name, (88.0, 104.0, 1e4 - 1, 3e4))
    for e in edges:
        vals += [e, -e]
    return vals


@st.composite
def values(draw, shape, dtype, op, label="x"):
    """A float64 tensor of `shape` (values within dtype's range; rounded by the caller)."""
    n = math.prod(shape)
    fi, sub_min = _edges(dtype)
    seed = draw(st.integers(0, 2**32 - 1), label=f"{label} seed")
    dist = draw(st.sampled_from(["normal", "ties", "wide", "tiny"]), label=f"{label} distribution")
    scale = draw(st.sampled_from([3.0, 1.0, 0.01, 30.0, 1e4]), label=f"{label} scale")
    g = torch.Generator().manual_seed(seed)
    if dist == "normal":
        v = torch.randn(shape, dtype=torch.float64, generator=g) * scale
    elif dist == "ties":  # a few distinct values (multiples of scale / 2, 0 included)
        v = torch.randint(-2, 3, shape, generator=g).double() * (scale / 2)
    elif dist == "wide":  # log-uniform magnitudes over the whole range of the dtype, random signs
        lo, hi = math.log10(sub_min), math.log10(WIDE_MAX.get(dtype, fi.max))
        mag = 10 ** (torch.rand(shape, dtype=torch.float64, generator=g) * (hi - lo) + lo)
        v = torch.where(torch.rand(shape, generator=g) < 0.5, -mag, mag)
    else:  # around the smallest normal: subnormals and tiny normals
        v = torch.randn(shape, dtype=torch.float64, generator=g) * fi.smallest_normal * 4
    if n:
        specials = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(special_values(op, dtype))),
                                 max_size=min(n, 16)), label=f"{label} specials (flat index, value)")
        flat = v.view(-1)
        for i, val in specials:
            flat[i] = val
    return v


def _describe(name, t: torch.Tensor):
    t = t.detach()
    text = f"{name}: {t.dtype} shape={tuple(t.shape)} strides={t.stride()} offset={t.storage_offset()}"
    if t.numel() <= 256:
        text += f" values={t.double().tolist()!r}"
    return text


# ---------------------------------------------------------------------------------------------------------------
# Op arguments
# ---------------------------------------------------------------------------------------------------------------
def _f32(v: float) -> float:
    """v rounded to float32: op arguments are drawn representable in float32, the opmath of 16-bit and float32 data
    (a slope of 1e-300 would be 0 there and make -inf * slope NaN, unlike its float64 reference)."""
    return float(torch.tensor(v, dtype=torch.float32))


def _float_in(lo, hi, specials):
    return st.one_of(st.sampled_from([_f32(v) for v in specials]),
                     st.floats(_f32(lo), _f32(hi), allow_nan=False, allow_infinity=False, width=32))


@st.composite
def param_values(draw, count, lo, hi, specials, label):
    """`count` values in [lo, hi] (float64 tensor): drawn one by one for a few channels, else seeded uniform values
    with some of `specials` at drawn positions."""
    if count <= 32:
        return torch.tensor(draw(st.lists(_float_in(lo, hi, specials), min_size=count, max_size=count), label=label),
                            dtype=torch.float64)
    seed = draw(st.integers(0, 2**32 - 1), label=f"{label} seed")
    g = torch.Generator().manual_seed(seed)
    v = torch.rand(count, dtype=torch.float64, generator=g) * (hi - lo) + lo
    for i, val in draw(st.lists(st.tuples(st.integers(0, count - 1), st.sampled_from(specials)), max_size=8),
                       label=f"{label} specials"):
        v[i] = val
    return v.float().double()


def _temperature_strategy():
    return st.one_of(st.sampled_from([1.0, 1e-3, 1e3, 2.0, 0.05, 30.0]),
                     st.floats(-3, 3).map(lambda e: float(10**e)))


def _channels(shape):
    return shape[1] if len(shape) >= 2 else 1


@st.composite
def channel_param(draw, shape, dtype, values_strategy, label):
    """A PReLU-like parameter: 1 element (0-d or 1-D) or one per channel; contiguous or a strided view.
    `values_strategy(count)` draws its values (float64)."""
    per_channel = len(shape) >= 2 and draw(st.booleans(), label=f"{label} per channel")
    count = _channels(shape) if per_channel else 1
    t = draw(values_strategy(count)).to(dtype)
    form = draw(st.sampled_from(["1-D", "0-d", "strided"]) if count == 1 else st.sampled_from(["1-D", "strided"]),
                label=f"{label} form")
    if form == "0-d":
        return t.reshape(())
    if form == "strided":
        big = torch.full((2 * count + 1,), float("nan"), dtype=dtype)
        view = big[1::2]
        view.copy_(t)
        return view
    return t


class Case:
    """What one example calls: fn(x, *params, **kwargs), and which extra tensors have gradients."""

    def __init__(self):
        self.kwargs = {}
        self.params = []  # (name, tensor, requires_grad)
        self.temperature = None  # the temperature tensor when it requires grad
        self.dim = None  # the dim of a row-wise op

    def __repr__(self):
        kw = {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in self.kwargs.items()}
        ps = [(n, p.tolist(), req) for n, p, req in self.params if p.numel() <= 16]
        return f"Case(kwargs={kw}, params={ps})"


@st.composite
def teacher_tensor(draw, op, shape, dtype):
    layout = draw(layouts(shape, allow_expand=True), label="teacher layout")
    vals = draw(values(layout.base_shape(), dtype, op, label="teacher"))
    return materialize(vals, layout, dtype)[1]


@st.composite
def op_case(draw, op, shape, dtype):
    case = Case()
    nd = len(shape)
    name = op.name
    if name == "leaky_relu":
        slope = draw(_float_in(-2.0, 2.0, [0.01, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 0.2, -0.5]), label="negative_slope")
        case.kwargs = {"negative_slope": slope}
    elif name == "elu":
        alpha = draw(st.one_of(st.sampled_from([1.0, 0.5, 3.0, _f32(1e-3)]),
                               st.floats(0.0, 3.0, exclude_min=True, allow_nan=False, width=32)), label="alpha")
        case.kwargs = {"alpha": alpha}
    elif name == "softplus":
        beta = draw(st.sampled_from([1.0, 2.0, 0.5, 3.0]), label="beta")
        threshold = draw(st.sampled_from([20.0, 5.0, 1.0, 0.0]), label="threshold")
        case.kwargs = {"beta": beta, "threshold": threshold}
    elif name == "prelu":
        slopes = [0.25, 0.0, -0.0, 1.0, -1.0, 2.0, -2.0]
        w = draw(channel_param(shape, dtype, lambda n: param_values(n, -2.0, 2.0, slopes, "weight"), "weight"))
        case.params = [("weight", w, True)]
    elif name == "pelu":
        ab = [1.0, 0.1, 3.0, 0.5]
        per_channel = nd >= 2 and draw(st.booleans(), label="a, b per channel")
        count = _channels(shape) if per_channel else 1
        a = draw(param_values(count, 0.1, 3.0, ab, "a")).to(dtype)
        b = draw(param_values(count, 0.1, 3.0, ab, "b")).to(dtype)
        if draw(st.booleans(), label="a, b strided"):
            a, b = (torch.stack([t, torch.full_like(t, float("nan"))], 1)[:, 0] for t in (a, b))
        case.params = [("a", a, True), ("b", b, True)]
    elif op.bias is not None:  # (act(x + bias), the bias over the last dim)
        bias = draw(param_values(shape[-1], -4.0, 4.0, [0.0, -0.0, 1.0, -1.0, 0.75, 3.0], "bias")).to(dtype)
        if draw(st.booleans(), label="bias strided"):
            bias = torch.stack([bias, torch.full_like(bias, float("nan"))], 1)[:, 0]
        case.params = [("bias", bias, True)]
    elif name == "maxout":
        dim = draw(st.integers(-nd, nd - 1), label="dim")
        size = shape[dim]
        divisors = [p for p in range(1, 257) if size % p == 0] if size else [1, 2, 3, 7, 256]
        case.kwargs = {"pieces": draw(st.sampled_from(divisors), label="pieces"), "dim": dim}
    elif name in ("softmax", "log_softmax", "grouped_softmax"):
        nd1 = max(nd, 1)
        dim = draw(st.integers(-nd1, nd1 - 1), label="dim")
        size = shape[dim] if nd else 1
        case.kwargs["dim"] = dim
        case.dim = dim % nd1
        if name == "grouped_softmax":
            assume(size >= 1)  # positive group sizes cannot sum to 0
            if size <= 300 and draw(st.integers(0, 4), label="all groups of 1") == 0:
                groups = [1] * size
            else:
                cuts = draw(st.lists(st.integers(1, max(size - 1, 1)), unique=True, max_size=min(size - 1, 24)),
                            label="group cuts")
                edges = [0] + sorted(cuts) + [size]
                groups = [b - a for a, b in zip(edges, edges[1:])]
            case.kwargs["group_sizes"] = groups
        value = draw(_temperature_strategy(), label="temperature")
        kind = draw(st.sampled_from(["number", "tensor requiring grad", "tensor"]), label="temperature kind")
        if kind == "number":
            case.kwargs["temperature"] = value
        else:
            tdtype = draw(st.sampled_from([torch.float32 if dtype != torch.float64 else dtype, torch.float64, dtype]),
                          label="temperature dtype")
            tshape = draw(st.sampled_from([(), (1,)]), label="temperature shape")
            tt = torch.full(tshape, value, dtype=tdtype)
            assume(float(tt) > 0 and math.isfinite(float(tt)))  # (a 16-bit tensor rounds 1e-3 .. 1e3 fine)
            if kind == "tensor requiring grad":
                tt.requires_grad_()
                case.temperature = tt
            case.kwargs["temperature"] = tt
    elif name == "distillation_loss":
        case.dim = nd - 1
        case.kwargs = {"temperature": draw(_temperature_strategy(), label="temperature"),
                       "reduction": draw(st.sampled_from(["batchmean", "sum", "mean", "none"]), label="reduction")}
        if draw(st.booleans(), label="temperature as a tensor"):
            case.kwargs["temperature"] = torch.tensor(case.kwargs["temperature"], dtype=torch.float64)
        teacher_grad = draw(st.booleans(), label="teacher requires grad")
        case.params = [("teacher", draw(teacher_tensor(op, shape, dtype)), teacher_grad)]
    else:  # an op this file does not know: its table cases and make_params (seeded for replay)
        cases = op.cases_for(shape)
        assume(len(cases) > 0)
        case.kwargs = dict(draw(st.sampled_from(cases), label="kwargs"))
        if op.param_names:
            seed = draw(st.integers(0, 2**32 - 1), label="params seed")
            per_channel = draw(st.booleans(), label="per channel")
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                made = op.make_params(shape, dtype, "cpu", per_channel)
            case.params = [(n, p, op.params_require_grad) for n, p in zip(op.param_names, made)]
    return case


# ---------------------------------------------------------------------------------------------------------------
# Tolerances (the bounds themselves: tests/bounds.py)
# ---------------------------------------------------------------------------------------------------------------
def _opmath_max(dtype) -> float:
    return torch.finfo(torch.float64 if dtype == torch.float64 else torch.float32).max


def _acc_max(dtype, backend_name) -> float:
    """Largest magnitude the intermediates of a backend's sums hold: the opmath type's for our kernels (16-bit data
    computed in float32), the dtype's own for the reference backend (PyTorch eager keeps some 16-bit intermediates in
    16 bits, e.g. F.prelu's weight gradient in float16)."""
    if backend_name == "reference":
        return torch.finfo(dtype).max
    return _opmath_max(dtype)


def _overflow_accepted(ours: torch.Tensor, ref64: torch.Tensor, dtype, undefined_where: torch.Tensor) -> torch.Tensor:
    """`ours`, except where `undefined_where` says an intermediate of the computation exceeds the accumulator's range
    (a sum of |terms| beyond it, whose partial sums may overflow and give inf - inf = NaN; or a term's own factor
    beyond it): there a non-finite result, or a finite one where the correctly rounded result overflows the dtype,
    carries no information and is replaced by the reference's value."""
    o = ours.detach().cpu()
    r = ref64.detach().cpu().to(dtype)
    undefined = undefined_where.cpu() & (~torch.isfinite(o) | ~torch.isfinite(r))
    return torch.where(undefined, r, o)


def _param_contributions(op, x64, params64, kwargs, dy64, index):
    """d y_j / d p * dy_j for every element j of x (shaped like x): the terms that the gradient of parameter `index`
    sums. Each element is made its own channel: x as [1, N] with the parameters broadcast to N elements (valid for
    parameters of 1 or C = x.size(1) elements along dim 1). Terms of infinite or NaN inputs are set to 0: they make
    the gradient non-finite rather than scale its rounding errors."""
    x = x64.detach()
    n = x.numel()
    flat = []
    for p in params64:
        full = p.detach().reshape(channel_view_shape(x, p)).expand(x.shape) if x.dim() else p.detach().reshape(())
        flat.append(full.reshape(n).clone().requires_grad_())
    y = op.reference(x.reshape(1, n), *flat, **kwargs)
    (g,) = torch.autograd.grad(y, [flat[index]], dy64.reshape(1, n))
    g = _fin(g).reshape(x.shape)
    return torch.where(torch.isfinite(x), g, torch.zeros_like(g))


# ---------------------------------------------------------------------------------------------------------------
# The test
# ---------------------------------------------------------------------------------------------------------------
def fuzz_one(op, backend, data, max_numel, long_rows):
    name, device = backend
    shape = data.draw(shapes(_min_ndim(op), max_numel, long_rows), label="shape")
    if op.gated is not None and shape[-1] % 2:  # (the gate and the value: the halves of an even last dim)
        shape = (*shape[:-1], shape[-1] + 1)
    dtype = data.draw(st.sampled_from(DTYPES), label="dtype")
    inplace = op.inplace and data.draw(st.booleans(), label="inplace")
    with_grad = data.draw(st.sampled_from([True, True, True, False]), label="autograd")
    layout = data.draw(layouts(shape, allow_expand=not inplace), label="x layout")
    vals = data.draw(values(layout.base_shape(), dtype, op), label="x values (float64, before rounding)")
    case = data.draw(op_case(op, shape, dtype), label="op arguments")
    kwargs = case.kwargs
    buf, x = materialize(vals, layout, dtype)
    note(f"{op.name}[{name}] {layout} dtype={dtype} inplace={inplace} autograd={with_grad}")
    note(f"kwargs={ {k: (v.tolist() if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()} }")
    note(_describe("x", x))
    for pname, p, req in case.params:
        note(_describe(pname, p) + f" requires_grad={req}")

    def dev(t):
        return t.to(device) if t.device.type != device else t

    buf = dev(buf)
    x = buf.as_strided(layout.shape, layout.strides, layout.offset)
    buf_bits = bits(buf)
    params = [(pname, dev(p), req and with_grad) for pname, p, req in case.params]
    param_bits = [bits(p) for _, p, _ in params]
    tt = case.temperature if with_grad else None  # a temperature tensor whose gradient is checked
    if tt is None and isinstance(kwargs.get("temperature"), torch.Tensor):
        kwargs["temperature"] = kwargs["temperature"].detach()
    t_bits = bits(kwargs["temperature"]) if isinstance(kwargs.get("temperature"), torch.Tensor) else None
    what = f"{op.name}[{name}, {dtype}, {layout}, inplace={inplace}]"

    # ---- ours ----
    grad_inputs, leaf_buf = [], None
    with torch.set_grad_enabled(with_grad):
        if inplace:
            # In place on a view of a non-leaf buffer (as after a layer), so that autograd records it.
            leaf_buf = buf.clone().requires_grad_(with_grad)
            work = leaf_buf.clone() if with_grad else leaf_buf.detach()
            xv = work.as_strided(layout.shape, layout.strides, layout.offset)
            y = op.fn(xv, inplace=True, **kwargs)
            assert y is xv, f"{what}: inplace=True must return its input"
            # Only the view's elements may change: the gaps of the buffer keep their NaN bit for bit.
            changed = bits(work) != buf_bits
            inside = torch.zeros(work.numel(), dtype=torch.bool, device=work.device)
            inside.as_strided(layout.shape, layout.strides, layout.offset).fill_(True)
            assert not (changed & ~inside).any(), f"{what}: wrote outside the view"
        else:
            xin = x.detach().requires_grad_() if with_grad else x
            ptensors = [p.detach().requires_grad_() if req else p for _, p, req in params]
            y = op.fn(xin, *ptensors, **kwargs)
            if with_grad:
                grad_inputs = [xin] + [p for p, (_, _, req) in zip(ptensors, params) if req]
                grad_inputs += [tt] if tt is not None else []
    assert y.dtype == dtype and y.device == x.device, f"{what}: output {y.dtype} on {y.device}"
    if not inplace:
        if name != "reference":  # (the reference backend returns what torch's ops return)
            # contiguous; the element-wise ops keep a channels_last input's format (glo_kernels._layout.dense_format)
            if op.name == "maxout":  # over the channels (dim 1) only: glo_kernels._layout.maxout_format
                fmt = maxout_format(x, kwargs["dim"])
            else:
                fmt = dense_format(x) if op.name in FORMAT_KEEPING_OPS else torch.contiguous_format
            assert y.is_contiguous(memory_format=fmt), f"{what}: output is not {fmt} (strides {y.stride()})"
        if y.numel() and buf.numel():
            assert y.untyped_storage().data_ptr() != buf.untyped_storage().data_ptr(), f"{what}: output aliases x"

    dy, grads = None, []
    if with_grad:
        dy_layout = data.draw(layouts(tuple(y.shape), allow_expand=True), label="dy layout")
        dy_scale = data.draw(st.sampled_from([1.0, 1e-3, 1e3]), label="dy scale")
        dy_seed = data.draw(st.integers(0, 2**32 - 1), label="dy seed")
        dy_vals = dy_scale * torch.randn(dy_layout.base_shape(), dtype=torch.float64,
                                         generator=torch.Generator().manual_seed(dy_seed))
        dy = dev(materialize(dy_vals, dy_layout, dtype)[1])
        note(_describe("dy", dy))
        if inplace:
            (gbuf,) = torch.autograd.grad(y, [leaf_buf], dy)
            grads = [gbuf.as_strided(layout.shape, layout.strides, layout.offset)]
        else:
            grads = list(torch.autograd.grad(y, grad_inputs, dy))

    # ---- inputs untouched, bit for bit (NaN payloads and signs of zero included) ----
    if not inplace:
        assert torch.equal(buf_bits, bits(buf)), f"{what}: x (or the gaps of its buffer) was modified"
    for (pname, p, _), before in zip(params, param_bits):
        assert torch.equal(before, bits(p)), f"{what}: {pname} was modified"
    if t_bits is not None:
        assert torch.equal(t_bits, bits(kwargs["temperature"])), f"{what}: the temperature tensor was modified"

    # ---- float64 reference on the same values, and eager PyTorch in this dtype (the error baseline) ----
    def clone_kwargs(conv):
        return {k: (conv(v) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}

    x64 = x.detach().cpu().double().contiguous().requires_grad_(with_grad)
    p64 = [p.detach().cpu().double().requires_grad_(req) for _, p, req in params]
    t64 = tt.detach().double().requires_grad_() if tt is not None else None
    kw64 = clone_kwargs(lambda v: t64 if (tt is not None and v is tt) else v.detach().double())
    # (the softmax family's reference forms (x - max) / T, as the kernels, and follows docs/softmax_contract.md where
    # a teacher probability is 0; on float64 copies it is the float64 reference)
    ref_fn = op.reference
    if op.name == "distillation_loss" and dtype != torch.float64:
        ref_fn = functools.partial(op.reference, p_min=2.0**-149)  # float32's smallest subnormal
    with torch.set_grad_enabled(with_grad):
        y64 = ref_fn(x64, *p64, **kw64)
    # Exact ops are compared with torch's own op (op.reference in this dtype); others with the eager composite.
    eager_fn = op.reference if op.exact else (op.eager or op.reference)
    xe = x.detach().cpu().contiguous().clone().requires_grad_(with_grad)
    pe = [p.detach().cpu().clone().requires_grad_(req) for _, p, req in params]
    te = tt.detach().clone().requires_grad_() if tt is not None else None
    # (a 1-element temperature enters eager as 0-d: x / T must not broadcast a 0-d x to [1])
    kwe = clone_kwargs(lambda v: te.reshape(()) if (tt is not None and v is tt) else v.detach().clone().reshape(()))
    try:
        with torch.set_grad_enabled(with_grad), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ye = eager_fn(xe, *pe, **kwe)
    except (RuntimeError, IndexError, ValueError):  # e.g. the grouped eager composite (split) on a 0-d input
        ye = None
    grads64 = grads_e = None
    if with_grad:
        ins64 = [x64] + [p for p in p64 if p.requires_grad] + ([t64] if t64 is not None else [])
        grads64 = torch.autograd.grad(y64, ins64, dy.detach().cpu().double())
        if ye is not None:
            ins_e = [xe] + [p for p in pe if p.requires_grad] + ([te] if te is not None else [])
            grads_e = torch.autograd.grad(ye, ins_e, dy.detach().cpu(), allow_unused=True)
    assert tuple(y.shape) == tuple(y64.shape), f"{what}: shape {tuple(y.shape)} != reference {tuple(y64.shape)}"

    run = types.SimpleNamespace(op=op, backend=name, what=what, dtype=dtype, case=case, params=params, inplace=inplace,
                                x=x, x64=x64, p64=p64, y=y, y64=y64, ye=ye, dy=dy, grads=grads, grads64=grads64,
                                grads_e=grads_e, acc_max=_acc_max(dtype, name))
    if op.name == "distillation_loss":
        _check_distillation(run)
    elif op.family == "softmax" and case.dim is not None:
        _check_softmax(run)
    else:
        _check_elementwise(run)


def _eager_grad(run, i):
    if run.grads_e is None or i >= len(run.grads_e) or run.grads_e[i] is None:
        return None
    return run.grads_e[i]


def _check_elementwise(run):
    op, what, dtype = run.op, run.what, run.dtype
    rel = op.ulps * EPS[dtype]
    atol_y = atol_db = 0.0
    if op.gated is not None:  # (0 * inf in float32: NaN, as torch's composite; see helpers.with_torch_nan)
        run.y64 = with_torch_nan(run.y64, run.y, run.ye)
        if run.grads64 is not None:
            run.grads64 = (with_torch_nan(run.grads64[0], run.grads[0], _eager_grad(run, 0)), *run.grads64[1:])
        # act(a)'s floor among the subnormals, times |b| in y = act(a) b and times |dy| in db = dy act(a) (found by
        # CI: swiglu, float64, a in (-745, -709.8) with b ~ 1e268)
        a64, b64 = run.x64.detach().chunk(2, dim=-1)
        floor = gated_subnormal_floor(a64, dtype)
        atol_y = floor * _fin(b64).abs()
        if run.dy is not None:
            atol_db = torch.cat([torch.zeros_like(floor), floor * _fin(run.dy).abs()], dim=-1)
    assert_matches_reference(run.y, run.y64, dtype, eager=run.ye, rel=rel, atol=atol_y, what=f"{what} forward")
    if op.exact and run.ye is not None:
        # Same numbers as torch's own op in this dtype, bit for bit (sign of zero included; NaN where it has NaN).
        yc, ec = run.y.detach().cpu(), run.ye.detach()
        nan = torch.isnan(ec)
        assert torch.equal(torch.isnan(yc), nan), f"{what}: NaN positions differ from torch's"
        assert torch.equal(bits(yc)[~nan], bits(ec)[~nan]), (
            f"{what}: not bit for bit torch's result; first differing (ours, torch): "
            f"{[(a, b) for a, b in zip(yc[~nan].tolist(), ec[~nan].tolist()) if repr(a) != repr(b)][:3]}")
    if run.dy is None:
        return
    # Backward from a saved output (sigmoid, tanh, in-place ELU) loses relative accuracy where the derivative is tiny:
    # the error is bounded by a few roundings of |dy| (times alpha for ELU, whose backward forms y + alpha).
    alpha = abs(run.case.kwargs.get("alpha", 1.0))
    scale = op.grad_error_scale(run.x64.detach(), _fin(run.dy))  # (|dy|, or |dy b| for a gated unit's da)
    atol = 0.0 if op.exact else op.ulps * EPS[dtype] * scale * max(1.0, alpha) + atol_db
    assert_matches_reference(run.grads[0], run.grads64[0], dtype, eager=_eager_grad(run, 0), rel=rel, atol=atol,
                             what=f"{what} grad x")
    if op.exact and _eager_grad(run, 0) is not None:
        # The gradient conventions of torch's own op (at 0, -0.0, NaN), value for value.
        ge, gc = run.grads_e[0].detach(), run.grads[0].detach().cpu()
        same = (ge == gc) | (torch.isnan(ge) & torch.isnan(gc))
        assert same.all(), (
            f"{what}: grad x differs from torch's own in this dtype at {torch.nonzero(~same)[:3].tolist()}: ours "
            f"{gc[~same][:3].tolist()} vs torch {ge[~same][:3].tolist()}")
    if run.inplace:
        return
    k = 1
    dy64 = run.dy.detach().cpu().double()
    for i, (pname, p, req) in enumerate(run.params):
        if not req:
            continue
        pref = run.p64[i].detach()
        if run.x.numel() == 0:
            terms = torch.zeros(p.shape, dtype=torch.float64)
            undefined = torch.zeros(p.shape, dtype=torch.bool)
        elif op.param_terms is not None:  # (a bias: its terms are dx's, whose factor act'(x + bias) is O(1))
            terms = _fin(op.param_terms(op, run.x64, run.p64, dy64, run.case.kwargs, pname))
            undefined = terms >= run.acc_max
        else:
            # |terms| summed per parameter element: the scale of the sum's rounding errors; and where the sum, or a
            # term's derivative factor d y_j / d p (e.g. PELU's x / b), exceeds the accumulator's range.
            contrib = _param_contributions(op, run.x64, run.p64, run.case.kwargs, dy64, i)
            terms = reduce_to_param(contrib.abs(), pref)
            partial = _param_contributions(op, run.x64, run.p64, run.case.kwargs, torch.ones_like(dy64), i).abs()
            undefined = (terms >= run.acc_max) | (reduce_to_param((partial >= run.acc_max).double(), pref) > 0)
        ours = _overflow_accepted(run.grads[k], run.grads64[k], dtype, undefined)
        assert_matches_reference(ours, run.grads64[k], dtype, eager=_eager_grad(run, k), rel=rel,
                                 atol=(sum_gamma(run.x.numel() // max(p.numel(), 1), dtype, contiguous=False) + rel) * terms,
                                 what=f"{what} grad {pname}")
        k += 1


def _check_softmax(run):
    op, what, dtype, case = run.op, run.what, run.dtype, run.case
    d = case.dim
    groups = case.kwargs.get("group_sizes")
    temperature = case.kwargs.get("temperature", 1.0)
    T = float(temperature.detach()) if isinstance(temperature, torch.Tensor) else float(temperature)
    tol = softmax_tol(dtype)
    log = op.name == "log_softmax"
    y64, x64 = run.y64, run.x64.detach()
    # (tests/bounds.py: the rounding chain of each element, the row sums in the backend's order, exp's condition)
    atol_y = softmax_forward_atol(x64, y64, d, T, dtype, log, groups, run.backend)
    assert_matches_reference(run.y, y64, dtype, eager=run.ye, rel=tol, atol=atol_y, what=f"{what} forward")
    if run.dy is None:
        return
    g64 = run.grads64[0]
    atol_g = softmax_backward_atol(x64, y64, g64, run.dy, d, T, dtype, log, groups, run.backend)
    assert_matches_reference(run.grads[0], g64, dtype, eager=_eager_grad(run, 0), rel=tol, atol=atol_g,
                             what=f"{what} grad x")
    if case.temperature is not None:
        # dL/dT = -sum(dx * x) / T from our dx (tests/bounds.py temperature_grad_atol).
        tt = case.temperature
        xs = torch.maximum(_fin(x64).abs(), _fin(x64 - _row_max(x64, d, groups)).abs())
        terms = (_fin(g64) * xs).abs().sum() / T
        atol_t = temperature_grad_atol(x64, g64, atol_g, d, T, dtype, groups)
        eps_t = max(EPS[dtype], EPS[tt.dtype])
        k = len(run.grads) - 1
        # (dT is formed from dx in the data's dtype (temperature_grad of csrc/autograd.cpp): where dx itself overflows
        # that dtype, dT is not defined either)
        dx_overflows = _fin(g64).abs().max() >= torch.finfo(dtype).max if g64.numel() else torch.tensor(False)
        ours = _overflow_accepted(run.grads[k], run.grads64[k], tt.dtype, (terms >= run.acc_max) | dx_overflows)
        assert_matches_reference(ours, run.grads64[k], tt.dtype, eager=_eager_grad(run, k), rel=2 * eps_t,
                                 atol=torch.tensor(atol_t), what=f"{what} grad temperature")


def _check_distillation(run):
    what, dtype, case = run.what, run.dtype, run.case
    T = float(case.kwargs["temperature"])
    reduction = case.kwargs["reduction"]
    s, teacher = run.x, run.params[0][1]
    b = distillation_bounds(s, teacher, T, reduction, dtype, grad=run.dy, backend=run.backend)
    assert_matches_reference(run.y, run.y64, dtype, eager=run.ye, rel=b.rel, atol=b.loss, what=f"{what} forward")
    if run.dy is None:
        return
    assert_matches_reference(run.grads[0], run.grads64[0], dtype, eager=_eager_grad(run, 0), rel=b.rel,
                             atol=b.student, what=f"{what} grad student")
    if run.params[0][2]:
        # A row whose KL is +inf (log q_j = -inf, a student logit of -inf, where p_j > 0) has no teacher gradient:
        # the contract's dt_j = G inv_t p_j (r_j - kl) is inf - inf there (and 0 where p_j == 0), the composites
        # give 0 * inf = NaN through the softmax. Only its non-finite values are accepted in such rows.
        s64, t64 = s.detach().cpu().double(), teacher.detach().cpu().double()
        ls = torch.log_softmax((s64 - _row_max(s64, -1)) / T, -1)
        lt = torch.log_softmax((t64 - _row_max(t64, -1)) / T, -1)
        inf_kl = ((ls == -math.inf) & (lt > -math.inf)).any(-1, keepdim=True).expand_as(ls)
        ours = _overflow_accepted(run.grads[1], run.grads64[1], dtype, inf_kl)
        assert_matches_reference(ours, run.grads64[1], dtype, eager=_eager_grad(run, 1), rel=b.rel,
                                 atol=b.teacher, what=f"{what} grad teacher")


@pytest.mark.parametrize("op", OP_PARAMS)
@pytest.mark.parametrize("backend", NATIVE_BACKENDS, indirect=True)
@settings(FUZZ_SETTINGS, max_examples=NATIVE_EXAMPLES)
@given(data=st.data())
def test_fuzz(op, backend, data):
    """Every op on a native backend (CPU kernels, the reference, CUDA when there is a GPU)."""
    fuzz_one(op, backend, data, NATIVE_MAX_NUMEL, long_rows=True)


@pytest.mark.parametrize("op", OP_PARAMS)
@pytest.mark.parametrize("backend", INTERPRETED_BACKENDS, indirect=True)
@settings(FUZZ_SETTINGS, max_examples=INTERPRETED_EXAMPLES)
@given(data=st.data())
def test_fuzz_interpreted(op, backend, data):
    """Every op on Triton under its interpreter (CPU tensors): fewer examples, smaller tensors."""
    fuzz_one(op, backend, data, INTERPRETED_MAX_NUMEL, long_rows=False)
