"""Which backend runs an op, why, and the switch that forces one.

Backends:
  cuda       the C++ extension's CUDA kernels (CUDA tensors; needs the extension built with CUDA)
  triton     Triton kernels (CUDA tensors; CPU tensors too when TRITON_INTERPRET=1, which is how they are tested
             without a GPU), behind the C++ extension's glue (its checks and layout: csrc/triton_ops.cpp), which
             needs only its CPU build
  cpu        the C++ extension's CPU kernels (CPU tensors)
  reference  plain PyTorch (any device); always there

Default choice: CUDA tensors use ``cuda`` when it was built, else ``triton``, else ``reference``; CPU tensors use
``cpu`` when the extension loaded, else ``reference``. ``GLO_KERNELS_BACKEND=<name>`` (read at import) or the context
manager :func:`use_backend` force one; forcing a backend that cannot run a tensor raises an error saying why.

CPU capability: the ``cpu`` backend's kernels are compiled at several instruction-set levels (on x86-64: ``default``,
``avx2``, ``avx512``) and run at the best one this CPU has, chosen when the extension loads, as PyTorch's own CPU
kernels (``ATEN_CPU_CAPABILITY``). ``GLO_KERNELS_CPU_CAPABILITY=<level>`` (read at import) or the context manager
:func:`use_cpu_capability` choose another; :func:`cpu_capability` says which runs.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, NamedTuple

import torch

BACKENDS = ("cuda", "triton", "cpu", "reference")


class BackendStatus(NamedTuple):
    """Whether a backend can run here, and why (or why not)."""

    available: bool
    reason: str


def _load_extension() -> tuple[bool, bool, str]:
    try:
        from glo_kernels import _C  # noqa: F401  (importing runs the C++ op registrations)
    except ImportError as e:
        return False, False, f"the C++ extension glo_kernels._C did not load ({e}); build it with `pip install -e .`"
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key("glo_kernels::relu", "CUDA")
    return True, has_cuda, "C++ extension glo_kernels._C"


_EXT_LOADED, _EXT_HAS_CUDA, _EXT_REASON = _load_extension()

CPU_CAPABILITIES = ("default", "avx2", "avx512")


def cpu_capabilities() -> list[str]:
    """The CPU kernel levels this build holds and this CPU can run, lowest first (empty without the extension)."""
    return list(torch.ops.glo_kernels_debug.cpu_capabilities()) if _EXT_LOADED else []


def cpu_capability() -> str | None:
    """The level the ``cpu`` backend's kernels run at now ("default", "avx2" or "avx512"; None without the extension)."""
    return str(torch.ops.glo_kernels_debug.cpu_capability()) if _EXT_LOADED else None


def _set_cpu_capability(name: str, what: str) -> None:
    if name not in CPU_CAPABILITIES:
        raise ValueError(f"{what}: the CPU capability must be one of {', '.join(CPU_CAPABILITIES)}, got {name!r}")
    if not _EXT_LOADED:
        raise RuntimeError(f"{what}: the cpu backend is not available: {_EXT_REASON}")
    if name not in cpu_capabilities():
        raise RuntimeError(f"{what}: CPU capability {name!r} cannot run here; this build on this CPU runs: "
                           f"{', '.join(cpu_capabilities())}")
    torch.ops.glo_kernels_debug.set_cpu_capability(name)


@contextlib.contextmanager
def use_cpu_capability(name: str) -> Iterator[None]:
    """Run the ``cpu`` backend's kernels at level ``name`` ("default", "avx2", "avx512") inside a ``with`` block.

    Process-wide (not per thread), like :func:`use_backend`. A level this build or this CPU lacks raises an error.
    """
    previous = cpu_capability()
    _set_cpu_capability(str(name).lower(), "use_cpu_capability")
    try:
        yield
    finally:
        torch.ops.glo_kernels_debug.set_cpu_capability(previous)


_ENV_CPU_CAPABILITY = os.environ.get("GLO_KERNELS_CPU_CAPABILITY", "").strip().lower()
if _ENV_CPU_CAPABILITY and _EXT_LOADED:
    _set_cpu_capability(_ENV_CPU_CAPABILITY, f"GLO_KERNELS_CPU_CAPABILITY={_ENV_CPU_CAPABILITY}")


def _triton_status() -> tuple[bool, str]:
    try:
        import triton  # noqa: F401
    except ImportError as e:
        return False, f"triton is not importable ({e})"
    return True, f"triton {triton.__version__}"


_TRITON_IMPORTABLE, _TRITON_REASON = _triton_status()
_TRITON_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")

_ENV_FORCED = os.environ.get("GLO_KERNELS_BACKEND", "").strip().lower() or None
if _ENV_FORCED is not None and _ENV_FORCED not in BACKENDS:
    raise ValueError(f"GLO_KERNELS_BACKEND={_ENV_FORCED!r} is not one of {', '.join(BACKENDS)}")
_forced: str | None = None


def available_backends() -> dict[str, BackendStatus]:
    """Each backend's availability in this process, with the reason (what it runs on, or why it is missing)."""
    gpu = torch.cuda.is_available()
    out = {}
    if not _EXT_LOADED:
        out["cuda"] = BackendStatus(False, _EXT_REASON)
    elif not _EXT_HAS_CUDA:
        out["cuda"] = BackendStatus(False, "the extension was built without CUDA kernels (no nvcc or CPU-only torch)")
    elif not gpu:
        out["cuda"] = BackendStatus(False, "CUDA kernels built, but no GPU is visible")
    else:
        out["cuda"] = BackendStatus(True, "CUDA kernels of the C++ extension")
    if not _TRITON_IMPORTABLE:
        out["triton"] = BackendStatus(False, _TRITON_REASON)
    elif not _EXT_LOADED:
        out["triton"] = BackendStatus(False, f"its operators are defined by the C++ extension: {_EXT_REASON}")
    elif gpu:
        out["triton"] = BackendStatus(True, f"{_TRITON_REASON} on CUDA tensors")
    elif _TRITON_INTERPRET:
        out["triton"] = BackendStatus(True, f"{_TRITON_REASON} under TRITON_INTERPRET=1 (CPU tensors, slow)")
    else:
        out["triton"] = BackendStatus(False, "no GPU is visible and TRITON_INTERPRET is not set")
    if _EXT_LOADED:
        out["cpu"] = BackendStatus(True, f"CPU kernels of the C++ extension, {cpu_capability()} level "
                                         f"(this CPU runs: {', '.join(cpu_capabilities())})")
    else:
        out["cpu"] = BackendStatus(False, _EXT_REASON)
    out["reference"] = BackendStatus(True, "plain PyTorch ops")
    return out


def forced_backend() -> str | None:
    """The backend forced by :func:`use_backend` or ``GLO_KERNELS_BACKEND``, or None."""
    return _forced if _forced is not None else _ENV_FORCED


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force backend ``name`` ("cuda", "triton", "cpu", "reference"; None: automatic) inside a ``with`` block.

    The choice is process-wide (not per thread) and is read when an op is called, also while torch.compile traces.
    """
    global _forced
    if name is not None:
        name = name.lower()
        if name not in BACKENDS:
            raise ValueError(f"use_backend: name must be one of {', '.join(BACKENDS)} or None, got {name!r}")
    previous = _forced
    _forced = name
    try:
        yield
    finally:
        _forced = previous


def _can_run(name: str, device: torch.device) -> str | None:
    """None if backend ``name`` can run tensors on ``device``, else the reason it cannot."""
    if name == "reference":
        return None
    if name == "cpu":
        if device.type != "cpu":
            return f"the cpu backend runs CPU tensors only, got a tensor on {device}"
        return None if _EXT_LOADED else _EXT_REASON
    if name == "cuda":
        if device.type != "cuda":
            return f"the cuda backend runs CUDA tensors only, got a tensor on {device}"
        if not _EXT_LOADED:
            return _EXT_REASON
        return None if _EXT_HAS_CUDA else "the extension was built without CUDA kernels"
    # triton
    if not _TRITON_IMPORTABLE:
        return _TRITON_REASON
    if not _EXT_LOADED:
        return f"its operators are defined by the C++ extension: {_EXT_REASON}"
    if device.type == "cuda":
        return None
    if device.type == "cpu" and _TRITON_INTERPRET:
        return None
    return f"the triton backend runs CUDA tensors (CPU tensors only with TRITON_INTERPRET=1), got a tensor on {device}"


def backend_for(device: torch.device, op: str = "op") -> str:
    """The backend that runs ``op`` on tensors of ``device`` now."""
    name = forced_backend()
    if name is not None:
        why = _can_run(name, device)
        if why is not None:
            raise RuntimeError(f"glo_kernels.{op}: forced backend '{name}' cannot run here: {why}")
        return name
    if device.type == "cuda":
        if _EXT_LOADED and _EXT_HAS_CUDA:
            return "cuda"
        return "triton" if _TRITON_IMPORTABLE and _EXT_LOADED else "reference"
    if device.type == "cpu" and _EXT_LOADED:
        return "cpu"
    return "reference"


def op_namespace(backend: str):
    """The torch.ops namespace holding ``backend``'s registered ops (``cpu``/``cuda``: C++; ``triton``: Python)."""
    if backend in ("cpu", "cuda"):
        return torch.ops.glo_kernels
    if backend == "triton":
        return torch.ops.glo_kernels_triton  # defined by the C++ extension; kernels in glo_kernels.triton.launch
    raise ValueError(f"backend {backend!r} has no registered ops")
