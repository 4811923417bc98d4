"""Plain-PyTorch reference of every op: the ``reference`` backend and the ground truth of the tests.

Each function mirrors the functors of csrc/include/glo/activations.h. For the ReLU family PyTorch's own ops define
the conventions we copy (values and gradients at 0, -0.0 and NaN), so the reference is those ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return F.relu(x, inplace=inplace)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    if inplace and negative_slope < 0 and torch.is_grad_enabled() and x.requires_grad:
        # torch's in-place backward reads the output's sign, wrong for negative slopes (it refuses them): keep x.
        return x.copy_(F.leaky_relu(x.clone(), negative_slope))
    return F.leaky_relu(x, negative_slope, inplace=inplace)


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.prelu(x, weight)
