"""The op specs seen from the tests: what every generic test iterates, so that an op added by its spec alone (the
unary family, glo_kernels/ops/unary.py) is tested without editing a test file (docs/adding_an_op.md)."""
from __future__ import annotations

import torch

from glo_kernels.ops.bias import BIAS, BIAS_BY_NAME  # noqa: F401  (re-exported)
from glo_kernels.ops.gated import GATED, GATED_BY_NAME  # noqa: F401  (re-exported)
from glo_kernels.ops.unary import UNARY, UNARY_BY_NAME  # noqa: F401  (re-exported)

UNARY_NAMES = tuple(spec.name for spec in UNARY)
GATED_NAMES = tuple(spec.name for spec in GATED)
# the forward operators of the gated family: <name> (one tensor) and <name>_pair
GATED_FORWARD_OPS = GATED_NAMES + tuple(name + "_pair" for name in GATED_NAMES)
BIAS_NAMES = tuple(spec.name for spec in BIAS)


def unary_saved_torch(spec, x: torch.Tensor) -> torch.Tensor:
    """The tensor the backward op of `spec` reads for input x: x itself, or the output of PyTorch's twin (for inputs
    built before any of our ops runs, e.g. float64 opcheck samples)."""
    return x if spec.saved == "x" else spec.twin(x)
