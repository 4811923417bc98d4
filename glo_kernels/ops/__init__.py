"""The specs of the ops, one module per family (docs/adding_an_op.md). Today the unary family (glo_kernels.ops.unary)
is spec-driven end to end; the other families (the ReLU-like mask ops, the per-channel-parameter ops, Maxout, the
softmax family) have their entries in glo_kernels/_registry.py and hand-written glue.

A leaf package: it imports only torch, so that every other module may import it.
"""
