"""The gated family (glo_kernels/ops/gated.py): what the generic op tests (test_ops, test_fuzz, test_autograd, which
run every op of the table on the one-tensor form) do not cover: the two-tensor form, the errors, what autograd saves,
ReGLU's bitwise agreement with torch's composite, the modules and torch.compile."""
import pytest
import torch
import torch.nn.functional as F

import glo_kernels
from conftest import DTYPES
from helpers import bits, make_input, non_contiguous, seeded
from op_db import GATED, GATED_BY_NAME


def _assert_bits_equal(a: torch.Tensor, b: torch.Tensor, what: str):
    a, b = a.detach().cpu(), b.detach().cpu()
    nan = torch.isnan(b)
    assert torch.equal(torch.isnan(a), nan), f"{what}: NaN positions differ"
    assert torch.equal(bits(a)[~nan], bits(b)[~nan]), f"{what}: values differ"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("spec", GATED, ids=lambda s: s.name)
def test_pair_form_is_the_split_form(spec, backend, dtype):
    """op(a, b) gives the bits of op(cat([a, b], -1)), values and both gradients, for strided and channels_last a, b
    too (outputs keep a's channels_last)."""
    name, device = backend
    gen = seeded("pair", spec.name, name, str(dtype))
    fn = getattr(glo_kernels, spec.name)
    for shape, layout in (((6, 7, 10), "contiguous"), ((3, 12), "strided"), ((2, 3, 4, 6), "channels_last")):
        x = make_input(shape, dtype, device, generator=gen)
        if layout == "strided":
            x = non_contiguous(x)
        xs = x.detach().clone().requires_grad_()
        y = fn(xs)
        dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
        (dx,) = torch.autograd.grad(y, xs, dy)
        a, b = (t.detach().clone() for t in x.chunk(2, dim=-1))
        if layout == "channels_last":
            a, b = (t.to(memory_format=torch.channels_last).requires_grad_() for t in (a, b))
        else:
            a, b = a.requires_grad_(), b.requires_grad_()
        y2 = fn(a, b)
        da, db = torch.autograd.grad(y2, [a, b], dy)
        what = f"{spec.name}[{name}, {dtype}, {layout}]"
        if name == "reference":  # (torch's own loops: vectorized and strided ones may differ by an ulp)
            torch.testing.assert_close(y2, y, equal_nan=True, msg=what)
            torch.testing.assert_close(torch.cat([da, db], dim=-1), dx, equal_nan=True, msg=what)
            continue
        _assert_bits_equal(y2, y, f"{what} value")
        _assert_bits_equal(torch.cat([da, db], dim=-1), dx, f"{what} grads")
        if layout == "channels_last" and name != "reference":
            assert y2.is_contiguous(memory_format=torch.channels_last), f"{what}: format not kept"
            assert da.is_contiguous(memory_format=torch.channels_last), f"{what}: da's format not kept"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("spec", GATED, ids=lambda s: s.name)
def test_pair_form_on_views_of_x(spec, backend, dtype):
    """op(*x.chunk(2, -1)) on the views themselves (read in place by the kernels at their row stride, or copied where
    the leading dims do not collapse into one row stride) gives the bits of op(x), values and x's gradient."""
    name, device = backend
    gen = seeded("pair-views", spec.name, name, str(dtype))
    fn = getattr(glo_kernels, spec.name)
    for shape, layout in (((6, 7, 10), "views"), ((1, 4), "one row"), ((5, 3, 8), "permuted")):
        x = make_input(shape, dtype, device, generator=gen)
        if layout == "permuted":  # (leading dims in another order: no single row stride)
            x = x.transpose(0, 1)
        xs = x.detach().clone().requires_grad_()
        y = fn(xs)
        dy = make_input(y.shape, dtype, device, specials=False, generator=gen)
        (dx,) = torch.autograd.grad(y, xs, dy)
        xv = x.detach().clone().requires_grad_()
        y2 = fn(*xv.chunk(2, dim=-1))
        (dx2,) = torch.autograd.grad(y2, xv, dy)
        what = f"{spec.name}[{name}, {dtype}, {layout}]"
        if name == "reference":  # (torch's composite; its output keeps the views' layout)
            torch.testing.assert_close(y2, y, equal_nan=True, msg=what)
            torch.testing.assert_close(dx2, dx, equal_nan=True, msg=what)
            continue
        assert y2.is_contiguous(), f"{what}: the output is not contiguous"
        _assert_bits_equal(y2, y, f"{what} value")
        _assert_bits_equal(dx2, dx, f"{what} grads")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reglu_is_bitwise_torchs_composite(backend, dtype):
    """ReGLU: values and gradients bit for bit F.relu(a) * b and its autograd in this dtype (specials included)."""
    name, device = backend
    x = make_input((33, 18), dtype, device, generator=seeded("reglu-bits", name, str(dtype)))
    xo = x.clone().requires_grad_()
    y = glo_kernels.reglu(xo)
    dy = make_input(y.shape, dtype, device, specials=False, generator=seeded("reglu-dy", name, str(dtype)))
    (dx,) = torch.autograd.grad(y, xo, dy)
    xt = x.cpu().clone().requires_grad_()
    a, b = xt.chunk(2, dim=-1)
    yt = F.relu(a) * b
    (dxt,) = torch.autograd.grad(yt, xt, dy.cpu())
    _assert_bits_equal(y, yt, f"reglu[{name}, {dtype}] values")
    _assert_bits_equal(dx, dxt, f"reglu[{name}, {dtype}] grads")


def test_errors_name_the_argument(backend):
    device = backend[1]
    x = torch.randn(4, 6, device=device)
    for spec in GATED:
        fn, n = getattr(glo_kernels, spec.name), spec.name
        with pytest.raises(ValueError, match=rf"glo_kernels.{n}: argument 'x' must have an even last dim.*\(4, 5\)"):
            fn(torch.randn(4, 5, device=device))
        with pytest.raises(ValueError, match=rf"glo_kernels.{n}: argument 'x' must have at least one dimension"):
            fn(torch.randn((), device=device))
        with pytest.raises(ValueError, match=rf"glo_kernels.{n}: argument 'b' .* must have the shape and dtype"):
            fn(x, torch.randn(4, 5, device=device))
        with pytest.raises(ValueError, match=rf"glo_kernels.{n}: argument 'b' .* must have the shape and dtype"):
            fn(x, x.double())
        with pytest.raises(TypeError, match=rf"glo_kernels.{n}: argument 'b' must be a torch.Tensor"):
            fn(x, 3.0)
        with pytest.raises(TypeError, match=rf"glo_kernels.{n}: argument 'x' must be a float64"):
            fn(x.int())
    with pytest.raises(ValueError, match="glo_kernels.geglu: argument 'approximate' must be 'none' or 'tanh'"):
        glo_kernels.geglu(x, approximate="fast")
    with pytest.raises(ValueError, match="GeGLU: argument 'approximate' must be one of"):
        glo_kernels.nn.GeGLU("fast")


@pytest.mark.skipif(not glo_kernels.available_backends()["cpu"].available, reason="the C++ extension is not built")
def test_registered_ops_check_their_arguments():
    """The operators check what the functional API checks (torch.compile and direct callers reach them)."""
    ops = torch.ops.glo_kernels
    with pytest.raises(RuntimeError, match="glo_kernels.swiglu: argument 'x' must have an even last dim"):
        ops.swiglu(torch.randn(3, 5))
    with pytest.raises(RuntimeError, match="glo_kernels.reglu_backward: argument 'grad'"):
        ops.reglu_backward(torch.randn(3, 3), torch.randn(3, 4))
    with pytest.raises(RuntimeError, match="glo_kernels.geglu_pair: argument 'b'"):
        ops.geglu_pair(torch.randn(3, 4), torch.randn(3, 5))


def _saved(fn, *inputs):
    """The tensors autograd saves for fn(*inputs)'s backward."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*inputs)
    return saved


@pytest.mark.parametrize("spec", GATED, ids=lambda s: s.name)
def test_saves_only_its_input(spec, backend):
    """One tensor, x itself (the pair form: a and b); torch's composite keeps act(a) as well."""
    name, device = backend
    if name == "reference":
        pytest.skip("the reference backend is torch's own autograd (float64 copies)")
    x = torch.randn(8, 64, device=device, requires_grad=True)
    saved = _saved(getattr(glo_kernels, spec.name), x)
    assert len(saved) == 1 and saved[0].data_ptr() == x.data_ptr() and saved[0].shape == x.shape, saved
    a, b = (t.detach().clone().requires_grad_() for t in x.chunk(2, dim=-1))
    saved = _saved(getattr(glo_kernels, spec.name), a, b)
    assert [t.data_ptr() for t in saved] == [a.data_ptr(), b.data_ptr()]
    eager = sum(t.numel() for t in _saved(spec.eager, x))
    assert eager > x.numel(), "torch's composite keeps more than x"


def test_variants_and_modules(backend):
    device = backend[1]
    x = torch.randn(5, 12, device=device)
    b = torch.randn(5, 6, device=device)
    tanh = glo_kernels.geglu_tanh(x)
    assert torch.equal(glo_kernels.geglu(x, "tanh"), tanh)
    assert torch.equal(glo_kernels.geglu(x, approximate="tanh"), tanh)
    assert torch.equal(glo_kernels.geglu(x[:, :6], b, approximate="tanh"), tanh * 0 + glo_kernels.geglu_tanh(x[:, :6], b))
    assert not torch.equal(glo_kernels.geglu(x), tanh)
    m = glo_kernels.nn.GeGLU(approximate="tanh")
    assert repr(m) == "GeGLU(approximate='tanh')" and m.state_dict() == {}
    assert torch.equal(m(x), tanh) and torch.equal(m(x[:, :6], b), glo_kernels.geglu_tanh(x[:, :6], b))
    assert repr(glo_kernels.nn.GeGLU()) == "GeGLU(approximate='none')"
    for cls, fn in ((glo_kernels.nn.SwiGLU, glo_kernels.swiglu), (glo_kernels.nn.ReGLU, glo_kernels.reglu)):
        m = cls()
        assert repr(m) == f"{cls.__name__}()" and m.state_dict() == {}
        assert torch.equal(m(x), fn(x))
        with pytest.raises(TypeError):
            cls(1)
    # the composite: values within the bound of test_ops (here only the call conventions are checked)
    a, bb = x.chunk(2, dim=-1)
    torch.testing.assert_close(glo_kernels.swiglu(x), F.silu(a) * bb)


@pytest.mark.parametrize("spec", [GATED_BY_NAME["swiglu"], GATED_BY_NAME["geglu"]], ids=lambda s: s.name)
def test_compile_fullgraph(spec, backend):
    """Both forms under torch.compile(fullgraph=True) (aot_eager: the fake kernels and the registered backward ops)
    give the eager call's bits, values and gradients."""
    name, device = backend
    fn = getattr(glo_kernels, spec.name)

    def f(x, a, b):
        return fn(x) * 2 + fn(a, b)

    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    x = torch.randn(4, 3, 16, device=device, requires_grad=True)
    a, b = (torch.randn(4, 3, 8, device=device, requires_grad=True) for _ in range(2))
    want = f(x, a, b)
    got = compiled(x, a, b)
    assert torch.equal(got, want)
    g_want = torch.autograd.grad(want.sum(), [x, a, b])
    g_got = torch.autograd.grad(got.sum(), [x, a, b])
    for g, w in zip(g_got, g_want):
        assert torch.equal(g, w)
