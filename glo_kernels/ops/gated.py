"""The gated family: gated linear units ``act(a) * b`` (Dauphin et al. 2017; Shazeer 2020), as in LLaMA's SwiGLU and
T5 v1.1's GeGLU. One GatedSpec per op; the rest of the op follows from it.

The gate is the first half of the last dim: ``a, b = x.chunk(2, dim=-1)`` (as Liger-Kernel and vLLM). Each op also
has a two-tensor form ``op(a, b)`` for models that keep the two projections apart.

An op of this family is written in three places:
  - its line X(name, Functor, act) in GLO_GATED_OPS of csrc/include/glo/op_list.h (schemas, device kernels and C++
    autograd of <name>, <name>_backward, <name>_pair, <name>_pair_backward in both operator namespaces); the math is
    the gate's activation, a functor of csrc/include/glo/activations.h, wrapped by glo::Gated;
  - its GatedSpec below, from which come: the functional glo_kernels.<name>(x, b=None), the module
    glo_kernels.nn.<module>, the fake kernels and the double backward (glo_kernels/library.py), the reference
    (glo_kernels/reference.py: the activation's reference in float64, times b) and the entries of the op table of
    tests and benchmarks (glo_kernels/_registry.py);
  - the activation's element functions, where it has none yet (glo_kernels/triton/math.py's pair act_forward /
    act_backward).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch
import torch.nn.functional as F

from glo_kernels.ops.unary import UNARY_BY_NAME, activation, activation_grad, activation_second


def _composite(act: Callable) -> Callable:
    """torch's eager composite of a gated unit: act(a) * b with a, b = x.chunk(2, -1) (or given apart)."""
    def eager(x: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        a, b = x.chunk(2, dim=-1) if b is None else (x, b)
        return act(a) * b

    return eager


@dataclasses.dataclass(frozen=True)
class GatedSpec:
    """One op of the gated family."""

    name: str  # glo_kernels.<name>; torch.ops.<namespace>.<name>, <name>_backward, <name>_pair, <name>_pair_backward
    act: str  # the gate's activation: an op of the unary family (glo_kernels/ops/unary.py) or "relu"
    doc: str  # the docstring of glo_kernels.<name>
    eager: Callable  # torch's composite (x, b=None) -> act(a) * b: the tests' error baseline, the benchmarks' eager
    module: str | None = None  # glo_kernels.nn.<module> (None for a variant)
    # As UnarySpec.choice / variant_of: the string argument of the default op that picks a variant's kernel.
    choice: tuple | None = None
    variant_of: str | None = None
    variant_kwargs: tuple[tuple[str, object], ...] = ()  # the default op's arguments that select this variant
    # What is bit for bit torch's composite in every dtype: "values", "grads" (tests/test_ops.py).
    bitwise: tuple[str, ...] = ()

    @property
    def ulps(self) -> float:
        """Values and gradients within this many roundings of the float64 reference: the activation's bound, one
        rounding of the product with b (or dy) in opmath, one of dy * b (da) and the final one to the dtype. ReGLU
        (exact selects, one rounding of each product): the table's 2 of an exact op."""
        return 2.0 if self.act == "relu" else UNARY_BY_NAME[self.act].ulps + 3.0

    def act_fn(self, ops) -> Callable:
        return activation(self.act, ops)

    def act_grad(self, ops) -> Callable:
        return activation_grad(self.act, ops)

    def act_second(self) -> Callable:
        return activation_second(self.act)


_GATE_DOC = """
    ``x`` is ``[..., 2h]``: the gate ``a`` is the first half of the last dim, the value ``b`` the second (``a, b =
    x.chunk(2, dim=-1)``, as Liger-Kernel and vLLM); the result is ``[..., h]``. An odd last dim raises. Or give the
    two halves apart, ``{name}(a, b)`` (same shape and dtype), for models that keep two projections.

    One fused pass forward (``{formula}`` in opmath, one rounding); one backward pass reads ``a``, ``b`` and ``dy``
    once and writes ``da = dy * b * act'(a)`` and ``db = dy * act(a)`` (the one-tensor form into one ``dx`` of x's
    shape). Only the input is saved for backward (torch's composite also keeps ``act(a)``). Any shape and strides;
    float64, float32, bfloat16, float16 (16-bit computed in float32, rounded once: torch's composite rounds
    ``act(a)`` and, in the backward, ``dy * b`` to 16 bits first). NaN, +-inf and -0.0 follow torch's composite:
    where ``act(a)`` (or its derivative) underflows to 0 in the working precision, a gelu(-30) in float32, and ``b``
    is infinite, the product is NaN (0 * inf), as torch's, not the +-inf of exact arithmetic."""

GATED: tuple[GatedSpec, ...] = (
    GatedSpec(
        name="swiglu",
        act="silu",
        doc="SwiGLU (Shazeer 2020; LLaMA, Mistral): ``silu(a) * b``, as ``F.silu(a) * b``.\n" + _GATE_DOC.format(
            name="swiglu", formula="x_a * sigmoid(x_a) * b"),
        eager=_composite(F.silu),
        module="SwiGLU",
    ),
    GatedSpec(
        name="geglu",
        act="gelu",
        doc="""GeGLU (Shazeer 2020; T5 v1.1, Gemma): ``gelu(a, approximate) * b``, as ``F.gelu(a, approximate) * b``;
    ``approximate="tanh"`` runs :func:`geglu_tanh` (the second positional argument may be ``approximate`` when ``b``
    is not given: ``geglu(x, "tanh")``). GELU as :func:`glo_kernels.gelu` (within a few ulp also for a < 0).
""" + _GATE_DOC.format(name="geglu", formula="gelu(a) * b"),
        eager=_composite(F.gelu),
        module="GeGLU",
        choice=("approximate", "none", (("none", "geglu"), ("tanh", "geglu_tanh"))),
    ),
    GatedSpec(
        name="geglu_tanh",
        act="gelu_tanh",
        doc="""GeGLU with GELU's tanh form: ``gelu(a, approximate="tanh") * b`` (the same as
    ``glo_kernels.geglu(x, approximate="tanh")``), GELU as :func:`glo_kernels.gelu_tanh`.
""" + _GATE_DOC.format(name="geglu_tanh", formula="gelu_tanh(a) * b"),
        eager=_composite(functools.partial(F.gelu, approximate="tanh")),
        variant_of="geglu",
        variant_kwargs=(("approximate", "tanh"),),
    ),
    GatedSpec(
        name="reglu",
        act="relu",
        doc="""ReGLU (Shazeer 2020): ``relu(a) * b``, as ``F.relu(a) * b``: values and gradients bit for bit torch's
    composite in every dtype (one rounding of each product either way; the gradient of ``a`` is 0 where
    ``a <= 0``, ``dy * b`` elsewhere, NaN included, as torch's).
""" + _GATE_DOC.format(name="reglu", formula="relu(a) * b"),
        eager=_composite(F.relu),
        module="ReGLU",
        bitwise=("values", "grads"),
    ),
)

GATED_BY_NAME = {spec.name: spec for spec in GATED}
