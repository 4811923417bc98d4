"""The op table: one entry per op, driving tests, benchmarks and the report.

Adding an op means: functors in csrc/include/glo/activations.h, kernels per backend, the schema in
csrc/registration.cpp, autograd/fake in ops.py, the functional wrapper, the module, and one OpSpec here.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch
import torch.nn.functional as F

from glo_kernels import functional, nn, reference


def _no_params(shape, dtype, device, per_channel):
    return ()


def _prelu_weight(shape, dtype, device, per_channel):
    channels = shape[1] if (per_channel and len(shape) >= 2) else 1
    # Slopes on both sides of 0 and of 1, as learned PReLU slopes can be.
    w = torch.rand(channels, dtype=torch.float64) * 1.5 - 0.25
    return (w.to(dtype=dtype, device=device),)


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
    # Benchmark bookkeeping, in units of numel * element size: fewest bytes moved forward / backward, and bytes
    # saved for backward by eager PyTorch and by us.
    bytes_fwd: float = 2.0
    bytes_bwd: float = 3.0
    saved_eager: float = 1.0
    saved_ours: float = 1.0
    eager: Callable | None = None  # what the benchmark times as "eager" (default: reference)


OPS: tuple[OpSpec, ...] = (
    OpSpec(
        name="relu",
        fn=functional.relu,
        reference=reference.relu,
        inplace=True,
        module=nn.ReLU,
        torch_module=torch.nn.ReLU,
        bytes_bwd=2.0,  # grad in, dx out (+ the 1-bit mask)
        saved_eager=1.0,  # eager saves the output
        saved_ours=1 / 32,  # per float32 element: 1 bit (reported per dtype by the benchmark)
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
        saved_eager=1.0,
        saved_ours=1 / 32,
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
        saved_eager=1.0,
        saved_ours=1.0,
        eager=F.prelu,
    ),
)

OPS_BY_NAME = {op.name: op for op in OPS}
