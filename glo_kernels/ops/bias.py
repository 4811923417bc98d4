"""The bias family: an activation of ``x + bias`` with the bias over the last dim, as Apex's fused bias-GELU (the bias
of a Linear layer folded into the activation that follows it). One BiasSpec per op; the rest follows from it.

An op of this family is written in two places:
  - its line X(name, Functor, act) in GLO_BIAS_OPS of csrc/include/glo/op_list.h (schemas, device kernels and C++
    autograd of <name> and <name>_backward in both operator namespaces); the math is the activation's functor of
    csrc/include/glo/activations.h wrapped by glo::BiasAct, run by the per-channel kernels (the bias is a parameter
    of one element per channel; its gradient is reduced deterministically in the backward's own pass);
  - its BiasSpec below, from which come the functional glo_kernels.<name>(x, bias), the fake kernels and the double
    backward (glo_kernels/library.py), the reference (glo_kernels/reference.py) and the op-table entry of tests and
    benchmarks (glo_kernels/_registry.py). The activation's Triton pair must exist in glo_kernels/triton/math.py.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
import torch.nn.functional as F

from glo_kernels.ops.unary import UNARY_BY_NAME, activation_grad, activation_second


@dataclasses.dataclass(frozen=True)
class BiasSpec:
    """One op of the bias family."""

    name: str  # glo_kernels.<name>(x, bias); torch.ops.<namespace>.<name>, <name>_backward
    act: str  # the activation: an op of the unary family (glo_kernels/ops/unary.py)
    doc: str
    eager: Callable  # torch's composite (x, bias) -> act(x + bias)
    choice: tuple | None = None  # as UnarySpec.choice (bias_gelu's approximate)
    variant_of: str | None = None
    variant_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def ulps(self) -> float:
        """The activation's bound plus the rounding of x + bias in opmath (and, for 16-bit data, the final one)."""
        return UNARY_BY_NAME[self.act].ulps + 2.0

    def act_grad(self, ops) -> Callable:
        return activation_grad(self.act, ops)

    def act_second(self) -> Callable:
        return activation_second(self.act)


def _composite(act: Callable) -> Callable:
    def eager(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return act(x + bias)

    return eager


_BIAS_DOC = """
    ``bias`` is 1-D, of the size of x's last dim (as a Linear layer's), and of x's dtype. One fused pass forward
    (``x + bias`` formed in opmath: torch's composite rounds it to 16-bit storage first); one backward pass from the
    saved ``x`` and ``bias`` writes ``dx = dy * act'(x + bias)`` and reduces the bias gradient (the sum of dx over all
    rows) in the same pass, deterministically (per-tile partial sums in opmath, then a fixed-order sum: the same bits
    from run to run and with any number of threads). Any shape and strides; float64, float32, bfloat16, float16."""

BIAS: tuple[BiasSpec, ...] = (
    BiasSpec(
        name="bias_gelu",
        act="gelu",
        doc="""``gelu(x + bias, approximate)``, as ``F.gelu(x + bias, approximate)`` (Apex's fused bias-GELU);
    ``approximate="tanh"`` runs :func:`bias_gelu_tanh`. GELU as :func:`glo_kernels.gelu`.
""" + _BIAS_DOC,
        eager=_composite(F.gelu),
        choice=("approximate", "none", (("none", "bias_gelu"), ("tanh", "bias_gelu_tanh"))),
    ),
    BiasSpec(
        name="bias_gelu_tanh",
        act="gelu_tanh",
        doc="""``gelu(x + bias, approximate="tanh")`` (the same as ``glo_kernels.bias_gelu(x, bias, "tanh")``), GELU as
    :func:`glo_kernels.gelu_tanh`.
""" + _BIAS_DOC,
        eager=_composite(functools.partial(F.gelu, approximate="tanh")),
        variant_of="bias_gelu",
        variant_kwargs=(("approximate", "tanh"),),
    ),
    BiasSpec(
        name="bias_silu",
        act="silu",
        doc="""``silu(x + bias)``, as ``F.silu(x + bias)``; SiLU as :func:`glo_kernels.silu`.
""" + _BIAS_DOC,
        eager=_composite(F.silu),
    ),
)

BIAS_BY_NAME = {spec.name: spec for spec in BIAS}
