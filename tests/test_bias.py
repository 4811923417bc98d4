"""The bias family (glo_kernels/ops/bias.py): what the generic op tests (test_ops, test_fuzz, test_autograd, which run
every op of the table with its bias as a learned parameter) do not cover: the bias gradient's reproducibility, the
approximate argument, what autograd saves, torch.compile, and a Linear + bias_gelu layer against torch's."""
import pytest
import torch
import torch.nn.functional as F

import glo_kernels
from helpers import bits
from op_db import BIAS


@pytest.mark.parametrize("spec", BIAS, ids=lambda s: s.name)
def test_bias_gradient_is_reproducible(spec, backend):
    """The bias gradient's sum has a fixed order: the same bits with 1 and 2 threads and from run to run."""
    name, device = backend
    x = torch.randn(300, 70, device=device)
    bias = torch.randn(70, device=device)
    dy = torch.randn(300, 70, device=device)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 2):
            torch.set_num_threads(n)
            b = bias.clone().requires_grad_()
            (db,) = torch.autograd.grad(getattr(glo_kernels, spec.name)(x, b), b, dy)
            results.append(bits(db))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results[1:])


def test_approximate_and_saved_tensors(backend):
    device = backend[1]
    x = torch.randn(6, 10, device=device)
    bias = torch.randn(10, device=device)
    tanh = glo_kernels.bias_gelu_tanh(x, bias)
    assert torch.equal(glo_kernels.bias_gelu(x, bias, "tanh"), tanh)
    assert torch.equal(glo_kernels.bias_gelu(x, bias, approximate="tanh"), tanh)
    assert not torch.equal(glo_kernels.bias_gelu(x, bias), tanh)
    with pytest.raises(ValueError, match="glo_kernels.bias_gelu: argument 'approximate' must be 'none' or 'tanh'"):
        glo_kernels.bias_gelu(x, bias, approximate="erf")
    if backend[0] == "reference":
        return
    saved = []
    xr, br = x.clone().requires_grad_(), bias.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        glo_kernels.bias_silu(xr, br)
    assert [t.data_ptr() for t in saved] == [xr.data_ptr(), br.data_ptr()]  # x and the bias, nothing else


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_linear_bias_gelu_layer_matches_torch_and_compiles(approximate, backend):
    """A Linear layer without bias followed by bias_gelu with the Linear's bias, against Linear + F.gelu (float64):
    outputs and every gradient; and the same under torch.compile(fullgraph=True, backend="aot_eager")."""
    name, device = backend
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 20, dtype=torch.float64, device=device)
    x = torch.randn(5, 7, 12, dtype=torch.float64, device=device)

    def ours(x, w, b):
        return glo_kernels.bias_gelu(F.linear(x, w), b, approximate=approximate)

    def torchs(x, w, b):
        return F.gelu(F.linear(x, w, b), approximate=approximate)

    torch._dynamo.reset()
    compiled = torch.compile(ours, fullgraph=True, backend="aot_eager")
    results = []
    for fn in (torchs, ours, compiled):
        w, b, xi = (t.detach().clone().requires_grad_() for t in (lin.weight, lin.bias, x))
        y = fn(xi, w, b)
        results.append((y, *torch.autograd.grad(y.square().sum(), [xi, w, b])))
    for got in results[1:]:
        for g, want in zip(got, results[0]):
            torch.testing.assert_close(g, want, rtol=1e-12, atol=1e-12)
    for g, want in zip(results[2], results[1]):
        assert torch.equal(g, want)
