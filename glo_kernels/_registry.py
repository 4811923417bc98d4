"""The op table: one entry per op, driving tests, benchmarks and the report.

The entries of the unary family are made from its specs (glo_kernels/ops/unary.py; adding one of those ops touches no
file here: docs/adding_an_op.md). The other families' entries are written below.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from glo_kernels import functional, nn, reference
from glo_kernels.ops.bias import BIAS
from glo_kernels.ops.gated import GATED
from glo_kernels.ops.unary import UNARY


def _no_params(shape, dtype, device, per_channel):
    return ()


def _prelu_weight(shape, dtype, device, per_channel):
    channels = shape[1] if (per_channel and len(shape) >= 2) else 1
    # Slopes on both sides of 0 and of 1, as learned PReLU slopes can be.
    w = torch.rand(channels, dtype=torch.float64) * 1.5 - 0.25
    return (w.to(dtype=dtype, device=device),)


def _pelu_params(shape, dtype, device, per_channel):
    channels = shape[1] if (per_channel and len(shape) >= 2) else 1
    a = torch.rand(channels, dtype=torch.float64) * 1.8 + 0.2
    b = torch.rand(channels, dtype=torch.float64) * 1.8 + 0.2
    return (a.to(dtype=dtype, device=device), b.to(dtype=dtype, device=device))


def _maxout_cases(shape):
    """(pieces, dim) cases valid for a shape: small divisors of the size of the first and the last dim."""
    cases = []
    for dim in sorted({0, len(shape) - 1}) if shape else ():
        size = shape[dim]
        for pieces in (1, 2, 3, 5, 7):
            if size % pieces == 0 and (pieces > 1 or dim == 0):
                cases.append({"pieces": pieces, "dim": dim})
    return tuple(cases)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """One op: ours, its plain-torch reference and torch twin, learned parameters, and test cases."""

    name: str
    fn: Callable  # glo_kernels.<op>(x, *params, **kwargs)
    reference: Callable  # same signature, plain torch
    make_params: Callable = _no_params  # (shape, dtype, device, per_channel) -> tuple of learned tensors
    param_names: tuple[str, ...] = ()
    kwargs_cases: tuple[dict, ...] = ({},)  # scalar arguments to test with
    inplace: bool = False  # fn takes inplace=True
    module: type | None = None  # glo_kernels.nn module
    torch_module: type | None = None  # its torch.nn twin
    module_kwargs: dict = dataclasses.field(default_factory=dict)
    # Benchmark bookkeeping: fewest bytes moved forward / backward in units of numel * element size, plus aux_bytes
    # per input element of auxiliary state ours saves for backward (written forward, read backward: a 1-bit mask is
    # 1/8). What each side keeps for backward is measured by the benchmarks (saved-tensor hooks), not declared.
    bytes_fwd: float = 2.0
    bytes_bwd: float = 3.0
    aux_bytes: float = 0.0
    eager: Callable | None = None  # what the benchmark times as "eager" (default: reference)
    # Numbers: True when ours equals PyTorch's bit for bit (no transcendental functions); else the relative error
    # allowed against the float64 reference, in units of the dtype's rounding error.
    exact: bool = True
    ulps: float = 2.0
    # Scalar-argument cases that depend on the input's shape (overrides kwargs_cases when set); arguments the
    # benchmarks pass.
    kwargs_for_shape: Callable | None = None
    bench_kwargs: dict = dataclasses.field(default_factory=dict)
    bench_kwargs_fn: Callable | None = None  # shape -> bench kwargs, when they depend on the shape
    params_require_grad: bool = True  # whether benchmarks make the learned tensors require grad
    family: str = "elementwise"  # "elementwise" (OPS) or "softmax" (ROW_OPS)
    unary: object = None  # the UnarySpec of an op of the unary family (glo_kernels/ops/unary.py), else None
    gated: object = None  # the GatedSpec of an op of the gated family (glo_kernels/ops/gated.py), else None
    bias: object = None  # the BiasSpec of an op of the bias family (glo_kernels/ops/bias.py), else None
    # (x, dy) -> the scale of the input gradient's absolute error, shaped like x (an ulps bound times it is allowed
    # besides the relative one, where the derivative crosses zero); default: |dy| (the element-wise ops)
    grad_scale: Callable | None = None
    # (op, x64, params64, dy, kwargs, pname) -> the sum over each element of parameter pname of |its gradient's
    # terms| (float64), which bounds the error of the kernels' sums; default: tests/test_ops.py's _param_terms (one
    # sign per side of x = 0: PReLU, PELU)
    param_terms: Callable | None = None

    def grad_error_scale(self, x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        return self.grad_scale(x, dy) if self.grad_scale else dy.abs()

    def cases_for(self, shape) -> tuple[dict, ...]:
        return self.kwargs_for_shape(tuple(shape)) if self.kwargs_for_shape else self.kwargs_cases

    def bench_kwargs_for(self, shape) -> dict:
        return self.bench_kwargs_fn(tuple(shape)) if self.bench_kwargs_fn else self.bench_kwargs


OPS: tuple[OpSpec, ...] = (
    OpSpec(
        name="relu",
        fn=functional.relu,
        reference=reference.relu,
        inplace=True,
        module=nn.ReLU,
        torch_module=torch.nn.ReLU,
        bytes_bwd=2.0,  # grad in, dx out (+ the 1-bit mask)
        aux_bytes=1 / 8,
        eager=torch.relu,
    ),
    OpSpec(
        name="leaky_relu",
        fn=functional.leaky_relu,
        reference=reference.leaky_relu,
        kwargs_cases=({}, {"negative_slope": 0.2}, {"negative_slope": -0.5}, {"negative_slope": 1.5}),
        inplace=True,
        module=nn.LeakyReLU,
        torch_module=torch.nn.LeakyReLU,
        module_kwargs={"negative_slope": 0.1},
        bytes_bwd=2.0,
        aux_bytes=1 / 8,
        eager=F.leaky_relu,
    ),
    OpSpec(
        name="prelu",
        fn=functional.prelu,
        reference=reference.prelu,
        make_params=_prelu_weight,
        param_names=("weight",),
        module=nn.PReLU,
        torch_module=torch.nn.PReLU,
        module_kwargs={"num_parameters": 1},
        bytes_bwd=3.0,  # x and grad in, dx out (+ per-channel partial sums)
        eager=F.prelu,
    ),
    OpSpec(
        name="elu",
        exact=False,
        ulps=4.0,
        fn=functional.elu,
        reference=reference.elu,
        kwargs_cases=({}, {"alpha": 0.5}, {"alpha": 2.0}),
        inplace=True,
        module=nn.ELU,
        torch_module=torch.nn.ELU,
        module_kwargs={"alpha": 0.7},
        bytes_bwd=3.0,  # grad and the saved input in, dx out
        eager=F.elu,
    ),
    OpSpec(
        name="softplus",
        exact=False,
        ulps=4.0,
        fn=functional.softplus,
        reference=reference.softplus,
        kwargs_cases=({}, {"beta": 2.0}, {"beta": 0.5, "threshold": 5.0}),
        module=nn.Softplus,
        torch_module=torch.nn.Softplus,
        module_kwargs={"beta": 2.0},
        bytes_bwd=3.0,  # grad and the saved input in, dx out
        eager=F.softplus,
    ),
    OpSpec(
        name="pelu",
        exact=False,
        ulps=4.0,
        fn=functional.pelu,
        reference=reference.pelu,
        make_params=_pelu_params,
        param_names=("a", "b"),
        module=nn.PELU,
        module_kwargs={"num_parameters": 1},
        bytes_bwd=3.0,  # x and grad in, dx out (+ per-channel partial sums of da and db)
        eager=reference.pelu_composite,
    ),
    OpSpec(
        name="maxout",
        fn=functional.maxout,
        reference=reference.maxout,
        kwargs_for_shape=_maxout_cases,
        module=nn.Maxout,
        module_kwargs={"pieces": 3},
        bench_kwargs={"pieces": 4, "dim": 1},
        bytes_fwd=1.25,  # x in, a quarter as much out with pieces=4
        bytes_bwd=1.25,  # grad in, dx out
        aux_bytes=1 / 4,  # one uint8 index per output
        eager=reference.maxout_amax,
    ),
)


def _unary_entry(spec) -> OpSpec:
    """The table entry of an op of the unary family (glo_kernels/ops/unary.py)."""
    return OpSpec(
        name=spec.name,
        exact=False,
        ulps=spec.ulps,
        fn=getattr(functional, spec.name),
        reference=getattr(reference, spec.name),
        inplace=True,
        module=getattr(nn, spec.module_name),
        torch_module=spec.torch_module,
        module_kwargs=dict(spec.twin_kwargs),
        bytes_bwd=3.0,  # grad and the saved input or output in, dx out
        eager=spec.twin,
        unary=spec,
    )


def _even_last_dim(shape):
    """The one case of a gated unit: a shape with at least one dim and an even last one (none otherwise)."""
    return ({},) if len(shape) >= 1 and shape[-1] % 2 == 0 else ()


def _gated_grad_scale(x: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """|dy b| for da (act' crosses zero: SiLU at -1.28, GELU at -0.75), 0 for db (relative error only)."""
    _, b = x.chunk(2, dim=-1)
    s = (dy.to(b.dtype) * b).abs()
    return torch.cat([s, torch.zeros_like(s)], dim=-1)


def _gated_entry(spec) -> OpSpec:
    """The table entry of an op of the gated family (glo_kernels/ops/gated.py)."""
    return OpSpec(
        name=spec.name,
        exact=spec.act == "relu",
        ulps=spec.ulps,
        fn=getattr(functional, spec.name),
        reference=getattr(reference, spec.name),
        kwargs_for_shape=_even_last_dim,
        module=getattr(nn, spec.module) if spec.module else None,
        module_kwargs=dict(spec.variant_kwargs),
        bytes_fwd=1.5,  # x in (2h per row), y out (h)
        bytes_bwd=2.5,  # dy (h) and x (2h) in, dx (2h) out
        eager=spec.eager,
        gated=spec,
        grad_scale=_gated_grad_scale,
    )


def _bias_param(shape, dtype, device, per_channel):
    """A bias over the last dim, of the values a Linear layer's bias has (a few units)."""
    return ((torch.randn(shape[-1], dtype=torch.float64) * 2).to(dtype=dtype, device=device),)


def _bias_terms(op, x64, p64, dy, kwargs, pname):
    """The bias gradient sums the terms dx over the rows, each within a few roundings of |dy| (as the input gradient:
    its relative error grows where act' is near 0) and at most about |dy| (act' <= 1.13): the sum over the rows of
    max(|dx|, |dy|) (float64 reference) scales both the terms' errors and the sum's."""
    x = x64.detach().clone().requires_grad_()
    dy = dy.double().cpu()
    (dx,) = torch.autograd.grad(op.reference(x, *(p.detach() for p in p64), **kwargs), x, dy)
    return torch.maximum(dx.abs(), dy.abs()).reshape(-1, x.shape[-1]).sum(0)


def _has_last_dim(shape):
    return ({},) if len(shape) >= 1 else ()


def _bias_entry(spec) -> OpSpec:
    """The table entry of an op of the bias family (glo_kernels/ops/bias.py)."""
    return OpSpec(
        name=spec.name,
        exact=False,
        ulps=spec.ulps,
        fn=getattr(functional, spec.name),
        reference=getattr(reference, spec.name),
        make_params=_bias_param,
        param_names=("bias",),
        kwargs_for_shape=_has_last_dim,
        bytes_bwd=3.0,  # x and grad in, dx out (+ per-tile partial sums of the bias gradient)
        eager=spec.eager,
        bias=spec,
        param_terms=_bias_terms,
    )


OPS: tuple[OpSpec, ...] = (OPS + tuple(_unary_entry(spec) for spec in UNARY)
                           + tuple(_gated_entry(spec) for spec in GATED) + tuple(_bias_entry(spec) for spec in BIAS))

OPS_BY_NAME = {op.name: op for op in OPS}


def _teacher(shape, dtype, device, per_channel):
    """The teacher's logits of a distillation case: random, of the student's shape."""
    return (torch.randn(shape, dtype=torch.float64).mul(3).to(dtype=dtype, device=device),)


def _uneven_groups(size: int) -> list[int]:
    """64 groups (fewer for short rows) alternating 1 and 3 parts of size / 128, summing to size."""
    n = max(1, min(64, size // 4))
    unit = size // (2 * n)
    sizes = [unit if k % 2 == 0 else 3 * unit for k in range(n)] if unit else [size]
    sizes[-1] += size - sum(sizes)
    return sizes


# The softmax family: ops along a dim (rows), tested by tests/test_softmax.py; benchmarked with OPS.
ROW_OPS: tuple[OpSpec, ...] = (
    OpSpec(
        name="softmax",
        family="softmax",
        exact=False,
        fn=functional.softmax,
        reference=reference.softmax,
        module=nn.Softmax,
        torch_module=torch.nn.Softmax,
        module_kwargs={"dim": -1},
        bench_kwargs={"dim": -1, "temperature": 2.0},
        bytes_fwd=2.0,  # x in, y out
        bytes_bwd=3.0,  # grad and y in, dx out
        eager=reference.softmax_eager,
    ),
    OpSpec(
        name="log_softmax",
        family="softmax",
        exact=False,
        fn=functional.log_softmax,
        reference=reference.log_softmax,
        module=nn.LogSoftmax,
        torch_module=torch.nn.LogSoftmax,
        module_kwargs={"dim": -1},
        bench_kwargs={"dim": -1, "temperature": 2.0},
        eager=reference.log_softmax_eager,
    ),
    OpSpec(
        name="grouped_softmax",
        family="softmax",
        exact=False,
        fn=functional.grouped_softmax,
        reference=reference.grouped_softmax,
        bench_kwargs_fn=lambda shape: {"group_sizes": _uneven_groups(shape[-1]), "dim": -1, "temperature": 2.0},
        eager=reference.grouped_softmax_eager,
    ),
    OpSpec(
        name="distillation_loss",
        family="softmax",
        exact=False,
        fn=functional.distillation_loss,
        reference=reference.distillation_loss,
        make_params=_teacher,
        param_names=("teacher",),
        params_require_grad=False,  # a frozen teacher, as in distillation
        module=nn.DistillationLoss,
        bench_kwargs={"temperature": 2.0, "reduction": "batchmean"},
        bytes_fwd=2.0,  # student and teacher in (plus 5 numbers per row)
        bytes_bwd=3.0,  # student and teacher in, d student out
        eager=reference.distillation_loss_eager,
    ),
)

ALL_OPS = OPS + ROW_OPS
ALL_OPS_BY_NAME = {op.name: op for op in ALL_OPS}
