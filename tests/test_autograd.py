"""gradcheck / gradgradcheck in float64, torch.library.opcheck on every registered op, torch.compile(fullgraph=True)."""
import pytest
import torch

import glo_kernels
from glo_kernels._registry import OPS
from op_db import BIAS_NAMES, GATED_FORWARD_OPS, GATED_NAMES, UNARY, UNARY_NAMES, unary_saved_torch


def _away_from_kinks(shape, device, gen):
    x = torch.randn(shape, dtype=torch.float64, generator=gen)
    x = torch.where(x.abs() < 0.1, x.sign() * 0.1 + x, x)  # finite differences must not straddle 0
    return x.to(device)


@pytest.mark.parametrize(
    "op,per_channel",
    [(op, pc) for op in OPS for pc in ((False, True) if op.param_names else (False,))],
    ids=lambda v: v.name if hasattr(v, "name") else ("per_channel" if v else "shared"),
)
def test_gradcheck_and_gradgradcheck(op, backend, per_channel):
    name, device = backend
    # Under the Triton interpreter every kernel call costs milliseconds: use gradcheck's fast mode (a random
    # projection of the Jacobian) there; the compiled backends get the full Jacobian.
    fast = name == "triton" and device == "cpu"
    gen = torch.Generator().manual_seed(0)
    for kwargs in op.cases_for((3, 4, 5)):
        x = _away_from_kinks((3, 4, 5), device, gen).requires_grad_()
        params = [p.requires_grad_() for p in op.make_params(x.shape, torch.float64, device, per_channel)]
        fn = lambda x, *p: op.fn(x, *p, **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, *params), fast_mode=fast)
        assert torch.autograd.gradgradcheck(fn, (x, *params), fast_mode=fast)


def _op_namespaces():
    status = glo_kernels.available_backends()
    out = [pytest.param("glo_kernels", "cpu", id="cpp-cpu")]
    out.append(pytest.param("glo_kernels", "cuda", id="cpp-cuda", marks=pytest.mark.skipif(
        not status["cuda"].available, reason=f"backend cuda: {status['cuda'].reason}")))
    triton_device = "cuda" if torch.cuda.is_available() else "cpu"
    out.append(pytest.param("glo_kernels_triton", triton_device, id="triton", marks=pytest.mark.skipif(
        not status["triton"].available, reason=f"backend triton: {status['triton'].reason}")))
    return out


def _opcheck_cases(device):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, 5, dtype=torch.float64, generator=g).to(device)
    w1 = torch.tensor([0.25], dtype=torch.float64, device=device)
    wc = torch.rand(3, dtype=torch.float64, generator=g).to(device)
    dy = torch.randn(4, 3, 5, dtype=torch.float64, generator=g).to(device)
    xr = x.clone().requires_grad_()
    cases = []
    for save in (True, False):
        xs = xr if save else x  # backward needs the mask: with save_mask=False the input must not require grad
        cases += [("relu", (xs, save)), ("leaky_relu", (xs, 0.2, save)),
                  ("relu_", (x.clone(), save)), ("leaky_relu_", (x.clone(), -0.3, save))]
    mask = torch.ops.glo_kernels.relu(x.cpu(), True)[1].to(device)
    lmask = torch.ops.glo_kernels.leaky_relu(x.cpu(), 0.2, True)[1].to(device)
    cases += [
        ("relu_backward", (dy.clone().requires_grad_(), mask)),
        ("leaky_relu_backward", (dy.clone().requires_grad_(), lmask, 0.2)),
        ("prelu", (xr, w1.clone().requires_grad_())),
        ("prelu", (xr, wc.clone().requires_grad_())),
        ("prelu_backward", (dy.clone().requires_grad_(), xr, wc.clone().requires_grad_())),
        ("prelu_backward", (dy.clone().requires_grad_(), xr, w1.clone().requires_grad_())),
        ("elu", (xr, 0.7)),
        ("elu_", (x.clone(), 0.7)),
        ("elu_backward", (dy.clone().requires_grad_(), xr, 0.7, False)),
        ("elu_backward", (dy.clone().requires_grad_(), torch.nn.functional.elu(xr, 0.7), 0.7, True)),
        ("softplus", (xr, 1.5, 3.0)),
        ("softplus_backward", (dy.clone().requires_grad_(), xr, 1.5, 3.0)),
        ("pelu", (xr, wc.clone().requires_grad_() + 0.5, wc.clone().requires_grad_() + 0.3)),
        ("pelu", (xr, w1.clone().requires_grad_(), w1.clone().requires_grad_() + 1.0)),
        ("pelu_backward", (dy.clone().requires_grad_(), xr, wc.clone().requires_grad_() + 0.5,
                           wc.clone().requires_grad_() + 0.3)),
        ("maxout", (xr, 5, 2, True)),
        ("maxout", (x, 3, 1, False)),
        ("maxout", (xr, 2, 0, True)),
        ("maxout_backward", (torch.randn(4, 1, 5, dtype=torch.float64, device=device, requires_grad=True),
                             torch.ops.glo_kernels.maxout(x.cpu(), 3, 1, True)[1].to(device), 3, 1)),
    ]
    for spec in UNARY:  # the unary family: name, name_ and name_backward (reading the saved input or output)
        cases += [(spec.name, (xr,)), (spec.name + "_", (x.clone(),)),
                  (spec.name + "_backward", (dy.clone().requires_grad_(), unary_saved_torch(spec, xr)))]
    x2 = torch.randn(4, 3, 10, dtype=torch.float64, generator=g).to(device)
    b = torch.randn(4, 3, 5, dtype=torch.float64, generator=g).to(device)
    for name in GATED_NAMES:  # the gated family: name (x: halves of the last dim), name_pair (a, b), their backwards
        cases += [(name, (x2.clone().requires_grad_(),)), (name, (x2[..., 2:8],)),
                  (name + "_backward", (dy.clone().requires_grad_(), x2.clone().requires_grad_())),
                  (name + "_pair", (xr, b.clone().requires_grad_())), (name + "_pair", (x, b[:, :, :])),
                  (name + "_pair_backward", (dy.clone().requires_grad_(), xr, b.clone().requires_grad_()))]
    bias = torch.randn(5, dtype=torch.float64, generator=g).to(device)
    for name in BIAS_NAMES:  # the bias family: name(x, bias), name_backward -> (dx, dbias)
        cases += [(name, (xr, bias.clone().requires_grad_())), (name, (x[:, 1:, :], bias)),
                  (name + "_backward", (dy.clone().requires_grad_(), xr, bias.clone().requires_grad_())),
                  (name, (torch.randn(7, 1, dtype=torch.float64, device=device), bias[:1]))]
    return cases + _channels_last_opcheck_cases(device) + _softmax_opcheck_cases(device, xr, dy)


def _channels_last_opcheck_cases(device):
    """The element-wise ops (PReLU and PELU included) on channels_last inputs (their outputs keep the format: fake kernels must agree), with
    the upstream gradient in the same and in the contiguous format."""
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    xr = x.clone().requires_grad_()
    g_cl = torch.randn_like(x).requires_grad_()
    g_c = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    mask = torch.ops.glo_kernels.relu(x.cpu(), True)[1].to(device)
    cases = [("relu", (xr, True)), ("leaky_relu", (xr, 0.2, True)), ("relu_", (x.clone(), True)),
             ("leaky_relu_", (x.clone(), 0.2, True)), ("elu", (xr, 0.7)), ("elu_", (x.clone(), 0.7)),
             ("softplus", (xr, 1.5, 3.0)),
             ("relu_backward", (g_cl, mask))]
    cases += [c for spec in UNARY for c in ((spec.name, (xr,)), (spec.name + "_", (x.clone(),)))]
    w = torch.rand(3, dtype=torch.float64, device=device, requires_grad=True)
    a, b = (torch.rand(3, dtype=torch.float64, device=device).add(0.5).requires_grad_() for _ in range(2))
    cases += [("prelu", (xr, w)), ("prelu", (xr, w[:1])), ("pelu", (xr, a, b)), ("pelu", (xr, a[:1], b[:1]))]
    for g in (g_cl, g_c):
        cases += [("prelu_backward", (g, xr, w)), ("pelu_backward", (g, xr, a, b))]
        cases += [("elu_backward", (g, xr, 0.7, False))]
        cases += [(spec.name + "_backward", (g, unary_saved_torch(spec, x))) for spec in UNARY]
        cases += [(name + "_pair_backward", (g, xr, x.clone())) for name in GATED_NAMES]
    cases += [(name + "_pair", (xr, x.clone())) for name in GATED_NAMES]
    # Maxout over the channels keeps the format (y, indices, dx); over another dim it does not
    x6 = torch.randn(2, 6, 4, 5, dtype=torch.float64, device=device).to(memory_format=torch.channels_last)
    idx = torch.ops.glo_kernels.maxout(x6.cpu(), 2, 1, True)[1].to(device)
    g3 = torch.randn(2, 3, 4, 5, dtype=torch.float64, device=device)
    cases += [("maxout", (x6.clone().requires_grad_(), 2, 1, True)), ("maxout", (x6.clone(), 4, 2, True)),
              ("maxout_backward", (g3.to(memory_format=torch.channels_last), idx, 2, 1)),
              ("maxout_backward", (g3.clone().requires_grad_(), idx, 2, 1))]
    return cases


def _softmax_opcheck_cases(device, xr, dy):
    """The softmax family: every op with a number and with a (learned) temperature tensor, dims 0 and -1."""
    t = torch.tensor(1.3, dtype=torch.float64, device=device)
    tr = t.clone().requires_grad_()
    y = torch.softmax(xr.detach() / 1.3, -1)
    yl = torch.log_softmax(xr.detach() / 1.3, 0)
    dyr = dy.clone().requires_grad_()
    s, te = xr.reshape(4, 15), (xr.detach() * 0.5).reshape(4, 15)
    cases = []
    for name in ("softmax", "log_softmax"):
        cases += [(name, (xr, -1, 1.3, None)), (name, (xr, 0, 2.0, tr)), (name, (xr, 1, 1.0, t.cpu()))]
    cases += [
        ("softmax_backward", (dyr, y.requires_grad_(), -1, 1.3, None)),
        ("softmax_backward", (dyr, y, -1, 1.0, tr)),
        ("log_softmax_backward", (dyr, yl.requires_grad_(), 0, 1.3, None)),
        ("grouped_softmax", (xr, [2, 1, 2], -1, 0.7, None)),
        ("grouped_softmax", (xr, [1, 2], 1, 1.0, tr)),
        ("grouped_softmax_backward", (dyr, y, [2, 3], -1, 1.3, None)),
    ]
    for reduction in ("batchmean", "sum", "mean", "none"):
        cases.append(("distillation_loss", (s, te.clone().requires_grad_(), 2.0, reduction)))
    stats = torch.ops.glo_kernels.distillation_loss(s.detach().cpu(), te.cpu(), 2.0, "sum")[1].to(device)
    cases += [
        ("distillation_loss_backward", (torch.tensor(0.7, dtype=torch.float64, device=device, requires_grad=True),
                                        s, te.clone().requires_grad_(), stats, 2.0, "sum", True)),
        ("distillation_loss_backward", (torch.randn(4, 15, dtype=torch.float64, device=device, requires_grad=True),
                                        s, te, stats, 2.0, "none", False)),
    ]
    return cases


@pytest.mark.parametrize("ns,device", _op_namespaces())
def test_opcheck_every_op(ns, device):
    ops = getattr(torch.ops, ns)
    seen = set()
    for name, args in _opcheck_cases(device):
        torch.library.opcheck(getattr(ops, name).default, args)
        seen.add(name)
    schemas = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith("glo_kernels::")}
    assert schemas <= seen, f"ops without an opcheck case: {schemas - seen}"


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = torch.nn.Linear(16, 32)
        self.a1 = glo_kernels.nn.ReLU()
        self.l2 = torch.nn.Linear(32, 32)
        self.a2 = glo_kernels.nn.LeakyReLU(0.1, inplace=True)
        self.l3 = torch.nn.Linear(32, 8)
        self.a3 = glo_kernels.nn.PReLU(8)
        self.a4 = glo_kernels.nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.a2(self.l2(self.a1(self.l1(x))))
        return self.a4(self.a3(self.l3(h)) * 1.0)


def _check_compiled_matches_eager(device, compile_backend):
    torch._dynamo.reset()
    torch.manual_seed(0)
    net = _Net().to(device)
    x = torch.randn(6, 16, device=device)
    eager_out = net(x)
    eager_grads = torch.autograd.grad(eager_out.square().sum(), list(net.parameters()))
    compiled = torch.compile(net, fullgraph=True, backend=compile_backend)
    out = compiled(x)
    grads = torch.autograd.grad(out.square().sum(), list(net.parameters()))
    torch.testing.assert_close(out, eager_out)
    for g, ge in zip(grads, eager_grads):
        torch.testing.assert_close(g, ge)
    # no grad: the in-place ops run without saving masks
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager_out.detach())


def test_torch_compile_fullgraph(backend):
    """The model traces with no graph break (fake kernels, autograd, in-place); compiled results equal eager ones."""
    _check_compiled_matches_eager(backend[1], "aot_eager")


def test_torch_compile_inductor_cpu():
    """The same through Inductor (one backend only: an Inductor compile takes a while on 2 cores)."""
    with glo_kernels.use_backend("cpu"):
        _check_compiled_matches_eager("cpu", "inductor")


class _AllOpsNet(torch.nn.Module):
    """Every op of the table once, behind layers whose parameters require grad (a model in training mode)."""

    def __init__(self):
        super().__init__()
        nn = glo_kernels.nn
        self.l1 = torch.nn.Linear(16, 32)
        # (the in-place LeakyReLU after ELU, which saves its input: after ReLU it would break the reference backend's
        # torch.relu, which saves its output, as it breaks torch.nn)
        self.acts = torch.nn.Sequential(nn.ReLU(), nn.ELU(), nn.LeakyReLU(0.1, inplace=True), nn.PReLU(32),
                                        nn.PELU(32), nn.Sigmoid())
        self.maxout = nn.Maxout(2, dim=1)
        self.l2 = torch.nn.Linear(16, 8)
        self.softmax = nn.Softmax(dim=-1, temperature=2.0)
        self.log_softmax = nn.LogSoftmax(dim=-1, temperature=0.5)
        self.grouped = nn.GroupedSoftmax([3, 5], dim=-1)
        self.distill = nn.DistillationLoss(temperature=2.0, reduction="none")

    def forward(self, x):
        h = self.l2(self.maxout(self.acts(self.l1(x))))
        h = glo_kernels.tanh(h)
        return (self.softmax(h) + self.log_softmax(h) + self.grouped(h)
                + self.distill(h, h.flip(-1)))


def test_torch_export_and_compile_with_a_dynamic_batch(backend):
    """torch.export with a dynamic batch dim of a model using every op, parameters requiring grad: nothing specializes
    the dim (a saved ReLU mask of ceil(n / 32) words used to: PyTorch guards on whether it has fewer than 2 elements);
    the exported program and torch.compile(dynamic=True) give eager's results at other batch sizes, compile without
    recompiling."""
    _, device = backend
    torch.manual_seed(0)
    net = _AllOpsNet().to(device)
    x = torch.randn(4, 16, device=device)
    ep = torch.export.export(net, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=4096)}})
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(net, fullgraph=True, dynamic=True, backend="aot_eager")
    exported = ep.module()
    for batch in (3, 5, 37, 4):
        xb = torch.randn(batch, 16, device=device)
        expected = net(xb)
        eager_grads = torch.autograd.grad(expected.sum(), list(net.parameters()))
        with torch.no_grad():
            torch.testing.assert_close(exported(xb), expected)
        out = compiled(xb)
        torch.testing.assert_close(out, expected)
        grads = torch.autograd.grad(out.sum(), list(net.parameters()))
        for g, ge in zip(grads, eager_grads):
            torch.testing.assert_close(g, ge)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1, dict(torch._dynamo.utils.counters["stats"])


_CPP_AUTOGRAD_OPS = ("relu", "leaky_relu", "elu", "softplus", "prelu", "pelu", "maxout", "softmax", "log_softmax",
                     "grouped_softmax", "distillation_loss") + UNARY_NAMES + GATED_FORWARD_OPS + BIAS_NAMES


@pytest.mark.skipif(not glo_kernels.available_backends()["cpu"].available, reason="the C++ extension is not built")
def test_forward_ops_of_the_extension_have_cpp_autograd():
    """The autograd kernel of each forward op of both operator namespaces (torch.ops.glo_kernels and
    glo_kernels_triton) is the C++ one (csrc/autograd.cpp): a Python kernel would run on every call, grad or not, at
    several µs each. The backward ops keep their Python autograd (double backward only). Every forward op is listed."""
    for ns in ("glo_kernels", "glo_kernels_triton"):
        forward = {s.name.split("::")[1] for s in torch._C._jit_get_all_schemas() if s.name.startswith(ns + "::")}
        forward = {n for n in forward if not n.endswith("_") and not n.endswith("_backward")}
        assert forward == set(_CPP_AUTOGRAD_OPS), (ns, forward ^ set(_CPP_AUTOGRAD_OPS))
        for name in _CPP_AUTOGRAD_OPS:
            lines = [ln for ln in torch._C._dispatch_dump(f"{ns}::{name}").splitlines() if ln.startswith("Autograd")]
            assert len(lines) == 1 and "csrc/autograd.cpp" in lines[0], (ns, name, lines)
        lines = [ln for ln in torch._C._dispatch_dump(f"{ns}::relu_backward").splitlines() if ln.startswith("Autograd")]
        assert len(lines) == 1 and "torch/library.py" in lines[0], lines
