"""Reliability of every op (glo_kernels._registry.ALL_OPS) on every backend that runs here.

1. Inputs are never modified unless in-place was asked: x, learned parameters, the teacher, a temperature tensor and
   the upstream gradient, through the public API (forward with autograd, then torch.autograd.grad) and through the
   registered forward and backward operators called directly; outputs never alias inputs; in-place calls modify
   exactly the elements of x and nothing else.
2. Determinism: repeated calls give bitwise the same outputs and gradients (parameter-gradient reductions included),
   and the cpu backend gives the same bits with 1 and 2 threads.
3. Tensors of more than 2^31 elements (bfloat16, about 4.3 GB each; marked slow).
4. Thread safety: several Python threads calling at once get the serial results, bit for bit.
5. Bad input: an error naming the op and the argument, raised before any kernel runs (the inputs are unchanged and
   no operator is dispatched).

Comparisons are bitwise: floating tensors are compared through an integer view of their bits (so NaN payloads and
the sign of zero count), and "unchanged" means every byte of the tensor's storage (the gaps of strided views too).
Five bugs this file found (in-place on a leaf wrote x before failing; thread-count-dependent sums for a learned
temperature's gradient and a reduced distillation loss; unnamed errors for a temperature on another device and for
group_sizes of the wrong type) are fixed; their tests below guard them.
"""
from __future__ import annotations

import concurrent.futures
import resource
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import glo_kernels
from glo_kernels._registry import ALL_OPS, ALL_OPS_BY_NAME, OPS
from op_db import BIAS, GATED, UNARY
from helpers import make_input, seeded, non_contiguous

# NaN and inf inputs make the Triton interpreter's numpy arithmetic warn; the values are checked, not the warnings.
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter"),
              pytest.mark.filterwarnings("ignore:invalid value encountered in reduce:RuntimeWarning:numpy")]

_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
             torch.float16: torch.int16}


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------
def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bits as integers (floating dtypes), so that equality is bitwise and NaN-aware."""
    t = t.detach()
    return t.view(_INT_VIEW[t.dtype]) if t.dtype in _INT_VIEW else t


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and torch.equal(_bits(a), _bits(b))


def _storage_bytes(t: torch.Tensor) -> torch.Tensor:
    """Every byte of t's storage (for a view: the whole buffer it lives in, gaps included)."""
    return torch.empty(0, dtype=torch.uint8, device=t.device).set_(t.untyped_storage())


def _snapshot(**tensors) -> dict:
    """Copies of the storages of the named tensors (None and meta tensors are skipped)."""
    return {k: (t, _storage_bytes(t).clone()) for k, t in tensors.items()
            if isinstance(t, torch.Tensor) and t.device.type != "meta"}


def _assert_unchanged(snap: dict, what: str) -> None:
    for name, (t, before) in snap.items():
        now = _storage_bytes(t)
        if not torch.equal(now, before):
            raise AssertionError(f"{what}: input '{name}' was modified "
                                 f"({int((now != before).sum())} of {before.numel()} bytes differ)")


def _flat_tensors(out) -> list:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat_tensors(o)]
    return []


def _assert_no_alias(outputs, inputs: dict, what: str) -> None:
    """No output shares memory (storage) with any input."""
    ptrs = {name: t.untyped_storage().data_ptr() for name, t in inputs.items()
            if isinstance(t, torch.Tensor) and t.numel() > 0 and t.device.type != "meta"}
    for i, o in enumerate(_flat_tensors(outputs)):
        if o.numel() == 0:
            continue
        p = o.untyped_storage().data_ptr()
        for name, q in ptrs.items():
            assert p != q, f"{what}: output {i} aliases input '{name}'"


def _ns(backend_name: str):
    """The torch.ops namespace of a backend's registered operators (None for the reference backend)."""
    if backend_name in ("cpu", "cuda"):
        return torch.ops.glo_kernels
    if backend_name == "triton":
        return torch.ops.glo_kernels_triton
    return None


def _strided_like(t: torch.Tensor, layout: str) -> torch.Tensor:
    return non_contiguous(t) if layout == "strided" and t.dim() > 0 else t


def _grouped_sizes(size: int) -> list[int]:
    return [size] if size < 3 else [1, size // 2, size - size // 2 - 1]


# ---------------------------------------------------------------------------------------------------------------
# Cases: one op call each (input, learned tensors, scalar arguments, which tensors get gradients)
# ---------------------------------------------------------------------------------------------------------------
class Case:
    """One call of op.fn(x, *params, **kwargs); kwargs["temperature"] may be a tensor (learned when it requires
    grad). params_grad says which params get a gradient (a frozen teacher does not)."""

    def __init__(self, op, x, params=(), kwargs=None, params_grad=None, label=""):
        self.op, self.x, self.params = op, x, list(params)
        self.kwargs = dict(kwargs or {})
        self.params_grad = list(params_grad) if params_grad is not None else [True] * len(self.params)
        self.label = label

    def tensors(self) -> dict:
        d = {"x": self.x}
        names = self.op.param_names or tuple(f"p{i}" for i in range(len(self.params)))
        d.update(zip(names, self.params))
        tt = self.kwargs.get("temperature")
        if isinstance(tt, torch.Tensor):
            d["temperature"] = tt
        return d

    def __repr__(self):
        return f"{self.op.name}[{self.label}, {tuple(self.x.shape)}, {self.x.dtype}]"

    def forward(self):
        """Leaves sharing the inputs' storage (detach), the output, and the tensors to differentiate."""
        xo = self.x.detach().requires_grad_()
        po = [p.detach().requires_grad_(g) for p, g in zip(self.params, self.params_grad)]
        kw = dict(self.kwargs)
        wrt = [xo] + [p for p in po if p.requires_grad]
        tt = kw.get("temperature")
        if isinstance(tt, torch.Tensor) and tt.requires_grad:
            kw["temperature"] = tt.detach().requires_grad_()
            wrt.append(kw["temperature"])
        y = self.op.fn(xo, *po, **kw)
        return y, wrt

    def run(self, dy_seed: int = 0):
        """Forward and backward: [y, *grads] (the upstream gradient is random with a fixed seed)."""
        y, wrt = self.forward()
        dy = make_input(y.shape, y.dtype, y.device, specials=False, generator=torch.Generator().manual_seed(dy_seed))
        grads = torch.autograd.grad(y, wrt, dy)
        return [y.detach(), *grads]


def _op_cases(op, shape, dtype, device, gen, specials=True, learned_t=True, per_channel=(False, True),
              dims=None, reductions=("batchmean", "none"), max_kwargs=None) -> list[Case]:
    """The calls of one op on one shape: its scalar-argument cases, per-channel or shared parameters, number and
    learned temperatures, frozen and learned teachers."""

    def x_():
        return make_input(shape, dtype, device, specials=specials, generator=gen)

    cases = []
    if op.family == "elementwise":
        kw_cases = op.cases_for(shape)
        if max_kwargs is not None:
            kw_cases = kw_cases[-max_kwargs:]
        for kwargs in kw_cases:
            for pc in per_channel if op.param_names else (False,):
                params = op.make_params(shape, dtype, device, pc)
                cases.append(Case(op, x_(), params, kwargs, label=f"{kwargs}, per_channel={pc}"))
        return cases
    temps = [2.0] + ([torch.tensor(2.0, device=device, requires_grad=True)] if learned_t else [])
    for dim in dims or (-1,):
        d = dim % len(shape)
        for t in temps:
            t_label = "T tensor" if isinstance(t, torch.Tensor) else f"T={t}"
            if op.name in ("softmax", "log_softmax"):
                cases.append(Case(op, x_(), (), {"dim": dim, "temperature": t}, label=f"dim={dim}, {t_label}"))
            elif op.name == "grouped_softmax":
                sizes = _grouped_sizes(shape[d])
                cases.append(Case(op, x_(), (), {"group_sizes": sizes, "dim": dim, "temperature": t},
                                  label=f"dim={dim}, groups={sizes}, {t_label}"))
    if op.name == "distillation_loss":
        for reduction in reductions:
            for teacher_grad in (False, True):
                teacher = make_input(shape, dtype, device, specials=specials, generator=gen)
                cases.append(Case(op, x_(), (teacher,), {"temperature": 2.0, "reduction": reduction},
                                  params_grad=(teacher_grad,),
                                  label=f"reduction={reduction}, teacher_grad={teacher_grad}"))
    return cases


_DTYPES = (torch.float32, torch.bfloat16)
_dtype_ids = lambda d: str(d).replace("torch.", "")  # noqa: E731


# ---------------------------------------------------------------------------------------------------------------
# 1. Inputs are never modified unless in-place was asked; outputs never alias inputs
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", _DTYPES, ids=_dtype_ids)
@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_public_api_leaves_inputs_and_grads_alone(op, backend, dtype, layout):
    """Forward (autograd recording) and backward with an upstream gradient tensor: x, the parameters, the teacher, a
    temperature tensor and the upstream gradient keep every bit of their storage (gaps of strided views included);
    no output or gradient shares memory with any of them. Inputs and gradients hold NaN, +-inf, -0.0, huge values."""
    name, device = backend
    gen = seeded("inputs", op.name, name, str(dtype), layout)
    torch.manual_seed(0)
    shape = (4, 6, 10)
    for case in _op_cases(op, shape, dtype, device, gen, dims=(-1, 1)):
        case.x = _strided_like(case.x, layout)
        case.params = [_strided_like(p, layout) for p in case.params]
        what = f"{case} on {name}, {layout}"
        inputs = case.tensors()
        snap = _snapshot(**inputs)
        y, wrt = case.forward()
        _assert_unchanged(snap, f"{what} forward")
        _assert_no_alias(y, inputs, f"{what} forward")
        dy = _strided_like(make_input(y.shape, dtype, device, generator=gen), layout)
        snap = _snapshot(**inputs, grad=dy)
        grads = torch.autograd.grad(y, wrt, dy)
        _assert_unchanged(snap, f"{what} backward")
        _assert_no_alias(grads, {**inputs, "grad": dy, "y": y}, f"{what} backward")


def _call_every_registered_op(ns, x, g, w, a, b, tt, call) -> None:
    """Calls every registered forward and backward operator of namespace ns through call(name, *args), which
    returns the outputs: x has shape (4, 6, 10), g is an upstream gradient of x's shape; saved tensors (masks,
    indices, outputs, statistics) come from the forward operators."""
    y, mask = call("relu", x, True)
    call("relu_backward", g, mask)
    for slope in (0.2, -0.5):
        y, mask = call("leaky_relu", x, slope, True)
        call("leaky_relu_backward", g, mask, slope)
    y = call("elu", x, 1.5)
    call("elu_backward", g, x, 1.5, False)
    call("elu_backward", g, y, 1.5, True)
    for beta, threshold in ((1.0, 20.0), (2.0, 1.0)):
        call("softplus", x, beta, threshold)
        call("softplus_backward", g, x, beta, threshold)
    for spec in UNARY:
        y = call(spec.name, x)
        call(spec.name + "_backward", g, x if spec.saved == "x" else y)
    gh = g[..., :5] if g.is_contiguous() else g[..., :10:2]  # an upstream gradient of a gated unit's [4, 6, 5]
    for spec in GATED:
        call(spec.name, x)
        call(spec.name + "_backward", gh, x)
        call(spec.name + "_pair", x, g)
        call(spec.name + "_pair_backward", g, x, g)
    bias = torch.linspace(-1.0, 2.0, 10, dtype=x.dtype, device=x.device)
    for spec in BIAS:
        call(spec.name, x, bias)
        call(spec.name + "_backward", g, x, bias)
    for weight in (w, w[:1]):
        call("prelu", x, weight)
        call("prelu_backward", g, x, weight)
    for pa, pb in ((a, b), (a[:1], b[:1])):
        call("pelu", x, pa, pb)
        call("pelu_backward", g, x, pa, pb)
    for pieces, dim in ((2, 1), (5, 2), (4, 0)):
        y, idx = call("maxout", x, pieces, dim, True)
        gy = torch.randn_like(y)
        call("maxout_backward", gy if g.is_contiguous() else non_contiguous(gy), idx, pieces, dim)
    for t, t_tensor in ((2.0, None), (1.0, tt)):
        for dim in (-1, 1):
            for name in ("softmax", "log_softmax"):
                y = call(name, x, dim, t, t_tensor)
                call(name + "_backward", g, y, dim, t, t_tensor)
            sizes = _grouped_sizes(x.shape[dim])
            y = call("grouped_softmax", x, sizes, dim, t, t_tensor)
            call("grouped_softmax_backward", g, y, sizes, dim, t, t_tensor)
    teacher = x.flip(0) if x.is_contiguous() else non_contiguous(x.flip(0))
    for reduction in ("batchmean", "none", "sum", "mean"):
        loss, stats = call("distillation_loss", x, teacher, 2.0, reduction)
        gl = g if reduction == "none" else torch.tensor(1.5, dtype=x.dtype, device=x.device)
        for teacher_grad in (False, True):
            call("distillation_loss_backward", gl, x, teacher, stats, 2.0, reduction, teacher_grad)


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
@pytest.mark.parametrize("dtype", _DTYPES, ids=_dtype_ids)
def test_registered_ops_leave_inputs_alone(backend, dtype, layout):
    """Every registered forward and backward operator (torch.ops.glo_kernels.* for cpu/cuda,
    torch.ops.glo_kernels_triton.* for triton) called directly: none of its tensor arguments changes (upstream
    gradients and saved masks, indices, outputs and statistics included) and no output aliases any of them."""
    name, device = backend
    ns = _ns(name)
    if ns is None:
        pytest.skip("the reference backend has no registered operators (plain torch ops)")
    gen = seeded("registered", name, str(dtype), layout)
    x = _strided_like(make_input((4, 6, 10), dtype, device, generator=gen), layout)
    g = _strided_like(make_input((4, 6, 10), dtype, device, generator=gen), layout)
    w = torch.tensor([0.25, -0.5, 1.5, 0.0, 2.0, 0.75], dtype=dtype, device=device)
    a = torch.linspace(0.2, 2.0, 6, dtype=dtype, device=device)
    b = torch.linspace(1.9, 0.3, 6, dtype=dtype, device=device)
    tt = torch.tensor(1.7, device=device)
    called = []

    def call(op_name, *args):
        tensors = {f"arg{i}": v for i, v in enumerate(args) if isinstance(v, torch.Tensor)}
        snap = _snapshot(**tensors)
        out = getattr(ns, op_name)(*args)
        what = f"{ns.name}.{op_name}[{name}, {dtype}, {layout}]"
        _assert_unchanged(snap, what)
        _assert_no_alias(out, tensors, what)
        called.append(op_name)
        return out

    _call_every_registered_op(ns, x, g, w, a, b, tt, call)
    assert set(called) >= {op.name for op in ALL_OPS} | {op.name + "_backward" for op in ALL_OPS}


_INPLACE_OPS = [op for op in OPS if op.inplace]


def _view_in_buffer(buf: torch.Tensor, layout: str) -> torch.Tensor:
    """A (5, 40) view of buf (1-D, 5 * 80 + 16 elements): with margins ("offset") or every other element."""
    if layout == "offset":
        return buf[8:8 + 200].view(5, 40)
    return buf[8:8 + 400].view(5, 80)[:, ::2]


@pytest.mark.parametrize("layout", ["offset", "strided"])
@pytest.mark.parametrize("op", _INPLACE_OPS, ids=lambda op: op.name)
def test_inplace_modifies_exactly_x(op, backend, layout):
    """inplace=True returns x, gives x the out-of-place result bit for bit and writes nothing else: not the rest of
    the buffer x is a view of, not the leaf it was computed from, not the upstream gradient of its backward."""
    name, device = backend
    gen = seeded("inplace", op.name, name, layout)
    for kwargs in op.cases_for((5, 40)):
        what = f"{op.name}[{name}, {layout}, {kwargs}]"
        buf = make_input((416,), torch.float32, device, generator=gen)
        bystander = make_input((416,), torch.float32, device, generator=gen)
        expected_buf = buf.clone()
        _view_in_buffer(expected_buf, layout).copy_(op.fn(_view_in_buffer(buf, layout).clone(), **kwargs))
        snap = _snapshot(bystander=bystander)

        # without autograd
        x = _view_in_buffer(buf, layout)
        out = op.fn(x, inplace=True, **kwargs)
        assert out is x, f"{what}: the result is not x"
        assert _same_bits(buf, expected_buf), f"{what}: the buffer differs from 'x <- op(x)' (no autograd)"
        _assert_unchanged(snap, what)

        # with autograd: x is a view of a non-leaf
        leaf = make_input((416,), torch.float32, device, generator=gen).requires_grad_()
        snap = _snapshot(leaf=leaf, bystander=bystander)
        expected_buf = leaf.detach().clone()
        _view_in_buffer(expected_buf, layout).copy_(op.fn(_view_in_buffer(expected_buf, layout).clone(), **kwargs))
        h = leaf * 1.0
        x = _view_in_buffer(h, layout)
        out = op.fn(x, inplace=True, **kwargs)
        assert out is x and out.data_ptr() == _view_in_buffer(h, layout).data_ptr(), what
        assert _same_bits(h, expected_buf), f"{what}: the buffer differs from 'x <- op(x)' (autograd)"
        _assert_unchanged(snap, f"{what} forward")
        dy = non_contiguous(make_input((5, 40), torch.float32, device, generator=gen))
        snap = _snapshot(leaf=leaf, bystander=bystander, grad=dy, h=h)
        (g,) = torch.autograd.grad(out, leaf, dy)
        _assert_unchanged(snap, f"{what} backward")
        _assert_no_alias(g, {"grad": dy, "leaf": leaf, "h": h}, f"{what} backward")
        # the gradient reaches the elements of the view only
        outside = torch.ones(416, dtype=torch.bool, device=device)
        _view_in_buffer(outside, layout).fill_(False)
        assert torch.equal(g[outside], torch.zeros_like(g[outside])), f"{what}: gradient outside the view"


@pytest.mark.parametrize("layout", ["offset", "strided"])
def test_registered_inplace_ops_write_only_x(backend, layout):
    """relu_, leaky_relu_, elu_ and the in-place ops of the unary family (sigmoid_, tanh_, ...) called directly on a
    view write exactly the view's elements; the returned mask does not alias the buffer."""
    name, device = backend
    ns = _ns(name)
    if ns is None:
        pytest.skip("the reference backend has no registered operators (plain torch ops)")
    gen = seeded("registered-inplace", name, layout)
    for op_name, args, ref in (("relu_", (True,), lambda v: ns.relu(v, False)[0]),
                               ("relu_", (False,), lambda v: ns.relu(v, False)[0]),
                               ("leaky_relu_", (-0.5, True), lambda v: ns.leaky_relu(v, -0.5, False)[0]),
                               ("leaky_relu_", (0.2, False), lambda v: ns.leaky_relu(v, 0.2, False)[0]),
                               ("elu_", (0.7,), lambda v: ns.elu(v, 0.7)),
                               *((spec.name + "_", (), getattr(ns, spec.name)) for spec in UNARY)):
        buf = make_input((416,), torch.float32, device, generator=gen)
        expected = buf.clone()
        _view_in_buffer(expected, layout).copy_(ref(_view_in_buffer(buf, layout).clone()))
        out = getattr(ns, op_name)(_view_in_buffer(buf, layout), *args)
        what = f"{ns.name}.{op_name}{args}[{name}, {layout}]"
        assert _same_bits(buf, expected), f"{what}: wrote outside x or wrote wrong values"
        _assert_no_alias(out, {"x": buf}, what)


# ---------------------------------------------------------------------------------------------------------------
# 2. Determinism
# ---------------------------------------------------------------------------------------------------------------
def _determinism_cases(op, device, large: bool, dtype, learned_t=True) -> list[Case]:
    """Shapes that exercise the multi-threaded reductions on the CPU (large), or small ones (Triton interpreter)."""
    gen = seeded("determinism", op.name, str(dtype), large)
    torch.manual_seed(1)
    kw = dict(specials=False, learned_t=learned_t)  # finite values: a NaN would hide a difference in a sum
    if op.family == "elementwise":
        if not op.param_names:  # no reduction: one scalar-argument case is enough
            kw["max_kwargs"] = 1
        if not large:
            return _op_cases(op, (4, 8, 5, 3), dtype, device, gen, **kw)
        cases = _op_cases(op, (64, 32, 33, 17), dtype, device, gen, **kw)
        if op.param_names:  # channels innermost: the other reduction path
            cases += _op_cases(op, (4096, 300), dtype, device, gen, per_channel=(True,), **kw)
        return cases
    if op.name == "distillation_loss":
        shape = (16, 5000) if large else (4, 500)
        return _op_cases(op, shape, dtype, device, gen, reductions=("batchmean", "none"), **kw)
    if large:
        return (_op_cases(op, (8, 70000), dtype, device, gen, dims=(-1,), **kw)
                + _op_cases(op, (2, 70000, 6), dtype, device, gen, dims=(1,), **kw))
    return (_op_cases(op, (3, 500), dtype, device, gen, dims=(-1,), **kw)
            + _op_cases(op, (2, 50, 6), dtype, device, gen, dims=(1,), **kw))


def _assert_same_results(a: list, b: list, what: str) -> None:
    names = ["output"] + [f"gradient {i}" for i in range(len(a) - 1)]
    for n, u, v in zip(names, a, b):
        if not _same_bits(u, v):
            diff = (u.double() - v.double()).abs().nan_to_num(float("inf")).max().item() if u.shape == v.shape else None
            raise AssertionError(f"{what}: {n} differs (max abs difference {diff})")


@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_repeated_calls_are_bitwise_identical(op, backend):
    """The same input gives the same bits three times: outputs, input gradients and parameter / teacher /
    temperature gradients. cpu: large shapes (multi-threaded reductions), float32 and bfloat16; reference (plain
    torch): large shapes, float32; Triton under its interpreter: small shapes, float32."""
    name, device = backend
    large = not (name == "triton" and device == "cpu")
    dtypes = _DTYPES if name == "cpu" else (torch.float32,)
    for dtype in dtypes:
        for case in _determinism_cases(op, device, large, dtype):
            first = case.run()
            for rep in (1, 2):
                _assert_same_results(first, case.run(), f"{case} on {name}, call {rep + 1} vs call 1")


class _threads:
    """torch.set_num_threads(n) inside a with block (restored after)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.saved = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def _cpu_backend():
    if not glo_kernels.available_backends()["cpu"].available:
        pytest.skip(f"backend cpu: {glo_kernels.available_backends()['cpu'].reason}")
    return glo_kernels.use_backend("cpu")


@pytest.mark.parametrize("dtype", _DTYPES, ids=_dtype_ids)
@pytest.mark.parametrize("op", ALL_OPS, ids=lambda op: op.name)
def test_cpu_results_do_not_depend_on_the_thread_count(op, dtype):
    """cpu backend: 1 and 2 threads give the same bits (outputs and every gradient), as the kernels' fixed tilings
    promise. Learned temperatures and distillation losses over many rows are tested apart (known failures)."""
    with _cpu_backend():
        for case in _determinism_cases(op, "cpu", True, dtype, learned_t=False):
            with _threads(1):
                one = case.run()
            with _threads(2):
                two = case.run()
            _assert_same_results(one, two, f"{case}: 1 thread vs 2 threads")


@pytest.mark.parametrize("op_name", ["softmax", "log_softmax", "grouped_softmax"])
def test_cpu_learned_temperature_gradient_does_not_depend_on_the_thread_count(op_name):
    """8 inputs of (8, 70000): the temperature gradient must be the same with 1 and 2 threads for every one."""
    op = ALL_OPS_BY_NAME[op_name]
    differ = []
    with _cpu_backend():
        for seed in range(8):
            x = make_input((8, 70000), torch.float32, specials=False, generator=torch.Generator().manual_seed(seed))
            kwargs = {"dim": -1, "temperature": torch.tensor(2.0, requires_grad=True)}
            if op_name == "grouped_softmax":
                kwargs["group_sizes"] = [30000, 39000, 1000]
            case = Case(op, x, (), kwargs)
            with _threads(1):
                one = case.run()
            with _threads(2):
                two = case.run()
            _assert_same_results(one[:2], two[:2], f"{case}: output / input gradient, 1 vs 2 threads")
            if not _same_bits(one[2], two[2]):
                differ.append((seed, one[2].item(), two[2].item()))
    assert not differ, f"temperature gradient (seed, 1 thread, 2 threads) differs: {differ}"


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean"])
def test_cpu_distillation_loss_over_many_rows_does_not_depend_on_the_thread_count(reduction):
    """8 inputs of (300000, 4): the loss and the student gradient must be the same with 1 and 2 threads."""
    op = ALL_OPS_BY_NAME["distillation_loss"]
    differ = []
    with _cpu_backend():
        for seed in range(8):
            gen = torch.Generator().manual_seed(seed)
            s = make_input((300000, 4), torch.float32, specials=False, generator=gen)
            t = make_input((300000, 4), torch.float32, specials=False, generator=gen)
            case = Case(op, s, (t,), {"temperature": 2.0, "reduction": reduction}, params_grad=(False,))
            with _threads(1):
                one = case.run()
            with _threads(2):
                two = case.run()
            _assert_same_results(one[1:], two[1:], f"{case}: student gradient, 1 vs 2 threads")
            if not _same_bits(one[0], two[0]):
                differ.append((seed, one[0].item(), two[0].item()))
    assert not differ, f"loss (seed, 1 thread, 2 threads) differs: {differ}"


# ---------------------------------------------------------------------------------------------------------------
# 3. More than 2^31 elements
# ---------------------------------------------------------------------------------------------------------------
_BIG = 2**31 + 4099  # odd tail past 2^31
# x[i] = _PATTERN[i % 13]: values whose products with the slopes below are exact in bfloat16.
_PATTERN = torch.tensor([-3.0, -2.5, -2.0, -1.0, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, -1.5], dtype=torch.float64)
_SLOPES = torch.tensor([0.25, 0.5, 0.75, 1.25, 1.5, -0.25, 2.0], dtype=torch.float64)


def _mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def _count(start: int, length: int, r: int, p: int) -> int:
    """How many i in [start, start + length) have i % p == r."""
    return (start + length - 1 - r) // p - (start - 1 - r) // p


@pytest.mark.slow
def test_more_than_2_31_elements_bfloat16_cpu(record_property):
    """relu (forward, autograd backward) on 2^31 + 4099 bfloat16 elements, then prelu with 7 per-channel slopes on
    (3, 7, L) > 2^31 elements (forward, input gradient, weight gradient): elements past 2^31 (the tail, a window
    around 2^31, a random sample over the whole tensor) against closed forms, and the weight gradient (a sum over
    every element) against an exact closed form. At most two 4.3 GB tensors live at once."""
    if _mem_available_gb() < 10:
        pytest.skip(f"needs about 10 GB of free memory, {_mem_available_gb():.1f} GB available")
    t_start = time.perf_counter()
    n, p = _BIG, _PATTERN.numel()
    gen = torch.Generator().manual_seed(2**31)
    idx = torch.cat([torch.arange(n - 5000, n), torch.arange(2**31 - 100, 2**31 + 100),
                     torch.randint(0, n, (100000,), generator=gen)])
    with _cpu_backend():
        x = torch.empty(n, dtype=torch.bfloat16)
        m = n // p
        x[: m * p].view(m, p).copy_(_PATTERN.to(torch.bfloat16).expand(m, p))
        x[m * p:] = _PATTERN[: n - m * p].to(torch.bfloat16)
        xv = _PATTERN[idx % p]  # float64 values of x at idx
        assert torch.equal(x[idx].double(), xv)

        # relu: forward with autograd (saves a 1-bit mask), backward with x itself as the upstream gradient. The
        # backward needs y's metadata only: its 4.3 GB are freed first (which also checks that it does not read y).
        x.requires_grad_()
        y = glo_kernels.relu(x)
        assert y.shape == (n,) and y.dtype == torch.bfloat16
        assert torch.equal(y.detach()[idx].double(), xv.clamp(min=0)), "relu forward wrong past 2^31"
        y.untyped_storage().resize_(0)
        (dx,) = torch.autograd.grad(y, x, x.detach())
        assert torch.equal(dx[idx].double(), torch.where(xv > 0, xv, 0.0)), "relu backward wrong past 2^31"
        del y, dx
        xd = x.detach()
        del x

        # prelu on (3, C, L), C = 7 slopes: forward, then backward with x as the upstream gradient (y freed first:
        # PReLU saves x and the weight)
        C = _SLOPES.numel()
        L = n // (3 * C)
        n2 = 3 * C * L
        assert n2 > 2**31
        xp = xd[:n2].view(3, C, L).requires_grad_()
        w = _SLOPES.to(torch.bfloat16).requires_grad_()
        y = glo_kernels.prelu(xp, w)
        sel = idx[idx < n2]
        xs, ws = _PATTERN[sel % p], _SLOPES[(sel // L) % C]
        ys = torch.where(xs > 0, xs, ws * xs)  # exact in bfloat16
        assert torch.equal(y.detach().reshape(-1)[sel].double(), ys), "prelu forward wrong past 2^31"
        y.untyped_storage().resize_(0)
        dx, dw = torch.autograd.grad(y, [xp, w], xp.detach())
        assert torch.equal(dx.reshape(-1)[sel].double(), ys), "prelu input gradient wrong past 2^31"
        del y, dx, xp, xd
        # dw[c] = sum over the elements of channel c with x <= 0 of x * x: exact in float64 (and in the kernel's
        # float64 accumulators), rounded once to bfloat16
        expected = []
        for c in range(C):
            total = 0.0
            for r in range(p):
                v = _PATTERN[r].item()
                if v < 0:
                    total += sum(_count((k * C + c) * L, L, r, p) for k in range(3)) * v * v
            expected.append(total)
        expected = torch.tensor(expected, dtype=torch.float64).float().to(torch.bfloat16)
        assert _same_bits(dw, expected), f"prelu weight gradient {dw.tolist()} != exact {expected.tolist()}"

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    seconds = time.perf_counter() - t_start
    record_property("peak_rss_gb", round(peak_gb, 2))
    record_property("seconds", round(seconds, 1))
    print(f"\n2^31+ test: {seconds:.1f} s, peak RSS of the process {peak_gb:.2f} GB")
    assert peak_gb < 16, f"peak resident memory {peak_gb:.1f} GB"


# ---------------------------------------------------------------------------------------------------------------
# 4. Thread safety
# ---------------------------------------------------------------------------------------------------------------
def _concurrency_jobs(device) -> list[tuple[Case, int]]:
    """36 calls mixing every op, float32 and bfloat16, small shapes and shapes large enough for the kernels' own
    thread pool, learned temperatures and teachers. Built serially: make_params uses the global generator."""
    torch.manual_seed(3)
    jobs = []
    for i in range(36):
        op = ALL_OPS[i % len(ALL_OPS)]
        shape = (6, 10, 7) if i % 2 == 0 else (8, 32, 130)
        dtype = torch.float32 if i % 3 else torch.bfloat16
        cases = _op_cases(op, shape, dtype, device, seeded("threads", i))
        if not cases:  # (a gated unit on an odd last dim: one more element)
            cases = _op_cases(op, (*shape[:-1], shape[-1] + 1), dtype, device, seeded("threads", i))
        jobs.append((cases[i % len(cases)], 100 + i))
    return jobs


def test_concurrent_calls_match_serial_calls(backend):
    """4 Python threads running forward + backward of a mix of ops on different inputs give the serial results bit
    for bit (twice over, so that the interleavings vary)."""
    name, device = backend
    if name == "triton" and device == "cpu":
        pytest.skip("the Triton interpreter (TRITON_INTERPRET=1) is not thread-safe: it keeps the launch grid in "
                    "global state, and concurrent launches fail with InterpreterError('x >= grid_dim[0]'); "
                    "Triton on a GPU is tested")
    jobs = _concurrency_jobs(device)
    serial = [case.run(seed) for case, seed in jobs]
    for round_ in range(2):
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            results = list(pool.map(lambda job: job[0].run(job[1]), jobs))
        for (case, _), a, b in zip(jobs, serial, results):
            _assert_same_results(a, b, f"{case} on {name}: concurrent (round {round_ + 1}) vs serial")


# ---------------------------------------------------------------------------------------------------------------
# 5. Bad input: an error naming the op and the argument, before any kernel runs
# ---------------------------------------------------------------------------------------------------------------
class _OpLog(TorchDispatchMode):
    """Records every operator dispatched inside the with block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func._schema.name)
        return func(*args, **(kwargs or {}))


# What argument checks may dispatch: reading a temperature tensor's value (detach, view, scalar read).
_CHECK_OPS = {"aten::detach", "aten::view", "aten::reshape", "aten::alias", "aten::_local_scalar_dense",
              "aten::item", "aten::lift_fresh"}


def _t(device, *shape, dtype=torch.float32):
    if dtype.is_floating_point:
        return torch.randn(shape, generator=torch.Generator().manual_seed(len(shape))).to(dtype=dtype, device=device)
    return torch.ones(shape, dtype=dtype, device=device)


def _error_cases():
    """(id, op, argument, exception type, build(device) -> (fn, args, kwargs))."""
    gk = glo_kernels
    cases = []

    def case(id_, op, arg, exc, build, marks=()):
        cases.append(pytest.param(op, arg, exc, build, id=id_, marks=marks))

    # wrong dtype of x (int, complex, bool) for every op that test_errors.py does not cover
    others = {
        "elu": lambda x, d: (gk.elu, (x,), {}),
        "pelu": lambda x, d: (gk.pelu, (x, _t(d, 3), _t(d, 3)), {}),
        "maxout": lambda x, d: (gk.maxout, (x, 2), {"dim": 0}),
        **{spec.name: (lambda x, d, fn=getattr(gk, spec.name): (fn, (x,), {})) for spec in UNARY + GATED},
        **{spec.name: (lambda x, d, fn=getattr(gk, spec.name): (fn, (x, _t(d, 5)), {})) for spec in BIAS},
        "softmax": lambda x, d: (gk.softmax, (x, -1, 2.0), {}),
        "log_softmax": lambda x, d: (gk.log_softmax, (x, -1, 2.0), {}),
        "grouped_softmax": lambda x, d: (gk.grouped_softmax, (x, [1, 4]), {}),
        "distillation_loss": lambda x, d: (gk.distillation_loss, (x, _t(d, 4, 3, 5)), {}),
    }
    for op, call in others.items():
        arg = "student" if op == "distillation_loss" else "x"
        for dtype in (torch.int64, torch.complex64, torch.bool):
            case(f"{op}-{arg}-{dtype}".replace("torch.", ""), op, arg, TypeError,
                 lambda d, call=call, dtype=dtype: call(_t(d, 4, 3, 5, dtype=dtype), d))
    for dtype in (torch.int32, torch.complex64):
        case(f"distillation_loss-teacher-{dtype}".replace("torch.", ""), "distillation_loss", "teacher", TypeError,
             lambda d, dtype=dtype: (gk.distillation_loss, (_t(d, 4, 5), _t(d, 4, 5, dtype=dtype)), {}))
    # not a tensor, for every op but relu (covered)
    for op in ALL_OPS:
        if op.name == "relu":
            continue
        arg = "student" if op.name == "distillation_loss" else "x"
        extra = {"prelu": lambda d: (_t(d, 1),), "pelu": lambda d: (_t(d, 1), _t(d, 1)),
                 "maxout": lambda d: (1,), "grouped_softmax": lambda d: ([2],),
                 "distillation_loss": lambda d: (_t(d, 2),),
                 **{spec.name: lambda d: (_t(d, 2),) for spec in BIAS}}.get(op.name, lambda d: ())
        case(f"{op.name}-{arg}-list", op.name, arg, TypeError,
             lambda d, op=op, extra=extra: (op.fn, ([1.0, 2.0], *extra(d)), {}))

    # gated units: the halves of x's last dim; the value b of the two-tensor form
    for spec in GATED:
        fn = getattr(gk, spec.name)
        case(f"{spec.name}-x-odd-last-dim", spec.name, "x", ValueError, lambda d, fn=fn: (fn, (_t(d, 2, 3, 5),), {}))
        case(f"{spec.name}-x-0d", spec.name, "x", ValueError, lambda d, fn=fn: (fn, (_t(d),), {}))
        case(f"{spec.name}-b-shape", spec.name, "b", ValueError,
             lambda d, fn=fn: (fn, (_t(d, 2, 3, 4), _t(d, 2, 3, 5)), {}))
        case(f"{spec.name}-b-dtype", spec.name, "b", ValueError,
             lambda d, fn=fn: (fn, (_t(d, 2, 4), _t(d, 2, 4, dtype=torch.float64)), {}))
        case(f"{spec.name}-b-int", spec.name, "b", TypeError,
             lambda d, fn=fn: (fn, (_t(d, 2, 4), _t(d, 2, 4, dtype=torch.int64)), {}))
    case("geglu-approximate", "geglu", "approximate", ValueError,
         lambda d: (gk.geglu, (_t(d, 2, 4),), {"approximate": "erf"}))
    # bias + activation: a 1-D bias of x's last dim, of x's dtype
    for spec in BIAS:
        fn = getattr(gk, spec.name)
        case(f"{spec.name}-bias-size", spec.name, "bias", ValueError,
             lambda d, fn=fn: (fn, (_t(d, 2, 3, 5), _t(d, 3)), {}))
        case(f"{spec.name}-bias-2d", spec.name, "bias", ValueError,
             lambda d, fn=fn: (fn, (_t(d, 2, 3, 5), _t(d, 1, 5)), {}))
        case(f"{spec.name}-bias-dtype", spec.name, "bias", TypeError,
             lambda d, fn=fn: (fn, (_t(d, 2, 5), _t(d, 5, dtype=torch.float64)), {}))
        case(f"{spec.name}-bias-list", spec.name, "bias", TypeError,
             lambda d, fn=fn: (fn, (_t(d, 2, 5), [0.0] * 5), {}))
        case(f"{spec.name}-x-0d", spec.name, "x", ValueError, lambda d, fn=fn: (fn, (_t(d), _t(d, 1)), {}))
    case("bias_gelu-approximate", "bias_gelu", "approximate", ValueError,
         lambda d: (gk.bias_gelu, (_t(d, 2, 4), _t(d, 4)), {"approximate": "erf"}))
    # learned parameters: shape, dtype, device (meta stands in for another device), type
    x3 = lambda d: _t(d, 2, 3, 5)  # noqa: E731
    case("pelu-a-2d", "pelu", "a", ValueError, lambda d: (gk.pelu, (x3(d), _t(d, 3, 1), _t(d, 3)), {}))
    case("pelu-b-2d", "pelu", "b", ValueError, lambda d: (gk.pelu, (x3(d), _t(d, 3), _t(d, 1, 3)), {}))
    case("pelu-b-count", "pelu", "b", ValueError, lambda d: (gk.pelu, (x3(d), _t(d, 3), _t(d, 4)), {}))
    case("pelu-a-dtype", "pelu", "a", TypeError,
         lambda d: (gk.pelu, (x3(d), _t(d, 3, dtype=torch.float16), _t(d, 3)), {}))
    case("pelu-a-int", "pelu", "a", TypeError,
         lambda d: (gk.pelu, (x3(d), _t(d, 3, dtype=torch.int64), _t(d, 3)), {}))
    case("pelu-a-meta", "pelu", "a", ValueError, lambda d: (gk.pelu, (x3(d), _t("meta", 3), _t(d, 3)), {}))
    case("pelu-b-meta", "pelu", "b", ValueError, lambda d: (gk.pelu, (x3(d), _t(d, 3), _t("meta", 3)), {}))
    case("pelu-a-number", "pelu", "a", TypeError, lambda d: (gk.pelu, (x3(d), 1.0, _t(d, 3)), {}))
    case("prelu-weight-int", "prelu", "weight", TypeError,
         lambda d: (gk.prelu, (x3(d), _t(d, 3, dtype=torch.int64)), {}))
    case("prelu-weight-scalar-input", "prelu", "weight", ValueError,
         lambda d: (gk.prelu, (_t(d), _t(d, 2)), {}))

    # scalar arguments of the element-wise ops
    case("leaky_relu-slope-none", "leaky_relu", "negative_slope", TypeError,
         lambda d: (gk.leaky_relu, (x3(d), None), {}))
    case("leaky_relu-slope-bool", "leaky_relu", "negative_slope", TypeError,
         lambda d: (gk.leaky_relu, (x3(d), True), {}))
    case("elu-alpha-str", "elu", "alpha", TypeError, lambda d: (gk.elu, (x3(d), "1.0"), {}))
    case("elu-alpha-tensor", "elu", "alpha", TypeError, lambda d: (gk.elu, (x3(d), _t(d)), {}))
    # Maxout: pieces that do not divide, out of range, of the wrong type; dim; 0-d input
    case("maxout-pieces-not-dividing", "maxout", "pieces", ValueError, lambda d: (gk.maxout, (x3(d), 2), {}))
    case("maxout-pieces-not-dividing-dim0", "maxout", "pieces", ValueError,
         lambda d: (gk.maxout, (x3(d), 4), {"dim": 0}))
    case("maxout-pieces-negative", "maxout", "pieces", ValueError, lambda d: (gk.maxout, (x3(d), -3), {}))
    case("maxout-pieces-257", "maxout", "pieces", ValueError, lambda d: (gk.maxout, (_t(d, 2, 514), 257), {}))
    case("maxout-pieces-bool", "maxout", "pieces", TypeError, lambda d: (gk.maxout, (x3(d), True), {}))
    case("maxout-pieces-tensor", "maxout", "pieces", TypeError,
         lambda d: (gk.maxout, (x3(d), torch.tensor(3)), {}))
    case("maxout-dim-negative-out-of-range", "maxout", "dim", ValueError,
         lambda d: (gk.maxout, (x3(d), 3), {"dim": -4}))
    case("maxout-dim-float", "maxout", "dim", TypeError, lambda d: (gk.maxout, (x3(d), 3), {"dim": 1.0}))
    case("maxout-x-0d", "maxout", "x", ValueError, lambda d: (gk.maxout, (_t(d), 1), {}))

    # temperatures: non-positive, non-finite, of the wrong type or shape, for the four ops of the softmax family
    x2 = lambda d: _t(d, 3, 4)  # noqa: E731
    family = {
        "softmax": lambda d, t: (gk.softmax, (x2(d), -1, t), {}),
        "log_softmax": lambda d, t: (gk.log_softmax, (x2(d), -1, t), {}),
        "grouped_softmax": lambda d, t: (gk.grouped_softmax, (x2(d), [1, 3], -1, t), {}),
        "distillation_loss": lambda d, t: (gk.distillation_loss, (x2(d), x2(d).flip(0), t), {}),
    }
    for op, call in family.items():
        for bad in (0.0, -0.0, -2.0, float("nan"), float("inf"), -float("inf"), 1e-320 * -1):
            case(f"{op}-temperature-{bad}", op, "temperature", ValueError, lambda d, call=call, bad=bad: call(d, bad))
            case(f"{op}-temperature-tensor-{bad}", op, "temperature", ValueError,
                 lambda d, call=call, bad=bad: call(d, torch.tensor(bad, device=d)))
        case(f"{op}-temperature-bool", op, "temperature", TypeError, lambda d, call=call: call(d, True))
        case(f"{op}-temperature-str", op, "temperature", TypeError, lambda d, call=call: call(d, "2"))
        if op != "distillation_loss":
            case(f"{op}-temperature-2-elements", op, "temperature", ValueError,
                 lambda d, call=call: call(d, torch.ones(2, device=d)))
            case(f"{op}-temperature-int-tensor", op, "temperature", ValueError,
                 lambda d, call=call: call(d, torch.tensor(2, device=d)))
            case(f"{op}-dim-out-of-range", op, "dim", ValueError,
                 lambda d, op=op: (getattr(gk, op), (x2(d),) + (([4],) if op == "grouped_softmax" else ()),
                                   {"dim": -3}))
            case(f"{op}-dim-float", op, "dim", TypeError,
                 lambda d, op=op: (getattr(gk, op), (x2(d),) + (([4],) if op == "grouped_softmax" else ()),
                                   {"dim": 1.0}))
    case("distillation_loss-temperature-tensor-requiring-grad", "distillation_loss", "temperature", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), x2(d).flip(0), torch.tensor(2.0, requires_grad=True)), {}))
    # group sizes that do not sum to the dim, non-positive, of the wrong type
    for bad in ([1, 2], [2, 3], [4, 0], [5, -1], [], [1, 1, 1, 1, 1]):
        case(f"grouped_softmax-group_sizes-{bad}", "grouped_softmax", "group_sizes", ValueError,
             lambda d, bad=bad: (gk.grouped_softmax, (x2(d), bad), {}))
    for bad in (4, [2.0, 2.0], [True, 3], (1, "3")):
        case(f"grouped_softmax-group_sizes-{bad!r}", "grouped_softmax", "group_sizes", TypeError,
             lambda d, bad=bad: (gk.grouped_softmax, (x2(d), bad), {}))
    for bad in (None, 4.0):  # not a list or tuple
        case(f"grouped_softmax-group_sizes-{bad!r}", "grouped_softmax", "group_sizes", TypeError,
             lambda d, bad=bad: (gk.grouped_softmax, (x2(d), bad), {}))
    case("grouped_softmax-group_sizes-dim0", "grouped_softmax", "group_sizes", ValueError,
         lambda d: (gk.grouped_softmax, (x2(d), [1, 3]), {"dim": 0}))
    # student / teacher that do not match; reduction
    case("distillation_loss-teacher-shape", "distillation_loss", "teacher", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), _t(d, 3, 5)), {}))
    case("distillation_loss-teacher-transposed", "distillation_loss", "teacher", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), _t(d, 4, 3)), {}))
    case("distillation_loss-teacher-broadcastable", "distillation_loss", "teacher", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), _t(d, 1, 4)), {}))
    case("distillation_loss-teacher-dtype", "distillation_loss", "teacher", TypeError,
         lambda d: (gk.distillation_loss, (x2(d), _t(d, 3, 4, dtype=torch.bfloat16)), {}))
    case("distillation_loss-teacher-meta", "distillation_loss", "teacher", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), _t("meta", 3, 4)), {}))
    case("distillation_loss-teacher-list", "distillation_loss", "teacher", TypeError,
         lambda d: (gk.distillation_loss, (x2(d), [[1.0] * 4] * 3), {}))
    case("distillation_loss-student-0d", "distillation_loss", "student", ValueError,
         lambda d: (gk.distillation_loss, (_t(d), _t(d)), {}))
    case("distillation_loss-reduction", "distillation_loss", "reduction", ValueError,
         lambda d: (gk.distillation_loss, (x2(d), x2(d).flip(0), 2.0, "elementwise_mean"), {}))
    return cases


@pytest.mark.parametrize("op, arg, exc, build", _error_cases())
def test_bad_input_error_names_op_and_argument_before_any_kernel(backend, op, arg, exc, build):
    """The error has the right type, names glo_kernels.<op> and the argument, no operator ran (only the reads of
    a temperature tensor's value that the checks make) and no input changed."""
    device = backend[1]
    fn, args, kwargs = build(device)
    tensors = {f"arg{i}": v for i, v in enumerate(list(args) + list(kwargs.values())) if isinstance(v, torch.Tensor)}
    snap = _snapshot(**tensors)
    log = _OpLog()
    with log, pytest.raises(exc) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert f"glo_kernels.{op}" in msg, f"the error does not name glo_kernels.{op}: {msg}"
    assert f"'{arg}'" in msg, f"the error does not name the argument '{arg}': {msg}"
    ran = [o for o in log.ops if o not in _CHECK_OPS]
    assert not ran, f"operators ran before the error: {ran}"
    _assert_unchanged(snap, f"{op} ({arg})")


@pytest.mark.parametrize("op_name", ["softmax", "log_softmax", "grouped_softmax", "distillation_loss"])
def test_temperature_on_another_device_is_named(backend, op_name):
    d = backend[1]
    x = _t(d, 3, 4)
    t = torch.tensor(2.0, device="meta")
    args = {"softmax": (x, -1, t), "log_softmax": (x, -1, t), "grouped_softmax": (x, [1, 3], -1, t),
            "distillation_loss": (x, x.flip(0), t)}[op_name]
    snap = _snapshot(x=x)
    with pytest.raises(Exception) as info:
        getattr(glo_kernels, op_name)(*args)
    msg = str(info.value)
    _assert_unchanged(snap, op_name)
    assert isinstance(info.value, ValueError) and f"glo_kernels.{op_name}" in msg and "'temperature'" in msg, msg


@pytest.mark.parametrize("target", ["leaf", "view-of-leaf"])
@pytest.mark.parametrize("op", _INPLACE_OPS, ids=lambda op: op.name)
def test_inplace_on_leaf_requiring_grad_fails_without_writing(op, backend, target, request):
    """In-place on a leaf that requires grad (or a view of one) raises torch's own RuntimeError, and x is unchanged
    (torch's in-place ops check before they write)."""
    name, device = backend
    leaf = torch.tensor([-1.0, 2.0, -3.0, 0.5, -0.0, float("nan")], device=device, requires_grad=True)
    x = leaf if target == "leaf" else leaf[1:]
    snap = _snapshot(leaf=leaf)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        op.fn(x, inplace=True)
    _assert_unchanged(snap, f"{op.name}[{name}] in place on a {target}")


def test_inplace_elu_negative_alpha_under_autograd_refused_before_writing(backend):
    """In-place ELU recorded by autograd needs alpha >= 0 (its backward reads the output): a ValueError naming
    glo_kernels.elu and 'alpha', before any kernel runs, x unchanged."""
    name, device = backend  # every backend refuses it the same way (the check runs before the backend is chosen)
    x = _t(device, 2, 3).requires_grad_() * 1.0
    snap = _snapshot(x=x)
    log = _OpLog()
    with log, pytest.raises(ValueError, match=r"glo_kernels\.elu: argument 'alpha'"):
        glo_kernels.elu(x, -0.5, inplace=True)
    assert not [o for o in log.ops if o not in _CHECK_OPS], log.ops
    _assert_unchanged(snap, "elu in place, alpha < 0")
