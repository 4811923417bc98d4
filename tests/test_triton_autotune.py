"""The autotuned Triton kernels (element-wise: mask and unary, forward and backward) give the same bits whichever of
their configurations wins: each configuration is launched directly, with its own grid, and compared bit for bit with
the first (the default, used in the interpreter, under CUDA-graph capture and with GLO_TRITON_AUTOTUNE=0). Sizes that
are not multiples of any tile, so the masked tails and the mask's padding words are covered by every grid.

Without a GPU the kernels run in the Triton interpreter (TRITON_INTERPRET=1, set here before triton is imported)."""
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"  # must precede the first import of triton and of glo_kernels.triton.kernels

triton = pytest.importorskip("triton", reason="triton is not installed: the Triton backend cannot be tested")

from glo_kernels.triton import kernels as K  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and not K.INTERPRETED:
    pytest.skip("glo_kernels.triton.kernels was imported before TRITON_INTERPRET=1 was set, and there is no GPU",
                allow_module_level=True)

N = 9000  # > 2 tiles of the largest configuration (8192 elements), not a multiple of 32
DTYPES = [torch.float32, torch.bfloat16]


def _bits(t):
    return t.view(torch.int16 if t.element_size() == 2 else torch.int32).cpu()


def _x(dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, generator=g, dtype=torch.float64) * 3
    x[::97] = 0.0
    x[5::101] = -0.0
    return x.to(dtype).to(DEVICE)


def _run_mask_forward(cfg, x, op, slope, save):
    y = torch.empty_like(x)
    mask = torch.empty(((N + 31) // 32 + 2) if save else 0, dtype=torch.int32, device=DEVICE)
    words = cfg.kwargs["WORDS"]
    grid = (triton.cdiv(mask.numel(), words) if save else triton.cdiv(N, 32 * words),)
    with K._on_device(x):
        K._mask_forward_kernel[grid](x, y, mask if save else None, N, mask.numel(), float(slope), K._size_bucket(N),
                                     OP=op, SAVE_MASK=save, OPMATH=K._opmath(x.dtype), NEG_ZERO=False,
                                     **cfg.kwargs, num_warps=cfg.num_warps)
    return y, mask


def test_configurations():
    assert K.UNARY_CONFIGS[0].kwargs == {"BLOCK": K.UNARY_BLOCK} and K.MASK_CONFIGS[0].kwargs == {"WORDS": K.MASK_WORDS}
    assert len(K.UNARY_CONFIGS) == len({c.kwargs["BLOCK"] for c in K.UNARY_CONFIGS}) == 3
    assert len(K.MASK_CONFIGS) == len({c.kwargs["WORDS"] for c in K.MASK_CONFIGS}) == 3
    assert [K._size_bucket(n) for n in (1, (1 << 20) - 1, 1 << 20, (1 << 24) - 1, 1 << 24, 1 << 31)] == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op,slope", [(K.RELU, 0.0), (K.LEAKY_RELU, 0.1)], ids=["relu", "leaky_relu"])
def test_mask_kernels_same_bits_for_every_configuration(dtype, op, slope):
    x = _x(dtype, 1)
    g = _x(dtype, 2)
    ref_y, ref_mask = _run_mask_forward(K.MASK_CONFIGS[0], x, op, slope, True)
    assert ref_mask[-2:].eq(0).all()  # the padding words written as zeros by the kernel
    ref_dx = None
    for cfg in K.MASK_CONFIGS:
        y, mask = _run_mask_forward(cfg, x, op, slope, True)
        assert torch.equal(_bits(y), _bits(ref_y)) and torch.equal(mask.cpu(), ref_mask.cpu()), cfg
        y2, _ = _run_mask_forward(cfg, x, op, slope, False)
        assert torch.equal(_bits(y2), _bits(ref_y)), cfg
        dx = torch.empty_like(g)
        with K._on_device(g):
            K._mask_backward_kernel[(triton.cdiv(N, 32 * cfg.kwargs["WORDS"]),)](
                g, ref_mask, dx, N, float(slope), K._size_bucket(N), OP=op, OPMATH=K._opmath(dtype), NEG_ZERO=False,
                **cfg.kwargs, num_warps=cfg.num_warps)
        if ref_dx is None:
            ref_dx = dx
        assert torch.equal(_bits(dx), _bits(ref_dx)), cfg


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", ["elu", "elu_from_result", "sigmoid", "tanh"])
def test_unary_kernels_same_bits_for_every_configuration(dtype, op):
    x = _x(dtype, 3)
    g = _x(dtype, 4)
    ref = None
    fwd, bwd = K.unary_pair(op)
    for cfg in K.UNARY_CONFIGS:
        grid = (triton.cdiv(N, cfg.kwargs["BLOCK"]),)
        y = torch.empty_like(x)
        dx = torch.empty_like(x)
        with K._on_device(x):
            K._unary_forward_kernel[grid](x, y, N, 1.3, 0.0, K._size_bucket(N), FWD=fwd, OPMATH=K._opmath(dtype),
                                          LIBDEVICE=not K.INTERPRETED, NEG_ZERO=False, **cfg.kwargs,
                                          num_warps=cfg.num_warps, **K._libdevice_options(x))
            K._unary_backward_kernel[grid](g, x if op == "elu" else y, dx, N, 1.3, 0.0, K._size_bucket(N), BWD=bwd,
                                           OPMATH=K._opmath(dtype), LIBDEVICE=not K.INTERPRETED, NEG_ZERO=False,
                                           **cfg.kwargs, num_warps=cfg.num_warps, **K._libdevice_options(x))
        if ref is None:
            ref = (y, dx)
        assert torch.equal(_bits(y), _bits(ref[0])) and torch.equal(_bits(dx), _bits(ref[1])), cfg
