"""Drop-in modules: same constructor arguments, attributes and state_dict keys as their torch.nn twins.

Each module subclasses its torch.nn twin (so ``isinstance(m, torch.nn.ReLU)`` still holds and a torch.nn
state_dict loads unchanged) and only replaces ``forward`` with the fused glo_kernels op.
"""
from __future__ import annotations

import torch

from glo_kernels import functional as F


class ReLU(torch.nn.ReLU):
    """``torch.nn.ReLU`` on glo_kernels' fused kernels (1-bit mask saved for backward)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(torch.nn.LeakyReLU):
    """``torch.nn.LeakyReLU(negative_slope=0.01, inplace=False)`` on glo_kernels' fused kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(input, self.negative_slope, inplace=self.inplace)


class PReLU(torch.nn.PReLU):
    """``torch.nn.PReLU(num_parameters=1, init=0.25, device=None, dtype=None)``; the parameter is ``weight``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.prelu(input, self.weight)


def _twin_relu(m: torch.nn.ReLU) -> torch.nn.Module:
    return ReLU(inplace=m.inplace)


def _twin_leaky_relu(m: torch.nn.LeakyReLU) -> torch.nn.Module:
    return LeakyReLU(negative_slope=m.negative_slope, inplace=m.inplace)


def _twin_prelu(m: torch.nn.PReLU) -> torch.nn.Module:
    twin = PReLU(num_parameters=m.num_parameters, device="meta")
    twin.weight = m.weight  # the same Parameter: values, requires_grad and optimizer references all carry over
    return twin


# torch.nn class -> function building its glo_kernels twin. Grows as ops are added.
_TWINS = {
    torch.nn.ReLU: _twin_relu,
    torch.nn.LeakyReLU: _twin_leaky_relu,
    torch.nn.PReLU: _twin_prelu,
}


def replace_activations(model: torch.nn.Module) -> torch.nn.Module:
    """Swap, in place, every torch.nn activation that glo_kernels implements for its glo_kernels twin.

    Only modules of exactly the torch.nn classes are swapped (subclasses may change behaviour and are left alone).
    Learned parameters are carried over as the same ``Parameter`` objects, so an optimizer built before the swap
    keeps working. The training/eval mode is kept. Returns ``model`` (or its twin if ``model`` itself is an
    activation).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"replace_activations: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")

    def twin_of(m: torch.nn.Module) -> torch.nn.Module | None:
        make = _TWINS.get(type(m))
        if make is None:
            return None
        twin = make(m)
        twin.train(m.training)
        return twin

    root = twin_of(model)
    if root is not None:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = twin_of(child)
            if twin is not None:
                setattr(parent, name, twin)
    return model


__all__ = ["LeakyReLU", "PReLU", "ReLU", "replace_activations"]
