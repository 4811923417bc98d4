"""Plain-PyTorch reference of every op: the ``reference`` backend and the ground truth of the tests.

Each function mirrors the functors of csrc/include/glo/activations.h. For the ReLU family PyTorch's own ops define
the conventions we copy (values and gradients at 0, -0.0 and NaN), so the reference is those ops.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from glo_kernels._layout import channel_view_shape, reduce_to_param
from glo_kernels._math import pelu_parts


def relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return F.relu(x, inplace=inplace)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    if inplace and negative_slope < 0 and torch.is_grad_enabled() and x.requires_grad:
        # torch's in-place backward reads the output's sign, wrong for negative slopes (it refuses them): keep x.
        return x.copy_(F.leaky_relu(x.clone(), negative_slope))
    return F.leaky_relu(x, negative_slope, inplace=inplace)


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return F.prelu(x, weight)


def _opmath(*ts):
    """16-bit tensors as float32 (the library computes 16-bit types in float32), others unchanged."""
    return [t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in ts]


class _ELU(torch.autograd.Function):
    """ELU in plain torch ops with glo_kernels' conventions. PyTorch's own CPU kernel is not consistent at NaN inputs
    (its vectorized loop gives a NaN gradient, its scalar tail passes the incoming gradient); ours always propagates
    NaN. Elsewhere this equals torch.nn.functional.elu, including the slope alpha taken at 0.

    16-bit inputs are computed in float32 and rounded once, as by the kernels (ELU<float> of activations.h). The
    backward's exp is taken of min(x, 0): the side torch.where does not select stays finite for large positive x, so
    that differentiating the backward (double backward) gives 0 * finite there, not 0 * inf = NaN."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        (xf,) = _opmath(x)
        return torch.where(xf < 0, torch.expm1(xf) * alpha, xf).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        (x,) = ctx.saved_tensors
        xf, gf = _opmath(x, grad_y)
        # (torch.where, not clamp: clamp's gradient is 0 at NaN, where ELU's second derivative is NaN)
        neg = gf * ctx.alpha * torch.exp(torch.where(xf > 0, torch.zeros_like(xf), xf))
        return torch.where(xf > 0, gf, neg).to(grad_y.dtype), None


def elu(x: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    if inplace:
        if torch.is_grad_enabled() and x.requires_grad:
            return x.copy_(_ELU.apply(x.clone(), alpha))
        with torch.no_grad():
            return x.copy_(_ELU.apply(x, alpha))
    return _ELU.apply(x, alpha)


def _is_dense(x: torch.Tensor) -> bool:
    """Whether x covers its memory without gaps or overlaps (any order of dims)."""
    expected = 1
    for stride, size in sorted((st, n) for st, n in zip(x.stride(), x.shape) if n != 1):
        if stride != expected:
            return False
        expected *= size
    return True


def _dense_op(fn, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """fn (torch.sigmoid / torch.tanh) on x's values in a dense layout, out of place or written back into x.
    PyTorch's vectorized and scalar loops of sigmoid differ by an ulp, and which one an element gets depends on the
    layout (a strided view runs the scalar loop): the values of a non-dense x are therefore computed on a contiguous
    copy, so that in place and out of place, on a view or on its contiguous clone, give the same bits. torch's own
    in-place op (x.sigmoid_()) runs on a dense x, whose out-of-place result has the same layout and loops."""
    dense = _is_dense(x)
    if not inplace:
        return fn(x if dense else x.contiguous())
    if dense:
        return getattr(x, fn.__name__ + "_")()
    return x.copy_(fn(x.contiguous()))


def sigmoid(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _dense_op(torch.sigmoid, x, inplace)


def tanh(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _dense_op(torch.tanh, x, inplace)


def _opmath_op(fn, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """fn(x) computed in opmath (16-bit inputs in float32, rounded once, as by the kernels), a non-dense x read
    through a contiguous copy (see _dense_op: PyTorch's vectorized and scalar loops may differ by an ulp). In place:
    computed, then written back (under autograd on a copy, which the backward reads: torch's own in-place forms of
    these ops save the input they overwrite, and their backward then fails)."""

    def out_of_place(v):
        (vf,) = _opmath(v)
        return fn(vf if _is_dense(vf) else vf.contiguous()).to(v.dtype)

    if not inplace:
        return out_of_place(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return x.copy_(out_of_place(x.clone()))
    return x.copy_(out_of_place(x))


def silu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """F.silu in opmath (_opmath_op: PyTorch's own float16 double backward of silu overflows, inf * 0, for large
    |x|)."""
    return _opmath_op(F.silu, x, inplace)


def _saved_input_function(name: str, forward, backward, doc: str) -> type:
    """A torch.autograd.Function that saves its input x: forward(x) -> y, backward(dy, x) -> dx (in torch ops, so that
    autograd differentiates it again for the double backward)."""

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return forward(x)

        @staticmethod
        def backward(ctx, grad_y):
            (x,) = ctx.saved_tensors
            return backward(grad_y, x)

    _Function.__name__ = _Function.__qualname__ = name
    _Function.__doc__ = doc
    return _Function


def _mish_grad(dy, x):
    t = torch.tanh(F.softplus(x))
    return dy * (t + x * torch.sigmoid(x) * (1 - t * t))


_Mish = _saved_input_function("_Mish", F.mish, _mish_grad, """F.mish's values; gradient dy * (t + x s (1 - t^2)),
    t = tanh(softplus(x)), s = sigmoid(x), in torch ops, so that its own derivative (the double backward) stays finite
    for large x, where torch's formula overflows (exp(x): NaN from x = 710 in float64).""")

_Hardsigmoid = _saved_input_function(
    "_Hardsigmoid", F.hardsigmoid,
    lambda dy, x: torch.where((x > -3) & (x < 3), dy * (1 / 6), torch.zeros_like(dy)),
    """F.hardsigmoid's values; gradient dy / 6 for -3 < x < 3, else 0 (torch's kinks), with 1/6 in the data's
    precision (torch multiplies by the float32 1/6 also for float64: 3e-8 relative off).""")

_Hardswish = _saved_input_function(
    "_Hardswish", F.hardswish,
    lambda dy, x: torch.where(x <= -3, torch.zeros_like(dy), torch.where(x >= 3, dy, dy * (x / 3 + 0.5))),
    """F.hardswish's values; gradient 0 for x <= -3, dy for x >= 3, dy * (x / 3 + 1/2) between (torch's kinks), NaN
    propagating (torch's vectorized loop: its scalar tail passes dy at NaN).""")


def mish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _opmath_op(_Mish.apply, x, inplace)


def hardsigmoid(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _opmath_op(_Hardsigmoid.apply, x, inplace)


def hardswish(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    return _opmath_op(_Hardswish.apply, x, inplace)


def softplus(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """F.softplus in opmath (16-bit inputs in float32, rounded once), a non-dense x through a contiguous copy."""
    (xf,) = _opmath(x)
    return F.softplus(xf if _is_dense(xf) else xf.contiguous(), beta, threshold).to(x.dtype)


# ---- GELU: computed in float64 (every dtype: float32 and 16-bit inputs rounded once), so that the tests' truth is
# accurate where torch's own forms cancel (1 + erf(x / sqrt 2) and 1 + tanh(u) for x < 0) ----
_SQRT_HALF, _SQRT_HALF_LO = 0.70710678118654752, -4.833646656726457e-17
_INV_SQRT_2PI = 0.3989422804014327
# z = k1 x + k3 x^3 of the tanh form (2 sqrt(2/pi), times 0.044715), each as hi + lo in float64
_K1, _K1_LO = 1.5957691216057308, -9.96930880911092e-17
_K3, _K3_LO = 0.07135481627260025, -6.175149918155315e-19
_LN2_512, _LN2_512_LO = 354.891356446692, 1.1873519686893054e-14  # 512 ln 2 as hi + lo


def _float64_op(fn, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """fn(x) in float64, rounded once to x's dtype (in place: written back, under autograd from a copy)."""
    def out_of_place(v):
        return fn(v.double()).to(v.dtype)

    if not inplace:
        return out_of_place(x)
    if torch.is_grad_enabled() and x.requires_grad:
        return x.copy_(out_of_place(x.clone()))
    return x.copy_(out_of_place(x))


def _gelu_erfc_exp(x):
    """(erfc(-x / sqrt 2), exp(-x^2 / 2)) with the rounding of their arguments corrected (detail::gelu_erfc_exp_f64:
    erfc(a + d) = erfc(a) - d (2 / sqrt pi) exp(-a^2), d the rounding of a = -x / sqrt 2)."""
    inside = x.abs() < 40  # beyond, erfc(a) is 0 or 2 and e 0 (also for +-inf, NaN)
    xt = torch.where(inside, x, 0.0)
    at, d = _two_prod(-xt, _SQRT_HALF)
    d = d + (-xt) * _SQRT_HALF_LO
    s, s_lo = _two_prod(xt, xt)
    ex = torch.exp(-0.5 * s)
    e = torch.where(inside, ex - ex * (0.5 * s_lo), 0.0)
    return torch.special.erfc(-x * _SQRT_HALF) - d * 1.1283791670955126 * e, e


def _gelu_erf_value(x):
    return 0.5 * x * _gelu_erfc_exp(x)[0]


def _gelu_erf_grad(dy, x):
    c, e = _gelu_erfc_exp(x)
    d = 0.5 * c + x * _INV_SQRT_2PI * e
    return dy * torch.where(d == 0, x * 0, d)  # (an underflowed derivative keeps its sign, -0.0)


_GELU = _saved_input_function(
    "_GELU", _gelu_erf_value, _gelu_erf_grad,
    """GELU, erf form, as GELU<double> of activations.h: x / 2 * erfc(-x / sqrt 2) (torch's 1 + erf(x / sqrt 2)
    cancels for x < 0); gradient erfc(-x / sqrt 2) / 2 + x phi(x); the arguments' roundings corrected.""")


def _two_prod(a: torch.Tensor, b) -> tuple[torch.Tensor, torch.Tensor]:
    """(p, e) with p = fl(a * b) and p + e = a * b exactly (float64; Dekker's product of Veltkamp's halves)."""
    def split(v):
        c = v * 134217729.0
        hi = c - (c - v)
        return hi, v - hi

    p = a * b
    ah, al = split(a)
    bh, bl = split(b if isinstance(b, torch.Tensor) else torch.full_like(a, b))
    return p, (((ah * bh - p) + ah * bl) + al * bh) + al * bl


def _gelu_tanh_parts(x: torch.Tensor):
    """(s, sn, zp, sc) = (sigmoid(z) / sc, sigmoid(-z), z', 1 or 2^-512), z = k1 x + k3 x^3 to twice float64's
    precision (GELUTanh<double>: sigmoid(z) for z < 0 is about exp(z), whose relative error is z's absolute error),
    x clamped to +-24."""
    xc = x.clamp(-24.0, 24.0)
    a, a_lo = _two_prod(xc, _K1)
    a_lo = a_lo + _K1_LO * xc
    x2, x2_lo = _two_prod(xc, xc)
    x3, x3_lo = _two_prod(x2, xc)
    x3_lo = x3_lo + x2_lo * xc
    b, b_lo = _two_prod(x3, _K3)
    b_lo = b_lo + (_K3_LO * x3 + _K3 * x3_lo)
    hi = a + b
    bb = hi - a
    lo = (a_lo + b_lo) + ((a - (hi - bb)) + (b - bb))
    neg = hi < 0
    m, ml = torch.where(neg, hi, -hi), torch.where(neg, lo, -lo)
    # below m = -640, exp(m) = exp(m + 512 ln 2) 2^-512: no subnormal exp enters the products (GeluConsts<double>)
    tiny = neg & (m < -640.0)
    t = m + _LN2_512
    m, ml = torch.where(tiny, t, m), torch.where(tiny, ((m - t) + _LN2_512) + (ml + _LN2_512_LO), ml)
    e = torch.exp(m)
    e = torch.where(x < -24.0, 0.0, e + e * ml)  # (sigmoid(z) is 0 there, also scaled)
    d = 1 + torch.where(tiny, 0.0, e)
    r, er = 1 / d, e / d
    sc = torch.where(tiny, 2.0**-512, 1.0)
    return torch.where(neg, er, r), torch.where(neg, r, er), 3 * _K3 * (xc * xc) + _K1, sc


def _gelu_tanh_grad(dy, x):
    s, sn, zp, sc = _gelu_tanh_parts(x)
    d = s + x * (s * sn * zp)
    return (dy * torch.where(s == 0, x * 0, d)) * sc  # (an underflowed derivative keeps its sign, -0.0)


def _gelu_tanh_value(x):
    s, _, _, sc = _gelu_tanh_parts(x)
    return (x * s) * sc


_GELUTanh = _saved_input_function(
    "_GELUTanh", _gelu_tanh_value, _gelu_tanh_grad,
    """GELU, tanh form, as GELUTanh<double>: x sigmoid(z), z = 2 sqrt(2/pi) (x + 0.044715 x^3) carried as hi + lo
    (torch's 1 + tanh(z / 2) cancels for x < 0); gradient s + x s (1 - s) z'.""")


def gelu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """F.gelu(x) (approximate="none"), accurate for x < 0 (computed in float64)."""
    return _float64_op(_GELU.apply, x, inplace)


def gelu_tanh(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """F.gelu(x, approximate="tanh"), accurate for x < 0 (computed in float64)."""
    return _float64_op(_GELUTanh.apply, x, inplace)


def _gated(act, x: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """act(a) * b in float64, rounded once to x's dtype; a, b = x.chunk(2, -1) unless b is given (glo::Gated)."""
    a, b = x.chunk(2, dim=-1) if b is None else (x, b)
    return (act(a.double()) * b.double()).to(x.dtype)


def _sigmoid_pair(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmoid(a), sigmoid(-a)) from e = exp(-|a|): e / (1 + e) and 1 / (1 + e), neither by subtraction, so both keep
    their value down to the subnormals (torch's float64 sigmoid is 1 / (1 + exp(-a)): 0 below a = -709.8)."""
    e = torch.exp(-a.abs())
    r = 1 / (1 + e)
    neg = a < 0
    return torch.where(neg, e * r, r), torch.where(neg, r, e * r)


_SiLUFloat64 = _saved_input_function(
    "_SiLUFloat64", lambda a: a * _sigmoid_pair(a)[0],
    lambda dy, a: (lambda s, sn: dy * s * (1 + a * sn))(*_sigmoid_pair(a)),
    """a * sigmoid(a) (SiLU) that keeps its value down to the subnormals (_sigmoid_pair; F.silu's a / (1 + exp(-a))
    is -0.0 below a = -709.8, and a gated unit multiplies that by b, up to 1.8e308). Gradient dy s (1 + a sigmoid(-a)),
    s = sigmoid(a), in one product as torch's silu_backward (autograd through the forward's branches would add inf
    and -inf where dy is infinite), in torch ops so that autograd differentiates it again.""")


def _silu_float64(a: torch.Tensor) -> torch.Tensor:
    return _SiLUFloat64.apply(a)


def swiglu(x: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return _gated(_silu_float64, x, b)


def geglu(x: torch.Tensor, b: torch.Tensor | None = None, approximate: str = "none") -> torch.Tensor:
    if isinstance(b, str):
        b, approximate = None, b
    return _gated(gelu_tanh if approximate == "tanh" else gelu, x, b)


def geglu_tanh(x: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return _gated(gelu_tanh, x, b)


def reglu(x: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    return _gated(torch.relu, x, b)


def _bias_act(act, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """act(u) in float64, rounded once to x's dtype, with u = x + bias rounded to opmath (float32 for 16-bit and
    float32 data) as the kernels form it (glo::BiasAct; torch's composite rounds it to the storage dtype even); the
    bias over the last dim. The rounding of u passes the gradient straight through (float64)."""
    u = x.double() + bias.double()
    if x.dtype != torch.float64:
        rounded = u.float().double()
        u = torch.where(torch.isfinite(u), u + (rounded - u).detach(), u)
    return act(u).to(x.dtype)


def bias_gelu(x: torch.Tensor, bias: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    return _bias_act(gelu_tanh if approximate == "tanh" else gelu, x, bias)


def bias_gelu_tanh(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _bias_act(gelu_tanh, x, bias)


def bias_silu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return _bias_act(silu, x, bias)


class _PELU(torch.autograd.Function):
    """PELU in plain torch ops, mirroring the functor: only the selected side of each element enters the gradient.
    16-bit inputs are computed in float32, as by the kernels."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(x, a, b)
        xf, af, bf = _opmath(x, a, b)
        shape = channel_view_shape(x, a)
        a_, b_ = af.reshape(shape), bf.reshape(shape)
        return torch.where(xf >= 0, (a_ / b_) * xf, a_ * torch.expm1(xf / b_)).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_y):
        x0, a0, b0 = ctx.saved_tensors
        x, a, b, grad_y = _opmath(x0, a0, b0, grad_y)
        _, _, pos, u, e, r = pelu_parts(x, a, b)
        dx = r * e * grad_y
        da = reduce_to_param(torch.where(pos, u, torch.expm1(torch.where(pos, torch.zeros_like(x), u))) * grad_y, a)
        db = reduce_to_param(-(r * u) * e * grad_y, b)
        return dx.to(x0.dtype), da.to(a0.dtype), db.to(b0.dtype)


def pelu(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _PELU.apply(x, a, b)


def pelu_composite(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The eager composite the benchmarks compare with: torch.where(x >= 0, (a/b)*x, a*torch.expm1(x/b))."""
    shape = channel_view_shape(x, a)
    a_, b_ = a.reshape(shape), b.reshape(shape)
    return torch.where(x >= 0, (a_ / b_) * x, a_ * torch.expm1(x / b_))


def maxout(x: torch.Tensor, pieces: int, dim: int = 1) -> torch.Tensor:
    """view + max: the gradient goes to the first maximal element (first NaN) of each group, as torch.max's."""
    dim = dim % x.dim()
    return x.unflatten(dim, (x.shape[dim] // pieces, pieces)).max(dim=dim + 1).values


def maxout_amax(x: torch.Tensor, pieces: int, dim: int = 1) -> torch.Tensor:
    """view + amax, the eager baseline of the benchmarks (amax splits the gradient between ties)."""
    dim = dim % x.dim()
    return x.unflatten(dim, (x.shape[dim] // pieces, pieces)).amax(dim=dim + 1)


# ---- softmax family (docs/softmax_contract.md): 16-bit inputs computed in float32 and rounded once ----
def _shift(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x minus the max of each row along dim (a constant: detached; 0 where the max is not finite), so that the
    temperature divides x - max, as the kernels do, not x: the same softmax and the same gradients (shift invariance),
    without x / T's rounding of eps * |x / T| (0.6 absolute for float32 x = 1e4, T = 1e-3) or its overflow."""
    if x.numel() == 0:
        return x
    m = x.detach().amax(dim, keepdim=True)
    return x - torch.where(torch.isfinite(m), m, torch.zeros_like(m))


def _softmax_like(fn, x: torch.Tensor, dim: int, temperature) -> torch.Tensor:
    (xf,) = _opmath(x)
    t = temperature
    if isinstance(t, torch.Tensor):
        t = t.to(dtype=xf.dtype, device=xf.device).reshape(())
    if x.dim() == 0:  # as torch.softmax: a 0-d input is one row of one element
        return fn(_shift(xf.reshape(1), 0) / t, 0).reshape(()).to(x.dtype)
    return fn(_shift(xf, dim) / t, dim).to(x.dtype)


def softmax(x: torch.Tensor, dim: int = -1, temperature=1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """softmax(x / T) along dim (T a number or a 0-d tensor), of x.to(dtype) when dtype is given (the cast's backward
    returns the gradient in x's dtype)."""
    return _softmax_like(torch.softmax, x if dtype is None else x.to(dtype), dim, temperature)


def log_softmax(x: torch.Tensor, dim: int = -1, temperature=1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """log_softmax(x / T) along dim, of x.to(dtype) when dtype is given."""
    return _softmax_like(torch.log_softmax, x if dtype is None else x.to(dtype), dim, temperature)


def grouped_softmax(x: torch.Tensor, group_sizes, dim: int = -1, temperature=1.0) -> torch.Tensor:
    """One softmax(x / T) per consecutive group of ``group_sizes`` elements along dim."""
    if x.dim() == 0:
        return softmax(x, dim, temperature)
    parts = x.split(list(group_sizes), dim)
    return torch.cat([softmax(p, dim, temperature) for p in parts], dim)


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                      reduction: str = "batchmean", *, p_min: float = 0.0) -> torch.Tensor:
    """Hinton's distillation loss: KL(softmax(t / T) || softmax(s / T)) * T**2 over the last dim, reduced as F.kl_div
    (``F.kl_div(log_softmax(s / T), softmax(t / T), reduction) * T**2``), with the convention of
    docs/softmax_contract.md where a teacher probability p_j is exactly 0: that term and its gradients are 0 (F.kl_div
    gives NaN there in two cases: the value where log q_j = -inf, and the teacher's gradient of the whole row, from
    xlogy's derivative log 0 + 1), except in a student row holding NaN or +inf, where every term is NaN.

    ``p_min``: probabilities at or below it count as 0 (a float64 reference of float32 kernels passes float32's
    smallest subnormal: below it p_j is 0 in float32, where a q_j = 0 would otherwise make the float64 loss +inf)."""
    s, t = _opmath(student, teacher)
    T = temperature
    ls = torch.log_softmax(_shift(s, -1) / T, -1)
    lt = torch.log_softmax(_shift(t, -1) / T, -1)
    p = lt.exp()
    zero = (p <= p_min) & ~torch.isnan(ls)
    kept = torch.zeros_like(p)
    terms = torch.where(zero, kept, p * (torch.where(zero, kept, lt) - torch.where(zero, kept, ls)))
    if reduction == "none":
        loss = terms
    else:
        loss = terms.sum()
        if reduction == "mean":
            loss = loss / student.numel()
        elif reduction == "batchmean":
            loss = loss / student.shape[0]
    return (loss * T**2).to(student.dtype)


def softmax_eager(x: torch.Tensor, dim: int = -1, temperature=1.0) -> torch.Tensor:
    """What the benchmarks time as eager: torch.softmax(x / T, dim) in x's dtype."""
    return torch.softmax(x / temperature, dim)


def log_softmax_eager(x: torch.Tensor, dim: int = -1, temperature=1.0) -> torch.Tensor:
    return torch.log_softmax(x / temperature, dim)


def grouped_softmax_eager(x: torch.Tensor, group_sizes, dim: int = -1, temperature=1.0) -> torch.Tensor:
    z = x / temperature
    return torch.cat([torch.softmax(p, dim) for p in z.split(list(group_sizes), dim)], dim)


def distillation_loss_eager(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                            reduction: str = "batchmean") -> torch.Tensor:
    """The F.kl_div composite, in the inputs' dtype ("mean" written as sum / numel, F.kl_div's own value)."""
    kind = "sum" if reduction == "mean" else reduction
    loss = F.kl_div(F.log_softmax(student / temperature, -1), F.softmax(teacher / temperature, -1), reduction=kind)
    if reduction == "mean":
        loss = loss / student.numel()
    return loss * temperature**2
