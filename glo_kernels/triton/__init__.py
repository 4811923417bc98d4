"""Triton backend of glo_kernels.

``glo_kernels.triton.kernels`` and ``softmax_kernels`` hold the @triton.jit kernels (mirroring csrc/include/glo/
activations.h and softmax.h) and their launchers. The operators ``torch.ops.glo_kernels_triton.*`` are defined by the
C++ extension with the glue of the C++ operators (csrc/triton_ops.cpp); ``glo_kernels.triton.launch`` registers the
Python implementations of the kernel calls that glue makes. Nothing is imported here, so that importing this package
neither needs Triton nor registers anything; ``import glo_kernels`` imports ``launch`` when Triton can run.
"""
