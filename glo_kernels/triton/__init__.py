"""Triton backend of glo_kernels.

``glo_kernels.triton.kernels`` holds the @triton.jit kernels (mirroring csrc/include/glo/activations.h) and their
launchers; ``glo_kernels.triton.ops`` defines the ``torch.ops.glo_kernels_triton.*`` operators with the schemas and
semantics of the C++ ``torch.ops.glo_kernels.*`` ones. Nothing is imported here, so that importing this package
neither needs Triton nor registers operators; import ``glo_kernels.triton.ops`` to register them.
"""
