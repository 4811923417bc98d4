"""PELU and Maxout specifics: the eager composite, the module's positivity constraint, argument errors, indices."""
import pytest
import torch

import glo_kernels
from glo_kernels import reference


def test_pelu_matches_the_torch_composite_where_it_is_finite(backend):
    """Equal to torch.where(x >= 0, (a/b)*x, a*torch.expm1(x/b)) and its autograd gradients, float64."""
    device = backend[1]
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(6, 5, 7, generator=g, dtype=torch.float64) * 3).to(device)
    a = (torch.rand(5, generator=g, dtype=torch.float64) + 0.2).to(device)
    b = (torch.rand(5, generator=g, dtype=torch.float64) + 0.2).to(device)
    dy = torch.randn(6, 5, 7, generator=g, dtype=torch.float64).to(device)
    leaves = [t.clone().requires_grad_() for t in (x, a, b)]
    y = glo_kernels.pelu(*leaves)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_leaves = [t.clone().requires_grad_() for t in (x, a, b)]
    y_ref = reference.pelu_composite(*ref_leaves)
    grads_ref = torch.autograd.grad(y_ref, ref_leaves, dy)
    torch.testing.assert_close(y, y_ref, rtol=1e-14, atol=1e-14)
    for got, want in zip(grads, grads_ref):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_pelu_gradients_stay_finite_where_the_composite_gives_nan(backend):
    """For x/b beyond exp's range the composite's unselected side leaks 0 * inf = NaN into da and db; ours does not."""
    device = backend[1]
    x = torch.tensor([[100.0, -3.0, 0.5]], device=device)
    a = torch.tensor([1.5], device=device, requires_grad=True)
    b = torch.tensor([0.5], device=device, requires_grad=True)
    da, db = torch.autograd.grad(glo_kernels.pelu(x, a, b).sum(), [a, b])
    ca, cb = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
    cda, cdb = torch.autograd.grad(reference.pelu_composite(x, ca, cb).sum(), [ca, cb])
    assert torch.isnan(cda).all() and torch.isnan(cdb).all()  # the composite's artefact
    assert torch.isfinite(da).all() and torch.isfinite(db).all()
    xs = x.double()
    expect_da = (xs[0, 0] / 0.5) + torch.expm1(xs[0, 1] / 0.5) + xs[0, 2] / 0.5
    torch.testing.assert_close(da.double(), expect_da.reshape(1), rtol=1e-6, atol=1e-6)


def test_pelu_module_keeps_parameters_positive_and_gradients_alive():
    torch.manual_seed(0)
    m = glo_kernels.nn.PELU(num_parameters=4, init_a=1.0, init_b=1.0, dtype=torch.float64)
    assert m.state_dict().keys() == {"a", "b"}
    with torch.no_grad():
        m.a.copy_(torch.tensor([-1.0, 0.05, 0.5, 2.0], dtype=torch.float64))
        m.b.copy_(torch.tensor([0.0, 3.0, -2.0, 0.1], dtype=torch.float64))
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    y = m(x)  # training mode: projected onto [0.1, inf) first
    assert torch.equal(m.a.detach(), torch.tensor([0.1, 0.1, 0.5, 2.0], dtype=torch.float64))
    assert torch.equal(m.b.detach(), torch.tensor([0.1, 3.0, 0.1, 0.1], dtype=torch.float64))
    y.square().sum().backward()
    assert (m.a.grad != 0).all() and (m.b.grad != 0).all()  # nothing masked at the bound
    torch.testing.assert_close(y, reference.pelu(x, m.a.detach(), m.b.detach()))
    m.eval()
    with torch.no_grad():
        m.a.fill_(0.01)
    m(x)
    assert m.a[0].item() == 0.01  # eval mode: used as they are


def test_pelu_module_compiles_fullgraph_with_the_projection():
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 6), glo_kernels.nn.PELU(6), torch.nn.Linear(6, 2),
                              glo_kernels.nn.Maxout(2))
    with torch.no_grad():
        net[1].a[:3] = 0.01
    x = torch.randn(5, 8)
    import copy

    eager_net = copy.deepcopy(net)
    out_e = eager_net(x)
    g_e = torch.autograd.grad(out_e.sum(), list(eager_net.parameters()))
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    out = compiled(x)
    g = torch.autograd.grad(out.sum(), list(net.parameters()))
    torch.testing.assert_close(out, out_e)
    for a, b in zip(g, g_e):
        torch.testing.assert_close(a, b)
    assert (net[1].a >= 0.1).all()


def test_pelu_errors():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"glo_kernels\.pelu: argument 'b' has 1 elements but 'a' has 3"):
        glo_kernels.pelu(x, torch.rand(3), torch.rand(1))
    with pytest.raises(ValueError, match=r"glo_kernels\.pelu: argument 'a' has 4 elements"):
        glo_kernels.pelu(x, torch.rand(4), torch.rand(4))
    with pytest.raises(TypeError, match=r"glo_kernels\.pelu: argument 'b' has dtype torch.float64"):
        glo_kernels.pelu(x, torch.rand(3), torch.rand(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="init_a"):
        glo_kernels.nn.PELU(init_a=0.0)


def test_maxout_errors():
    x = torch.randn(2, 6, 4)
    with pytest.raises(ValueError, match=r"glo_kernels\.maxout: argument 'pieces' \(4\) must divide the size of dim 1 \(6\)"):
        glo_kernels.maxout(x, 4)
    with pytest.raises(ValueError, match=r"argument 'pieces' must be in \[1, 256\], got 0"):
        glo_kernels.maxout(x, 0)
    with pytest.raises(ValueError, match=r"argument 'pieces' must be in \[1, 256\], got 512"):
        glo_kernels.maxout(torch.randn(2, 512), 512)
    with pytest.raises(ValueError, match=r"argument 'dim' \(3\) is out of range"):
        glo_kernels.maxout(x, 2, dim=3)
    with pytest.raises(TypeError, match=r"argument 'pieces' must be an int"):
        glo_kernels.maxout(x, 2.0)
    with pytest.raises(ValueError, match="at least one dimension"):
        glo_kernels.maxout(torch.tensor(1.0), 1)
    with pytest.raises(RuntimeError, match=r"glo_kernels\.maxout: argument 'pieces' \(4\) must divide"):
        torch.ops.glo_kernels.maxout(x, 4, 1, False)


def test_maxout_saves_one_byte_per_output_and_routes_to_the_first_maximum(backend):
    device = backend[1]
    x = torch.tensor([[1.0, 3.0, 3.0, -1.0, float("nan"), 2.0, float("nan"), 0.0, -0.0]], device=device)
    with glo_kernels.use_backend(backend[0]):
        leaf = x.clone().requires_grad_()
        y = glo_kernels.maxout(leaf, 3, dim=1)
        (g,) = torch.autograd.grad(y, leaf, torch.tensor([[10.0, 20.0, 30.0]], device=device))
    # groups [1, 3, 3] -> 3 (the first 3), [-1, nan, 2] -> nan, [nan, 0, -0] -> nan (the first nan)
    assert y[0, 0].item() == 3.0 and torch.isnan(y[0, 1]) and torch.isnan(y[0, 2])
    assert g.cpu().tolist() == [[0.0, 10.0, 0.0, 0.0, 20.0, 0.0, 30.0, 0.0, 0.0]]
    if backend[0] in ("cpu", "cuda", "triton"):
        ns = glo_kernels.backends.op_namespace(backend[0])
        _, idx = ns.maxout(x, 3, 1, True)
        assert idx.dtype == torch.uint8 and idx.shape == (1, 3) and idx.cpu().tolist() == [[1, 1, 0]]
