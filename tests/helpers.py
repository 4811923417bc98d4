"""Inputs and comparisons against the float64 reference."""
from __future__ import annotations

import math
import os
import random
import zlib

import torch

# Every run draws fresh random inputs; the run's seed is printed in pytest's header and GLO_TEST_SEED=<seed> replays
# it (each test's inputs depend only on this seed and the test's own key, not on which other tests ran).
RUN_SEED = int(os.environ.get("GLO_TEST_SEED") or random.SystemRandom().randrange(2**31))
# Exported, so that pytest-xdist's workers (started after this module is imported by the main process's conftest)
# draw from the same seed as the one printed.
os.environ["GLO_TEST_SEED"] = str(RUN_SEED)


def seeded(*key) -> torch.Generator:
    """A CPU generator seeded from the run's seed and `key` (reproducible across processes, unlike hash() of str)."""
    return torch.Generator().manual_seed(RUN_SEED ^ zlib.crc32(repr(key).encode()))

# Relative tolerance of one rounding to the dtype, and the floor below which values count as zero.
EPS = {torch.float64: 1e-15, torch.float32: 1.2e-7, torch.bfloat16: 7.9e-3, torch.float16: 9.8e-4}
TINY = {torch.float64: 1e-300, torch.float32: 1e-37, torch.bfloat16: 1e-37, torch.float16: 6.1e-5}

SPECIALS = (float("nan"), float("inf"), -float("inf"), -0.0, 0.0, 1e30, -1e30, 1e-30, -1e-30, 1.0, -1.0, 65504.0)


def make_input(shape, dtype, device="cpu", specials=True, generator=None, scale=3.0) -> torch.Tensor:
    """Random normal values (times `scale`), plus every special value at random positions when specials=True."""
    x = torch.randn(shape, dtype=torch.float64, generator=generator) * scale
    flat = x.view(-1)
    if specials and flat.numel() > 0:
        idx = torch.randperm(flat.numel(), generator=generator)[: len(SPECIALS)]
        for i, v in zip(idx.tolist(), SPECIALS):
            flat[i] = v
    return x.to(dtype=dtype, device=device)


_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32, torch.bfloat16: torch.int16,
             torch.float16: torch.int16}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The bit patterns of t as integers (equal bits: NaN payloads, positions and signs of zero included)."""
    t = t.detach().contiguous()
    return t.view(_INT_VIEW[t.dtype]).clone() if t.dtype in _INT_VIEW else t.clone()


def assert_same_bits(after: torch.Tensor, before: torch.Tensor, what: str = ""):
    """`after` holds exactly the bits of `before` (e.g. an input that must not be modified)."""
    assert after.shape == before.shape and after.dtype == before.dtype, f"{what}: shape or dtype changed"
    same = bits(after).cpu() == bits(before).cpu()
    assert same.all(), f"{what}: {int((~same).sum())} elements changed, first at {torch.nonzero(~same)[0].tolist()}"


def non_contiguous(x: torch.Tensor) -> torch.Tensor:
    """A non-contiguous tensor with the values of x: every other element of a twice-as-long last dim."""
    if x.dim() == 0:
        return x
    big = torch.empty(*x.shape[:-1], x.shape[-1] * 2, dtype=x.dtype, device=x.device)
    big.fill_(float("nan"))
    view = big[..., ::2]
    view.copy_(x)
    assert not view.is_contiguous() or x.numel() <= 1
    return view


def assert_matches_reference(ours: torch.Tensor, ref64: torch.Tensor, dtype: torch.dtype, eager: torch.Tensor | None = None,
                             factor: float = 2.0, rel: float | None = None, atol=0.0, what: str = ""):
    """Compare `ours` (dtype) with the float64 reference `ref64`.

    NaN must sit where the reference has it, and infinities where the reference is infinite. Every other value of the
    reference (finite in float64, even where it overflows dtype): error <= max(factor * eager's own error on the same
    input, `rel` relative error + atol), atol being a number or a tensor shaped like the reference (e.g. the
    accumulation error allowed for a sum). An infinity of ours stands for any value past dtype's largest finite value
    on its side: it passes where [ref - allowed, ref + allowed] reaches there (a reference that overflows dtype, or an
    ill-conditioned result, e.g. a temperature gradient of terms that cancel). So does a finite value of ours within
    the allowed error of a reference that overflows dtype: the rounding to inf is not exact either (found by
    GLO_TEST_SEED=1712021591: float16 log_softmax backward, 65519.9 against a reference that rounds to inf).
    """
    assert ours.shape == ref64.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref64.shape)}"
    assert ours.dtype == dtype, f"{what}: dtype {ours.dtype} != {dtype}"
    o = ours.detach().double().cpu()
    r = ref64.detach().double().cpu()
    nan_o, nan_r = torch.isnan(o), torch.isnan(r)
    assert torch.equal(nan_o, nan_r), f"{what}: NaN at {torch.nonzero(nan_o != nan_r)[:5].tolist()} differs"
    inf_r = torch.isinf(r)
    assert torch.equal(o[inf_r], r[inf_r]), f"{what}: infinities differ"
    fin = ~nan_r & ~inf_r
    if not fin.any():
        return
    err = (o[fin] - r[fin]).abs()
    rel = rel if rel is not None else 2 * EPS[dtype]
    allowed = rel * r[fin].abs() + TINY[dtype]
    if isinstance(atol, torch.Tensor):
        allowed = allowed + atol.detach().double().cpu().expand_as(r)[fin]
    else:
        allowed = allowed + atol
    if eager is not None:
        e = eager.detach().double().cpu()[fin]
        eager_err = (e - r[fin]).abs()
        eager_err = torch.where(torch.isnan(eager_err), torch.zeros_like(eager_err), eager_err)
        allowed = torch.maximum(allowed, factor * eager_err.max().expand_as(allowed))
    bad = err > allowed
    if bad.any():  # +-inf where [ref - allowed, ref + allowed] reaches past the largest finite value on that side
        sign = torch.sign(o[fin])
        bad &= ~(torch.isinf(o[fin]) & (sign * r[fin] + allowed >= torch.finfo(dtype).max))
    if bad.any():
        i = torch.nonzero(bad)[0].item()
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {fin.sum().item()} values off; first: ours {o[fin][i].item()!r} vs "
            f"reference {r[fin][i].item()!r} (allowed error {allowed[i].item():.3g}, max error {err.max().item():.3g})"
        )


def with_torch_nan(ref64: torch.Tensor, ours: torch.Tensor, eager: torch.Tensor | None) -> torch.Tensor:
    """ref64 with NaN where it is infinite while ours and torch's own result in the working dtype are both NaN: a
    product 0 * inf formed in float32, where float64 keeps the factor that underflowed (a gated unit's gelu(-30) * inf
    is -0.0 * inf; torch's composite gives NaN as well, the convention the gated units follow and document)."""
    if eager is None:
        return ref64
    r = ref64.detach()
    o, e = ours.detach().to(r.device, r.dtype), eager.detach().to(r.device, r.dtype)
    return torch.where(torch.isinf(r) & torch.isnan(o) & torch.isnan(e), torch.full_like(r, float("nan")), r)
