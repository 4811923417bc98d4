"""glo_kernels: fused activation kernels for PyTorch (CUDA C++, Triton, CPU) with a plain-torch reference.

Functional API: :func:`relu`, :func:`leaky_relu`, :func:`prelu`, :func:`elu`, :func:`pelu`, :func:`maxout`, :func:`sigmoid`,
:func:`tanh`, :func:`softmax`, :func:`log_softmax`, :func:`grouped_softmax`, :func:`distillation_loss`; modules in
:mod:`glo_kernels.nn`.
Backends: :func:`available_backends`, :func:`use_backend` and the environment variable ``GLO_KERNELS_BACKEND``.
"""
from glo_kernels import backends as _backends
from glo_kernels import ops as _ops
from glo_kernels.backends import BACKENDS, BackendStatus, available_backends, backend_for, use_backend
from glo_kernels.functional import (distillation_loss, elu, grouped_softmax, leaky_relu, log_softmax, maxout, pelu,
                                   prelu, relu, sigmoid, softmax, tanh)

__version__ = "0.1.0"

if _backends._EXT_LOADED:  # (the C++ extension defines both operator namespaces)
    _ops.register("glo_kernels")
    _ops.register("glo_kernels_triton")
if _backends.available_backends()["triton"].available:
    from glo_kernels.triton import launch as _triton_launch  # noqa: F401  (the Triton ops' kernel calls)

from glo_kernels import nn  # noqa: E402

__all__ = [
    "BACKENDS",
    "BackendStatus",
    "available_backends",
    "backend_for",
    "distillation_loss",
    "elu",
    "grouped_softmax",
    "leaky_relu",
    "log_softmax",
    "maxout",
    "nn",
    "pelu",
    "prelu",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
    "use_backend",
]
