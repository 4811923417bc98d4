"""Bad input gets a clear error naming the op and the argument, before any kernel runs."""
import pytest
import torch

import glo_kernels


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.bool, torch.uint8, torch.complex64])
@pytest.mark.parametrize("fn", ["relu", "leaky_relu", "prelu"])
def test_non_floating_input(backend, fn, dtype):
    x = torch.zeros(4, 3, dtype=dtype, device=backend[1])
    args = (torch.ones(1, dtype=dtype),) if fn == "prelu" else ()
    with pytest.raises(TypeError, match=rf"glo_kernels\.{fn}: argument 'x' .*{dtype}"):
        getattr(glo_kernels, fn)(x, *args)


def test_not_a_tensor():
    with pytest.raises(TypeError, match=r"glo_kernels\.relu: argument 'x' must be a torch.Tensor"):
        glo_kernels.relu([1.0, 2.0])
    with pytest.raises(TypeError, match=r"glo_kernels\.prelu: argument 'weight' must be a torch.Tensor"):
        glo_kernels.prelu(torch.randn(3), 0.25)


def test_leaky_relu_slope_type():
    with pytest.raises(TypeError, match=r"glo_kernels\.leaky_relu: argument 'negative_slope'"):
        glo_kernels.leaky_relu(torch.randn(3), "0.1")
    with pytest.raises(TypeError, match="negative_slope"):
        glo_kernels.leaky_relu(torch.randn(3), torch.tensor(0.1))


def test_prelu_weight_size(backend):
    d = backend[1]
    with pytest.raises(ValueError, match=r"glo_kernels\.prelu: argument 'weight' has 4 elements.*size of dim 1 = 3"):
        glo_kernels.prelu(torch.randn(2, 3, 5, device=d), torch.rand(4, device=d))
    with pytest.raises(ValueError, match=r"argument 'weight' has 3 elements"):
        glo_kernels.prelu(torch.randn(3, device=d), torch.rand(3, device=d))  # 1-D input: one channel
    with pytest.raises(ValueError, match=r"argument 'weight' has 3 elements"):
        glo_kernels.prelu(torch.tensor(1.0, device=d), torch.rand(3, device=d))
    with pytest.raises(ValueError, match=r"argument 'weight' must be a scalar or a 1-D tensor"):
        glo_kernels.prelu(torch.randn(2, 3, device=d), torch.rand(3, 1, device=d))
    with pytest.raises(TypeError, match=r"argument 'weight' has dtype torch.float64"):
        glo_kernels.prelu(torch.randn(2, 3, device=d), torch.rand(3, dtype=torch.float64, device=d))


def test_prelu_weight_on_other_device():
    if not torch.cuda.is_available():
        x = torch.randn(2, 3)
        w = torch.rand(3, device="meta")
    else:
        x = torch.randn(2, 3, device="cuda")
        w = torch.rand(3)
    with pytest.raises(ValueError, match=r"glo_kernels\.prelu: argument 'weight' is on .* same device"):
        glo_kernels.prelu(x, w)


def test_cpp_ops_check_arguments_too():
    """Direct calls of the registered ops (bypassing the Python checks) are checked in C++ as well."""
    ops = torch.ops.glo_kernels
    with pytest.raises(RuntimeError, match=r"glo_kernels\.relu: argument 'x' must be a floating-point tensor"):
        ops.relu(torch.zeros(3, dtype=torch.int64), True)
    with pytest.raises(RuntimeError, match=r"glo_kernels\.prelu: argument 'weight' has 4 elements"):
        ops.prelu(torch.randn(2, 3), torch.rand(4))
    with pytest.raises(RuntimeError, match=r"glo_kernels\.relu_backward: argument 'mask'"):
        ops.relu_backward(torch.randn(64), torch.zeros(1, dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"glo_kernels\.prelu_backward: argument 'grad' has shape"):
        ops.prelu_backward(torch.randn(2, 4), torch.randn(2, 3), torch.rand(3))


def test_backward_without_saved_mask_is_an_error():
    x = torch.randn(40, requires_grad=True)
    y, mask = torch.ops.glo_kernels.relu(x, False)
    with pytest.raises(RuntimeError, match=r"save_mask=False"):
        y.sum().backward()
