"""Drop-in modules: same constructor arguments, attributes and state_dict keys as their torch.nn twins.

Each module subclasses its torch.nn twin (so ``isinstance(m, torch.nn.ReLU)`` still holds and a torch.nn
state_dict loads unchanged) and only replaces ``forward`` with the fused glo_kernels op.
"""
from __future__ import annotations

import inspect

import torch

from glo_kernels import functional as F
from glo_kernels.ops.gated import GATED
from glo_kernels.ops.unary import UNARY


class ReLU(torch.nn.ReLU):
    """``torch.nn.ReLU`` on glo_kernels' fused kernels (1-bit mask saved for backward)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.relu(input, inplace=self.inplace)


class LeakyReLU(torch.nn.LeakyReLU):
    """``torch.nn.LeakyReLU(negative_slope=0.01, inplace=False)`` on glo_kernels' fused kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(input, self.negative_slope, inplace=self.inplace)


class PReLU(torch.nn.PReLU):
    """``torch.nn.PReLU(num_parameters=1, init=0.25, device=None, dtype=None)``; the parameter is ``weight``."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.prelu(input, self.weight)


class ELU(torch.nn.ELU):
    """``torch.nn.ELU(alpha=1.0, inplace=False)`` on glo_kernels' fused kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.elu(input, self.alpha, inplace=self.inplace)


class Softplus(torch.nn.Softplus):
    """``torch.nn.Softplus(beta=1.0, threshold=20.0)`` on glo_kernels' fused kernels."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.softplus(input, self.beta, self.threshold)


def _make_unary_module(spec) -> type:
    """glo_kernels.nn.<Twin> of an op of the unary family: its torch.nn twin with forward on glo_kernels.<name> (the
    twin's `inplace` passed on where it has one)."""
    fn = F.UNARY_FUNCTIONS[spec.name]
    base = spec.torch_module
    # the twin's own arguments that glo_kernels.<name> takes too: inplace, the argument of UnarySpec.choice
    params = inspect.signature(base.__init__).parameters
    passed = tuple(a for a in ("inplace", spec.choice[0] if spec.choice else None) if a in params)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return fn(input, **{a: getattr(self, a) for a in passed})

    def twin(m: torch.nn.Module) -> torch.nn.Module:
        return cls(**{a: getattr(m, a) for a in passed})

    cls = type(base.__name__, (base,), {
        "forward": forward,
        "__doc__": f"``torch.nn.{base.__name__}`` on glo_kernels' fused kernels (:func:`glo_kernels.{spec.name}`).",
        "__module__": __name__,
    })
    cls._glo_twin = staticmethod(twin)
    return cls


# glo_kernels.nn.<Twin> of every op of the unary family (Sigmoid, Tanh, ...).
UNARY_MODULES = {spec.module_name: _make_unary_module(spec) for spec in UNARY if spec.variant_of is None}
globals().update(UNARY_MODULES)


def _make_gated_module(spec) -> type:
    """glo_kernels.nn.<module> of an op of the gated family (no torch.nn twin: a plain Module without state), with
    the string argument of GatedSpec.choice (GeGLU's approximate) as a constructor argument."""
    fn = F.GATED_FUNCTIONS[spec.name]
    arg = spec.choice[0] if spec.choice else None
    default = spec.choice[1] if spec.choice else None

    def __init__(self, *args, **kwargs):
        torch.nn.Module.__init__(self)
        if arg is None:
            if args or kwargs:
                raise TypeError(f"{spec.module}() takes no arguments")
            return
        if len(args) > 1 or set(kwargs) - {arg} or (args and kwargs):
            raise TypeError(f"{spec.module}() takes one argument, {arg}={default!r}")
        value = args[0] if args else kwargs.get(arg, default)
        allowed = [v for v, _ in spec.choice[2]]
        if value not in allowed:
            raise ValueError(f"{spec.module}: argument '{arg}' must be one of {allowed}, got {value!r}")
        setattr(self, arg, value)

    def forward(self, input: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if arg is None:
            return fn(input, b)
        return fn(input, b, **{arg: getattr(self, arg)})

    def extra_repr(self) -> str:
        return "" if arg is None else f"{arg}={getattr(self, arg)!r}"

    half = "first half of the last dim is the gate, the second the value"
    return type(spec.module, (torch.nn.Module,), {
        "__init__": __init__,
        "forward": forward,
        "extra_repr": extra_repr,
        "__doc__": f"The gated unit :func:`glo_kernels.{spec.name}` as a module: ``forward(x)`` (the {half}) or "
                   f"``forward(a, b)``." + (f" Argument: ``{arg}`` ({default!r} or 'tanh')." if arg else ""),
        "__module__": __name__,
    })


# glo_kernels.nn.SwiGLU, GeGLU, ReGLU (glo_kernels/ops/gated.py).
GATED_MODULES = {spec.module: _make_gated_module(spec) for spec in GATED if spec.module is not None}
globals().update(GATED_MODULES)


class PELU(torch.nn.Module):
    """PELU (Trottier et al. 2017) with learned ``a`` and ``b`` (1 or C = ``num_parameters`` elements each).

    ``f(x) = (a/b) x`` for x >= 0, ``a (exp(x/b) - 1)`` otherwise. Positivity: as in the paper's code, ``a`` and
    ``b`` are kept at or above ``min_value`` (0.1) by projection — in training mode each forward first clamps the
    parameters in place (without autograd), then uses them. The gradient itself is never masked, so a parameter
    pushed to the bound can move away from it again; under ``torch.compile(fullgraph=True)`` the clamp is part of the
    graph. In eval mode the parameters are used as they are.
    """

    def __init__(self, num_parameters: int = 1, init_a: float = 1.0, init_b: float = 1.0, device=None, dtype=None,
                 min_value: float = 0.1):
        super().__init__()
        if num_parameters < 1:
            raise ValueError(f"PELU: argument 'num_parameters' must be >= 1, got {num_parameters}")
        if not (init_a > 0 and init_b > 0):
            raise ValueError(f"PELU: 'init_a' and 'init_b' must be > 0, got {init_a} and {init_b}")
        self.num_parameters = num_parameters
        self.min_value = min_value
        kw = {"device": device, "dtype": dtype}
        self.a = torch.nn.Parameter(torch.full((num_parameters,), float(init_a), **kw))
        self.b = torch.nn.Parameter(torch.full((num_parameters,), float(init_b), **kw))

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.training:
            with torch.no_grad():
                self.a.clamp_(min=self.min_value)
                self.b.clamp_(min=self.min_value)
        return F.pelu(input, self.a, self.b)

    def extra_repr(self) -> str:
        return f"num_parameters={self.num_parameters}"


class Maxout(torch.nn.Module):
    """Maxout over groups of ``pieces`` consecutive channels along ``dim`` (default 1)."""

    def __init__(self, pieces: int, dim: int = 1):
        super().__init__()
        if isinstance(pieces, bool) or not isinstance(pieces, int) or pieces < 1:
            raise ValueError(f"Maxout: argument 'pieces' must be an int >= 1, got {pieces!r}")
        self.pieces = pieces
        self.dim = dim

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.maxout(input, self.pieces, self.dim)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}, dim={self.dim}"


def _temperature_repr(t) -> str:
    return f"temperature={t.item() if isinstance(t, torch.Tensor) and t.numel() == 1 else t}"


def _dtype_repr(dtype) -> str:
    return "" if dtype is None else f", dtype={dtype}"


class _TemperatureSoftmax:
    """What Softmax and LogSoftmax add to their torch.nn twin (the second base class): a temperature and a dtype."""

    dtype: torch.dtype | None = None  # (modules pickled before the argument existed)
    _op = ""  # the glo_kernels function: "softmax" or "log_softmax"

    def __init__(self, dim: int | None = None, temperature=1.0, dtype: torch.dtype | None = None):
        super().__init__(dim)
        self.temperature = temperature
        self.dtype = dtype

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        dim = self.dim if self.dim is not None else torch.nn.functional._get_softmax_dim(self._op, input.dim(), 5)
        return getattr(F, self._op)(input, dim, self.temperature, self.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, {_temperature_repr(self.temperature)}" + _dtype_repr(self.dtype)


class Softmax(_TemperatureSoftmax, torch.nn.Softmax):
    """``torch.nn.Softmax(dim=None)`` with a ``temperature`` (default 1.0): ``softmax(x / temperature, dim)``.

    ``dim=None`` follows torch.nn.Softmax's legacy rule (0 for 0-, 1- and 3-d inputs, else 1, with its warning).
    ``temperature`` is a positive number or a one-element tensor; pass a ``torch.nn.Parameter`` to learn it (it is
    then registered as this module's parameter ``temperature``). ``dtype`` (None: the input's) is the output's dtype,
    as in :func:`glo_kernels.softmax` (e.g. float32 probabilities of bfloat16 logits, fused); it is not state (the
    state_dict keys are torch.nn.Softmax's).
    """

    _op = "softmax"


class LogSoftmax(_TemperatureSoftmax, torch.nn.LogSoftmax):
    """``torch.nn.LogSoftmax(dim=None)`` with a ``temperature`` (default 1.0): ``log_softmax(x / temperature, dim)``.

    Arguments (``dtype`` too) as :class:`Softmax`.
    """

    _op = "log_softmax"


class GroupedSoftmax(torch.nn.Module):
    """One softmax per consecutive group of ``group_sizes`` entries along ``dim`` (YOLO9000's WordTree)."""

    def __init__(self, group_sizes, dim: int = -1, temperature=1.0):
        super().__init__()
        group_sizes = list(group_sizes)
        if not group_sizes or any(isinstance(g, bool) or not isinstance(g, int) or g < 1 for g in group_sizes):
            raise ValueError(f"GroupedSoftmax: argument 'group_sizes' must be positive ints, got {group_sizes!r}")
        self.group_sizes = group_sizes
        self.dim = dim
        self.temperature = temperature

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return F.grouped_softmax(input, self.group_sizes, self.dim, self.temperature)

    def extra_repr(self) -> str:
        return f"group_sizes={self.group_sizes}, dim={self.dim}, {_temperature_repr(self.temperature)}"


class DistillationLoss(torch.nn.Module):
    """Hinton's distillation loss ``F.kl_div(log_softmax(s / T), softmax(t / T), reduction) * T**2``, fused.

    ``forward(student_logits, teacher_logits)``; the softmaxes run over the last dim.
    """

    def __init__(self, temperature: float = 1.0, reduction: str = "batchmean"):
        super().__init__()
        self.temperature = temperature
        self.reduction = reduction

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return F.distillation_loss(student_logits, teacher_logits, self.temperature, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


def _twin_relu(m: torch.nn.ReLU) -> torch.nn.Module:
    return ReLU(inplace=m.inplace)


def _twin_leaky_relu(m: torch.nn.LeakyReLU) -> torch.nn.Module:
    return LeakyReLU(negative_slope=m.negative_slope, inplace=m.inplace)


def _twin_prelu(m: torch.nn.PReLU) -> torch.nn.Module:
    twin = PReLU(num_parameters=m.num_parameters, device="meta")
    twin.weight = m.weight  # the same Parameter: values, requires_grad and optimizer references all carry over
    return twin


# torch.nn class -> function building its glo_kernels twin. Grows as ops are added.
_TWINS = {
    torch.nn.ELU: lambda m: ELU(alpha=m.alpha, inplace=m.inplace),
    torch.nn.Softplus: lambda m: Softplus(beta=m.beta, threshold=m.threshold),
    torch.nn.ReLU: _twin_relu,
    torch.nn.LeakyReLU: _twin_leaky_relu,
    torch.nn.PReLU: _twin_prelu,
    torch.nn.Softmax: lambda m: Softmax(dim=m.dim),
    torch.nn.LogSoftmax: lambda m: LogSoftmax(dim=m.dim),
    **{spec.torch_module: UNARY_MODULES[spec.module_name]._glo_twin for spec in UNARY if spec.variant_of is None},
}


def replace_activations(model: torch.nn.Module) -> torch.nn.Module:
    """Swap, in place, every torch.nn activation that glo_kernels implements for its glo_kernels twin.

    Only modules of exactly the torch.nn classes are swapped (subclasses may change behaviour and are left alone).
    Learned parameters are carried over as the same ``Parameter`` objects, so an optimizer built before the swap
    keeps working. The training/eval mode is kept. Returns ``model`` (or its twin if ``model`` itself is an
    activation).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"replace_activations: argument 'model' must be a torch.nn.Module, got {type(model).__name__}")

    def twin_of(m: torch.nn.Module) -> torch.nn.Module | None:
        make = _TWINS.get(type(m))
        if make is None:
            return None
        twin = make(m)
        twin.train(m.training)
        return twin

    root = twin_of(model)
    if root is not None:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            twin = twin_of(child)
            if twin is not None:
                setattr(parent, name, twin)
    return model


__all__ = ["DistillationLoss", "ELU", "GroupedSoftmax", "LeakyReLU", "LogSoftmax", "Maxout", "PELU", "PReLU", "ReLU",
           "Softmax", "Softplus", "replace_activations", *UNARY_MODULES, *GATED_MODULES]
