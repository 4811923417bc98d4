"""Drop-in modules: constructor arguments, state_dict round trips with torch.nn, replace_activations."""
import copy

import pytest
import torch

import glo_kernels
from glo_kernels._registry import OPS

MODULE_OPS = [op for op in OPS if op.torch_module is not None]


@pytest.mark.parametrize("op", MODULE_OPS, ids=lambda op: op.name)
def test_state_dict_round_trip(op):
    ours = op.module(**op.module_kwargs)
    theirs = op.torch_module(**op.module_kwargs)
    assert isinstance(ours, op.torch_module)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for p in theirs.parameters():
        with torch.no_grad():
            p.uniform_(0.05, 0.5)
    ours.load_state_dict(theirs.state_dict())  # torch.nn -> ours
    back = op.torch_module(**op.module_kwargs)
    back.load_state_dict(ours.state_dict())  # ours -> torch.nn
    for a, b in zip(theirs.parameters(), back.parameters()):
        assert torch.equal(a, b)
    x = torch.randn(4, 3 if "num_parameters" not in op.module_kwargs else op.module_kwargs["num_parameters"], 5)
    torch.testing.assert_close(ours(x), theirs(x))
    assert repr(ours) == repr(theirs)


def test_prelu_module_arguments():
    m = glo_kernels.nn.PReLU(num_parameters=6, init=0.1, dtype=torch.float64)
    assert m.weight.shape == (6,) and m.weight.dtype == torch.float64
    assert torch.equal(m.weight, torch.full((6,), 0.1, dtype=torch.float64))
    x = torch.randn(2, 6, 3, dtype=torch.float64, requires_grad=True)
    m(x).sum().backward()
    assert m.weight.grad is not None and m.weight.grad.shape == (6,)
    ref = torch.nn.PReLU(6, init=0.1, dtype=torch.float64)
    x2 = x.detach().clone().requires_grad_()
    ref(x2).sum().backward()
    torch.testing.assert_close(m.weight.grad, ref.weight.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def _model():
    return torch.nn.Sequential(
        torch.nn.Linear(8, 16),
        torch.nn.ReLU(),
        torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.LeakyReLU(0.2, inplace=True)),
        torch.nn.Linear(16, 4),
        torch.nn.PReLU(4, init=0.3),
        torch.nn.Tanh(),
        torch.nn.GELU(approximate="tanh"),
        torch.nn.Softsign(),  # not implemented by glo_kernels: left alone
    )


def test_replace_activations_matches_torch_nn():
    torch.manual_seed(0)
    ref = _model().double()
    model = copy.deepcopy(ref)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    prelu_weight = model[4].weight
    out = glo_kernels.nn.replace_activations(model)
    assert out is model
    assert type(model[1]) is glo_kernels.nn.ReLU
    assert type(model[2][1]) is glo_kernels.nn.LeakyReLU and model[2][1].inplace and model[2][1].negative_slope == 0.2
    assert type(model[4]) is glo_kernels.nn.PReLU and model[4].weight is prelu_weight  # optimizer still sees it
    assert type(model[5]) is glo_kernels.nn.Tanh
    assert type(model[6]) is glo_kernels.nn.GELU and model[6].approximate == "tanh"
    assert type(model[7]) is torch.nn.Softsign
    assert model.state_dict().keys() == ref.state_dict().keys()
    x = torch.randn(10, 8, dtype=torch.float64)
    torch.testing.assert_close(model(x), ref(x))
    model(x).square().sum().backward()
    ref(x).square().sum().backward()
    for (n, p), (_, q) in zip(model.named_parameters(), ref.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=n)
    opt.step()  # updates the same PReLU parameter the model uses
    assert not torch.equal(model[4].weight, ref[4].weight)


def test_replace_activations_root_and_mode():
    m = torch.nn.ReLU(inplace=True).eval()
    twin = glo_kernels.nn.replace_activations(m)
    assert type(twin) is glo_kernels.nn.ReLU and twin.inplace and not twin.training
    with pytest.raises(TypeError, match="model"):
        glo_kernels.nn.replace_activations("not a module")
