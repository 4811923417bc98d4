"""glo_kernels: fused activation kernels for PyTorch (CUDA C++, Triton, CPU) with a plain-torch reference.

Functional API: :func:`relu`, :func:`leaky_relu`, :func:`prelu`, :func:`elu`, :func:`softplus`, :func:`pelu`, :func:`maxout`,
:func:`softmax`, :func:`log_softmax`, :func:`grouped_softmax`, :func:`distillation_loss`, and the unary family of
glo_kernels.ops.unary (:func:`sigmoid`, :func:`tanh`, ...) and the gated units of glo_kernels.ops.gated
(:func:`swiglu`, :func:`geglu`, :func:`reglu`) and bias + activation of glo_kernels.ops.bias (:func:`bias_gelu`,
:func:`bias_silu`); modules in :mod:`glo_kernels.nn`.
Backends: :func:`available_backends`, :func:`use_backend` and the environment variable ``GLO_KERNELS_BACKEND``; the
CPU kernels' instruction-set level: :func:`cpu_capability`, :func:`use_cpu_capability`, ``GLO_KERNELS_CPU_CAPABILITY``.
"""
from glo_kernels import backends as _backends
from glo_kernels import library as _library
from glo_kernels.backends import (BACKENDS, BackendStatus, available_backends, backend_for, cpu_capabilities, cpu_capability,
                                  use_backend, use_cpu_capability)
from glo_kernels.functional import (BIAS_FUNCTIONS, GATED_FUNCTIONS, UNARY_FUNCTIONS, distillation_loss, elu, grouped_softmax, leaky_relu, log_softmax,
                                   maxout, pelu, prelu, relu, softmax, softplus)

globals().update(UNARY_FUNCTIONS)  # glo_kernels.sigmoid, glo_kernels.tanh, ... (glo_kernels/ops/unary.py)
globals().update(GATED_FUNCTIONS)  # glo_kernels.swiglu, geglu, geglu_tanh, reglu (glo_kernels/ops/gated.py)
globals().update(BIAS_FUNCTIONS)  # glo_kernels.bias_gelu, bias_gelu_tanh, bias_silu (glo_kernels/ops/bias.py)

__version__ = "0.1.0"

if _backends._EXT_LOADED:  # (the C++ extension defines both operator namespaces)
    _library.register("glo_kernels")
    _library.register("glo_kernels_triton")
if _backends.available_backends()["triton"].available:
    from glo_kernels.triton import launch as _triton_launch  # noqa: F401  (the Triton ops' kernel calls)

from glo_kernels import nn  # noqa: E402

__all__ = [
    "BACKENDS",
    "BackendStatus",
    "available_backends",
    "backend_for",
    "cpu_capabilities",
    "cpu_capability",
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
    "softmax",
    "softplus",
    "use_backend",
    "use_cpu_capability",
    *UNARY_FUNCTIONS,
    *GATED_FUNCTIONS,
    *BIAS_FUNCTIONS,
]
