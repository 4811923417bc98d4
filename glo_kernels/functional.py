"""The functional API: argument checks, backend choice, autograd wiring. Re-exported by ``glo_kernels``."""
from __future__ import annotations

import inspect
import math
import numbers

import torch

from glo_kernels import backends, reference
from glo_kernels.backends import op_namespace
from glo_kernels.ops.bias import BIAS, BIAS_BY_NAME
from glo_kernels.ops.gated import GATED, GATED_BY_NAME
from glo_kernels.ops.unary import UNARY, UNARY_BY_NAME
from glo_kernels._layout import dense_format

_FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def _check_x(x, op: str, arg: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"glo_kernels.{op}: argument '{arg}' must be a float64, float32, bfloat16 or float16 tensor, got {x.dtype}"
        )


def _check_number(v, op: str, arg: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a real number, got {type(v).__name__}")
    return float(v)


def _check_channel_param(x: torch.Tensor, w, op: str, arg: str) -> None:
    """A learned parameter with 1 element or one per channel (x.size(1)), as torch.nn.functional.prelu."""
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' must be a torch.Tensor, got {type(w).__name__}")
    if w.dtype != x.dtype:
        raise TypeError(f"glo_kernels.{op}: argument '{arg}' has dtype {w.dtype} but 'x' has dtype {x.dtype}")
    if w.device != x.device:
        raise ValueError(
            f"glo_kernels.{op}: argument '{arg}' is on {w.device} but 'x' is on {x.device}; they must be on the "
            "same device"
        )
    if w.dim() > 1:
        raise ValueError(f"glo_kernels.{op}: argument '{arg}' must be a scalar or a 1-D tensor, got shape {tuple(w.shape)}")
    if w.numel() != 1:
        channels = x.shape[1] if x.dim() >= 2 else 1
        if x.dim() == 0 or w.numel() != channels:
            raise ValueError(
                f"glo_kernels.{op}: argument '{arg}' has {w.numel()} elements; it must have 1 or as many as the "
                f"channels of 'x' (size of dim 1 = {channels}, input shape {tuple(x.shape)})"
            )


def _needs_grad(*tensors: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _check_inplace(x: torch.Tensor, op: str) -> None:
    """Refuse, before any kernel runs, what autograd would refuse after it: an in-place op on a leaf that requires grad
    (or a view of one). Raising first keeps x unchanged."""
    if not (torch.is_grad_enabled() and x.requires_grad):
        return
    if x.is_leaf:
        raise RuntimeError(f"glo_kernels.{op}: argument 'x' is a leaf Variable that requires grad; a leaf Variable that "
                           "requires grad is being used in an in-place operation")
    if not torch.compiler.is_compiling():
        base = x._base
        if base is not None and base.is_leaf and base.requires_grad:
            raise RuntimeError(f"glo_kernels.{op}: argument 'x' is a view of a leaf Variable that requires grad is "
                               "being used in an in-place operation")


class _MaskInplace(torch.autograd.Function):
    """In-place ReLU / Leaky ReLU under autograd: the mutated input is marked dirty; only the 1-bit mask is saved, so
    any slope (negative too) has a right backward."""

    @staticmethod
    def forward(ctx, x, backend, name, args):
        ctx.format = dense_format(x)  # the mask's bit order (glo_kernels/_layout.py dense_format)
        mask = getattr(op_namespace(backend), name + "_")(x, *args, True)
        ctx.mark_dirty(x)
        ctx.save_for_backward(mask)
        ctx.backend, ctx.name, ctx.args = backend, name, args
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (mask,) = ctx.saved_tensors
        grad_y = grad_y.contiguous(memory_format=ctx.format)
        return getattr(op_namespace(ctx.backend), ctx.name + "_backward")(grad_y, mask, *ctx.args), None, None, None


class _ELUInplace(torch.autograd.Function):
    """In-place ELU under autograd: the backward reads the output (the input is overwritten), as PyTorch does."""

    @staticmethod
    def forward(ctx, x, alpha, backend):
        op_namespace(backend).elu_(x, alpha)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        ctx.backend = backend
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return op_namespace(ctx.backend).elu_backward(grad_y, y, ctx.alpha, True), None, None


def _mask_op(name: str, x: torch.Tensor, args: tuple, inplace: bool) -> torch.Tensor:
    """ReLU / Leaky ReLU (args: the slope) on the chosen backend; a 1-bit mask is saved when autograd records."""
    if inplace:
        _check_inplace(x, name)
    backend = backends.backend_for(x.device, name)
    if backend == "reference":
        return getattr(reference, name)(x, *args, inplace=inplace)
    ns = op_namespace(backend)
    if inplace:
        if _needs_grad(x):
            return _MaskInplace.apply(x, backend, name, args)
        getattr(ns, name + "_")(x, *args, False)
        return x
    return getattr(ns, name)(x, *args, _needs_grad(x))[0]


def relu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """ReLU, ``max(x, 0)``, as ``torch.nn.functional.relu`` (NaN propagates, gradient 0 at 0).

    Forward and backward are one fused pass each; for backward only a packed 1-bit mask is saved (1/32 of a float32
    input), not the input or output. ``inplace=True`` overwrites and returns ``x`` (autograd stays right).
    Any shape and strides; float64, float32, bfloat16, float16 (16-bit computed in float32).
    """
    _check_x(x, "relu")
    return _mask_op("relu", x, (), inplace)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.01, inplace: bool = False) -> torch.Tensor:
    """Leaky ReLU, ``x if x > 0 else negative_slope * x``, as ``torch.nn.functional.leaky_relu``.

    Saves a 1-bit mask for backward. In place, unlike PyTorch, any slope (negative too) has a right backward.
    """
    _check_x(x, "leaky_relu")
    negative_slope = _check_number(negative_slope, "leaky_relu", "negative_slope")
    return _mask_op("leaky_relu", x, (negative_slope,), inplace)


def prelu(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """PReLU, ``x if x > 0 else weight[c] * x``, as ``torch.nn.functional.prelu``.

    ``weight`` has 1 element or one per channel (C = ``x.size(1)``; 1-D inputs have one channel). Backward computes
    the input gradient and the weight gradient in one pass over x and the upstream gradient, with a deterministic
    per-channel reduction.
    """
    _check_x(x, "prelu")
    _check_channel_param(x, weight, "prelu", "weight")
    backend = backends.backend_for(x.device, "prelu")
    if backend == "reference":
        return reference.prelu(x, weight)
    return op_namespace(backend).prelu(x, weight)


def elu(x: torch.Tensor, alpha: float = 1.0, inplace: bool = False) -> torch.Tensor:
    """ELU, ``x if x > 0 else alpha * (exp(x) - 1)``, as ``torch.nn.functional.elu``.

    One kernel forward, one backward. Out of place the backward reads the saved input; in place it reads the output
    (no copy of the input is kept), which needs ``alpha >= 0`` when autograd records the call, as in PyTorch.
    """
    _check_x(x, "elu")
    alpha = _check_number(alpha, "elu", "alpha")
    if inplace:
        _check_inplace(x, "elu")
        if _needs_grad(x) and alpha < 0:  # the same rule on every backend
            raise ValueError(
                f"glo_kernels.elu: argument 'alpha' is {alpha}; an in-place ELU that autograd records needs "
                "alpha >= 0 (its backward reads the output); call it with inplace=False"
            )
    backend = backends.backend_for(x.device, "elu")
    if backend == "reference":
        return reference.elu(x, alpha, inplace=inplace)
    ns = op_namespace(backend)
    if inplace:
        if _needs_grad(x):
            return _ELUInplace.apply(x, alpha, backend)
        ns.elu_(x, alpha)
        return x
    return ns.elu(x, alpha)


def softplus(x: torch.Tensor, beta: float = 1.0, threshold: float = 20.0) -> torch.Tensor:
    """Softplus, ``log(1 + exp(beta * x)) / beta``, as ``torch.nn.functional.softplus``: ``x`` itself where
    ``x * beta > threshold`` (torch's rule: the same product and comparison); the backward reads the saved input.

    One fused pass each way, computed as ``(max(u, 0) + log1p(exp(-|u|))) / beta`` with ``u = x * beta`` (stable for
    any x; tiny results keep their precision); ``dx = dy * sigmoid(u)``, or ``dy`` past the threshold. Conventions are
    torch's: NaN propagates, ``softplus(-inf)`` is 0 and ``softplus(+inf)`` is +inf.
    """
    _check_x(x, "softplus")
    beta = _check_number(beta, "softplus", "beta")
    threshold = _check_number(threshold, "softplus", "threshold")
    backend = backends.backend_for(x.device, "softplus")
    if backend == "reference":
        return reference.softplus(x, beta, threshold)
    return op_namespace(backend).softplus(x, beta, threshold)


class _SavedOutputInplace(torch.autograd.Function):
    """In-place op of the unary family whose backward reads its output, under autograd: x is overwritten with the
    output, which is all the backward reads (saved after the write, so autograd's version check catches a later
    in-place change of it)."""

    @staticmethod
    def forward(ctx, x, backend, name):
        getattr(op_namespace(backend), name + "_")(x)
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        ctx.backend, ctx.name = backend, name
        return x

    @staticmethod
    def backward(ctx, grad_y):
        (y,) = ctx.saved_tensors
        return getattr(op_namespace(ctx.backend), ctx.name + "_backward")(grad_y, y), None, None


def _unary(spec, x: torch.Tensor, inplace: bool) -> torch.Tensor:
    """An op of the unary family (glo_kernels/ops/unary.py): its backward reads its saved output or input."""
    name = spec.name
    _check_x(x, name)
    if inplace:
        _check_inplace(x, name)
    backend = backends.backend_for(x.device, name)
    if backend == "reference":
        return getattr(reference, name)(x, inplace=inplace)
    ns = op_namespace(backend)
    if inplace:
        if _needs_grad(x):
            if spec.saved == "y":
                return _SavedOutputInplace.apply(x, backend, name)
            # the backward reads the input, which the write destroys: the op runs on a copy, written back (as
            # PyTorch's in-place ops whose derivative needs the input)
            return x.copy_(getattr(ns, name)(x.clone()))
        getattr(ns, name + "_")(x)
        return x
    return getattr(ns, name)(x)


def _make_unary(spec):
    if spec.choice is None:
        def op(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
            return _unary(spec, x, inplace)
    else:  # the twin's string argument picks the kernel (UnarySpec.choice), checked as the twin checks it
        arg, default, values = spec.choice
        by_value = {value: UNARY_BY_NAME[name] for value, name in values}
        allowed = " or ".join(repr(v) for v in by_value)

        def op(x: torch.Tensor, *args, inplace: bool = False, **kwargs) -> torch.Tensor:
            if len(args) > 1 or (args and arg in kwargs) or set(kwargs) - {arg}:
                raise TypeError(f"glo_kernels.{spec.name}() takes (x, {arg}={default!r}, *, inplace=False); got "
                                f"{len(args) + 1} positional and keyword arguments {sorted(kwargs)}")
            value = args[0] if args else kwargs.get(arg, default)
            chosen = by_value.get(value) if isinstance(value, str) else None
            if chosen is None:
                raise ValueError(f"glo_kernels.{spec.name}: argument '{arg}' must be {allowed}, got {value!r}")
            return _unary(chosen, x, inplace)

        op.__signature__ = inspect.Signature([
            inspect.Parameter("x", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor),
            inspect.Parameter(arg, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=default, annotation=str),
            inspect.Parameter("inplace", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)],
            return_annotation=torch.Tensor)

    op.__name__ = op.__qualname__ = spec.name
    op.__doc__ = spec.doc
    op.__module__ = __name__
    return op


# glo_kernels.<name>(x, inplace=False) of every op of the unary family.
UNARY_FUNCTIONS = {spec.name: _make_unary(spec) for spec in UNARY}
globals().update(UNARY_FUNCTIONS)


def _gated(spec, x: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """An op of the gated family (glo_kernels/ops/gated.py): act(a) * b, a and b the halves of x's last dim or given
    apart (x as a)."""
    name = spec.name
    _check_x(x, name)
    if b is None:
        if x.dim() == 0:
            raise ValueError(f"glo_kernels.{name}: argument 'x' must have at least one dimension (its last dim holds "
                             "the gate and the value side by side), got a 0-d tensor")
        if x.shape[-1] % 2 != 0:
            raise ValueError(f"glo_kernels.{name}: argument 'x' must have an even last dim (the gate is its first "
                             f"half, the value its second), got shape {tuple(x.shape)}")
        backend = backends.backend_for(x.device, name)
        if backend == "reference":
            return getattr(reference, name)(x)
        return getattr(op_namespace(backend), name)(x)
    _check_x(b, name, "b")
    if b.shape != x.shape or b.dtype != x.dtype:
        raise ValueError(f"glo_kernels.{name}: argument 'b' ({b.dtype}, shape {tuple(b.shape)}) must have the shape "
                         f"and dtype of the gate 'x' ({x.dtype}, shape {tuple(x.shape)})")
    if b.device != x.device:
        raise ValueError(f"glo_kernels.{name}: argument 'b' is on {b.device} but 'x' is on {x.device}; they must be "
                         "on the same device")
    backend = backends.backend_for(x.device, name)
    if backend == "reference":
        return getattr(reference, name)(x, b)
    return getattr(op_namespace(backend), name + "_pair")(x, b)


def _chooser(spec, by_name: dict):
    """(default, choose) of an op whose string argument picks its kernel (GatedSpec / BiasSpec .choice): choose(value)
    is the spec of that value, or raises naming the argument."""
    arg, default, values = spec.choice
    by_value = {value: by_name[name] for value, name in values}
    allowed = " or ".join(repr(v) for v in by_value)

    def choose(value):
        chosen = by_value.get(value) if isinstance(value, str) else None
        if chosen is None:
            raise ValueError(f"glo_kernels.{spec.name}: argument '{arg}' must be {allowed}, got {value!r}")
        return chosen

    return default, choose


def _named(op, spec):
    op.__name__ = op.__qualname__ = spec.name
    op.__doc__ = spec.doc
    op.__module__ = __name__
    return op


def _make_gated(spec):
    if spec.choice is None:
        def op(x: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
            return _gated(spec, x, b)
    else:  # (the string argument may come second when b is not given: geglu(x, "tanh"))
        default, choose = _chooser(spec, GATED_BY_NAME)

        def op(x: torch.Tensor, b: torch.Tensor | str | None = None, approximate: str = default) -> torch.Tensor:
            if isinstance(b, str):
                b, approximate = None, b
            return _gated(choose(approximate), x, b)

    return _named(op, spec)


# glo_kernels.<name>(x, b=None) of every op of the gated family.
GATED_FUNCTIONS = {spec.name: _make_gated(spec) for spec in GATED}
globals().update(GATED_FUNCTIONS)


def _bias_act(spec, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """An op of the bias family (glo_kernels/ops/bias.py): act(x + bias), the bias over x's last dim."""
    name = spec.name
    _check_x(x, name)
    _check_x(bias, name, "bias")
    if bias.dtype != x.dtype:
        raise TypeError(f"glo_kernels.{name}: argument 'bias' has dtype {bias.dtype} but 'x' has dtype {x.dtype}")
    if bias.device != x.device:
        raise ValueError(f"glo_kernels.{name}: argument 'bias' is on {bias.device} but 'x' is on {x.device}; they "
                         "must be on the same device")
    if x.dim() == 0:
        raise ValueError(f"glo_kernels.{name}: argument 'x' must have at least one dimension (the bias runs over its "
                         "last dim), got a 0-d tensor")
    if bias.dim() != 1 or bias.shape[0] != x.shape[-1]:
        raise ValueError(f"glo_kernels.{name}: argument 'bias' must be a 1-D tensor of the size of x's last dim "
                         f"({x.shape[-1]}), got shape {tuple(bias.shape)}")
    backend = backends.backend_for(x.device, name)
    if backend == "reference":
        return getattr(reference, name)(x, bias)
    return getattr(op_namespace(backend), name)(x, bias)


def _make_bias(spec):
    if spec.choice is None:
        def op(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            return _bias_act(spec, x, bias)
    else:
        default, choose = _chooser(spec, BIAS_BY_NAME)

        def op(x: torch.Tensor, bias: torch.Tensor, approximate: str = default) -> torch.Tensor:
            return _bias_act(choose(approximate), x, bias)

    return _named(op, spec)


# glo_kernels.<name>(x, bias) of every op of the bias family.
BIAS_FUNCTIONS = {spec.name: _make_bias(spec) for spec in BIAS}
globals().update(BIAS_FUNCTIONS)


def pelu(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PELU (Trottier et al. 2017): ``(a/b) * x`` for x >= 0, ``a * (exp(x/b) - 1)`` otherwise, with a, b > 0.

    ``a`` and ``b`` have 1 element or one per channel (C = ``x.size(1)``), the same number each. Forward is one
    kernel; backward is one pass over x and the upstream gradient giving dx, da and db (per-tile partial sums, then a
    small deterministic reduction). Values of a and b are not checked (that would synchronize a GPU): keep them
    positive, as :class:`glo_kernels.nn.PELU` does.
    """
    _check_x(x, "pelu")
    _check_channel_param(x, a, "pelu", "a")
    _check_channel_param(x, b, "pelu", "b")
    if a.numel() != b.numel():
        raise ValueError(f"glo_kernels.pelu: argument 'b' has {b.numel()} elements but 'a' has {a.numel()}; they must match")
    backend = backends.backend_for(x.device, "pelu")
    if backend == "reference":
        return reference.pelu(x, a, b)
    return op_namespace(backend).pelu(x, a, b)


def maxout(x: torch.Tensor, pieces: int, dim: int = 1) -> torch.Tensor:
    """Maxout (Goodfellow et al. 2013): the max over each group of ``pieces`` consecutive entries along ``dim``.

    The size C of ``dim`` must be a multiple of ``pieces`` (1 to 256); the output has C / pieces there. The gradient
    goes to the first maximal element of each group (to the first NaN if the group has one, as ``torch.max``). Only a
    1-byte index per output is saved for backward. Over the channels (``dim=1``) of a channels_last input the output
    keeps that format (no copy); other dims are read through a contiguous copy.
    """
    _check_x(x, "maxout")
    if isinstance(pieces, bool) or not isinstance(pieces, int):
        raise TypeError(f"glo_kernels.maxout: argument 'pieces' must be an int, got {type(pieces).__name__}")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"glo_kernels.maxout: argument 'dim' must be an int, got {type(dim).__name__}")
    if x.dim() == 0:
        raise ValueError("glo_kernels.maxout: argument 'x' must have at least one dimension")
    if not -x.dim() <= dim < x.dim():
        raise ValueError(f"glo_kernels.maxout: argument 'dim' ({dim}) is out of range for a {x.dim()}-d tensor")
    dim = dim % x.dim()
    if not 1 <= pieces <= 256:
        raise ValueError(f"glo_kernels.maxout: argument 'pieces' must be in [1, 256], got {pieces}")
    if x.shape[dim] % pieces != 0:
        raise ValueError(
            f"glo_kernels.maxout: argument 'pieces' ({pieces}) must divide the size of dim {dim} ({x.shape[dim]})"
        )
    backend = backends.backend_for(x.device, "maxout")
    if backend == "reference":
        return reference.maxout(x, pieces, dim)
    return op_namespace(backend).maxout(x, pieces, dim, _needs_grad(x))[0]


# ---------------------------------------------------------------------------------------------------------------
# Softmax family (docs/softmax_contract.md)
# ---------------------------------------------------------------------------------------------------------------
def _check_temperature(temperature, op: str, device: torch.device | None = None):
    """(float value, tensor or None): a positive finite number, or a one-element floating tensor (learned) on
    `device` or the CPU."""
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1 or not temperature.is_floating_point():
            raise ValueError(
                f"glo_kernels.{op}: argument 'temperature' must be a number or a floating-point tensor of one "
                f"element, got a {temperature.dtype} tensor of shape {tuple(temperature.shape)}"
            )
        if device is not None and temperature.device != device and temperature.device.type != "cpu":
            raise ValueError(
                f"glo_kernels.{op}: argument 'temperature' is on {temperature.device} but 'x' is on {device}; it "
                "must be on x's device or the CPU"
            )
        if not torch.compiler.is_compiling():
            value = float(temperature.detach().reshape(()))  # a GPU tensor synchronizes here, once per call
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"glo_kernels.{op}: argument 'temperature' must be finite and > 0, got {value}")
        return 1.0, temperature
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise TypeError(
            f"glo_kernels.{op}: argument 'temperature' must be a number or a tensor, got {type(temperature).__name__}"
        )
    value = float(temperature)
    # (comparisons, not math.isfinite: torch.compile(dynamic=True) traces float attributes of modules as symbolic
    # floats, which compare (a guard) but have no isfinite; NaN fails both comparisons)
    if not 0.0 < value < math.inf:
        raise ValueError(f"glo_kernels.{op}: argument 'temperature' must be finite and > 0, got {value}")
    return value, None


def _check_dim(x: torch.Tensor, dim, op: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"glo_kernels.{op}: argument 'dim' must be an int, got {type(dim).__name__}")
    nd = max(x.dim(), 1)
    if not -nd <= dim < nd:
        raise ValueError(f"glo_kernels.{op}: argument 'dim' ({dim}) is out of range for a {x.dim()}-d tensor")
    return dim % nd


def _softmax_common(name: str, x, dim, temperature):
    _check_x(x, name)
    dim = _check_dim(x, dim, name)
    t, tt = _check_temperature(temperature, name, x.device)
    return dim, t, tt, backends.backend_for(x.device, name)


def _check_dtype(dtype, x: torch.Tensor, op: str):
    """The output dtype argument: None or one of the four floating dtypes; None when it is x's own."""
    if dtype is None:
        return None
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"glo_kernels.{op}: argument 'dtype' must be a torch.dtype or None, got {type(dtype).__name__}")
    if dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"glo_kernels.{op}: argument 'dtype' must be float64, float32, bfloat16 or float16 (the output is "
            f"softmax(x.to(dtype))), got {dtype}")
    return None if dtype == x.dtype else dtype


def softmax(x: torch.Tensor, dim: int = -1, temperature=1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``softmax(x / temperature)`` along ``dim`` (Hinton et al. 2015's softened probabilities).

    ``temperature`` is a positive number or a one-element tensor; when that tensor requires grad (a learned
    temperature, e.g. for calibration) its gradient is computed too. One fused pass forward (the row is read once; the
    temperature is applied as ``(x - max) / T``, so huge logits and tiny temperatures stay finite) and one backward,
    from the saved output: ``dx = y * (dy - sum(dy * y)) / T``. Any dim, shape and strides; float64, float32,
    bfloat16, float16 (16-bit computed in float32). A row containing NaN or +inf gives NaN, as torch.softmax.

    ``dtype`` (None: x's) is the output's dtype, as ``torch.softmax(x, dim, dtype=...)``: the result is
    ``softmax(x.to(dtype) / temperature)`` in ``dtype``, and the gradient comes back in x's dtype. bfloat16 or float16
    logits with ``dtype=torch.float32`` (mixed precision: float32 probabilities) run fused, forward and backward: the
    kernels read one dtype and write the other, no cast pass. Other pairs cast x first (one copy), then run the op.
    """
    dim, t, tt, backend = _softmax_common("softmax", x, dim, temperature)
    dtype = _check_dtype(dtype, x, "softmax")
    if backend == "reference":
        return reference.softmax(x, dim, temperature, dtype)
    return op_namespace(backend).softmax(x, dim, t, tt, dtype)


def log_softmax(x: torch.Tensor, dim: int = -1, temperature=1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``log_softmax(x / temperature)`` along ``dim``; backward ``dx = (dy - exp(y) * sum(dy)) / T`` from the output.

    Arguments (``dtype`` too) as :func:`softmax`.
    """
    dim, t, tt, backend = _softmax_common("log_softmax", x, dim, temperature)
    dtype = _check_dtype(dtype, x, "log_softmax")
    if backend == "reference":
        return reference.log_softmax(x, dim, temperature, dtype)
    return op_namespace(backend).log_softmax(x, dim, t, tt, dtype)


def grouped_softmax(x: torch.Tensor, group_sizes, dim: int = -1, temperature=1.0) -> torch.Tensor:
    """Several softmaxes side by side along ``dim``: one per consecutive group of ``group_sizes`` elements.

    ``group_sizes`` (positive ints) must sum to the size of ``dim``. As in YOLO9000's WordTree, where every set of
    co-hyponyms gets its own softmax. One fused kernel for all groups, forward and backward; ``temperature`` as in
    :func:`softmax`.
    """
    dim, t, tt, backend = _softmax_common("grouped_softmax", x, dim, temperature)
    if not isinstance(group_sizes, (list, tuple)) or not all(
            isinstance(g, int) and not isinstance(g, bool) for g in group_sizes):
        raise TypeError(
            f"glo_kernels.grouped_softmax: argument 'group_sizes' must be a list or tuple of ints, got {group_sizes!r}")
    group_sizes = [int(g) for g in group_sizes]
    size = x.shape[dim] if x.dim() > 0 else 1
    if not group_sizes or any(g < 1 for g in group_sizes) or sum(group_sizes) != size:
        raise ValueError(
            f"glo_kernels.grouped_softmax: argument 'group_sizes' must be positive sizes summing to the size of dim "
            f"{dim} ({size}), got {group_sizes}"
        )
    if backend == "reference":
        return reference.grouped_softmax(x, group_sizes, dim, temperature)
    return op_namespace(backend).grouped_softmax(x, group_sizes, dim, t, tt)


_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
                      reduction: str = "batchmean") -> torch.Tensor:
    """Hinton's distillation loss over the last dim, fused:
    ``F.kl_div(log_softmax(student / T), softmax(teacher / T), reduction=reduction) * T**2``.

    One pass over both logit rows forward (online max and sums; only 5 numbers per row are saved), one pass
    backward; neither probability matrix is materialised. ``reduction``: "batchmean" (default, divides by
    ``student.size(0)``), "sum", "mean" (divides by the number of elements) or "none" (the pointwise loss). The
    gradient flows to the student, and to the teacher when it requires grad. ``temperature`` is a positive number.
    """
    _check_x(student, "distillation_loss", "student")
    _check_x(teacher, "distillation_loss", "teacher")
    if teacher.shape != student.shape:
        raise ValueError(
            f"glo_kernels.distillation_loss: argument 'teacher' has shape {tuple(teacher.shape)} but 'student' has "
            f"shape {tuple(student.shape)}; they must match"
        )
    if teacher.dtype != student.dtype:
        raise TypeError(
            f"glo_kernels.distillation_loss: argument 'teacher' has dtype {teacher.dtype} but 'student' has "
            f"{student.dtype}; they must match"
        )
    if teacher.device != student.device:
        raise ValueError(
            f"glo_kernels.distillation_loss: argument 'teacher' is on {teacher.device} but 'student' is on "
            f"{student.device}; they must be on the same device"
        )
    if student.dim() == 0:
        raise ValueError("glo_kernels.distillation_loss: argument 'student' must have at least one dimension")
    if isinstance(temperature, torch.Tensor):
        if temperature.device != student.device and temperature.device.type != "cpu":
            raise ValueError(
                f"glo_kernels.distillation_loss: argument 'temperature' is on {temperature.device} but 'student' is on "
                f"{student.device}; it must be a number (or a tensor on the CPU or the logits' device)")
        if temperature.requires_grad:
            raise ValueError("glo_kernels.distillation_loss: argument 'temperature' must be a number (a tensor "
                             "requiring grad is not supported here)")
        temperature = float(temperature)
    t, _ = _check_temperature(temperature, "distillation_loss")
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"glo_kernels.distillation_loss: argument 'reduction' must be one of 'none', 'mean', 'sum', "
            f"'batchmean', got {reduction!r}"
        )
    backend = backends.backend_for(student.device, "distillation_loss")
    if backend == "reference":
        return reference.distillation_loss(student, teacher, t, reduction)
    return op_namespace(backend).distillation_loss(student, teacher, t, reduction)[0]
