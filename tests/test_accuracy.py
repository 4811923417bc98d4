"""Dense sweeps of the float32 transcendentals (ELU, PELU, sigmoid, tanh) against float64: ulp bounds per backend.

The CPU kernels use glo_kernels' own vectorizable exp / expm1 / tanh (csrc/include/glo/activations.h); this is where
their accuracy is pinned down. Under the Triton interpreter the sweeps are thinned (it is slow)."""
import pytest
import torch
import torch.nn.functional as F

import glo_kernels

RANGES = [(-104.0, 89.0), (-1.0, 1.0), (-1e-3, 1e-3), (-20.0, 0.0), (-1e-30, 1e-30)]
BOUND_ULP = 4.0  # the ulps the op table allows these ops (OpSpec.ulps)


def _ulp_error(ours: torch.Tensor, ref64: torch.Tensor) -> float:
    r32 = ref64.float()
    ulp = (torch.nextafter(r32.abs(), torch.tensor(float("inf"))) - r32.abs()).double()
    err = (ours.double().cpu() - ref64).abs() / ulp
    err = err[torch.isfinite(ref64) & torch.isfinite(r32)]
    return err.max().item() if err.numel() else 0.0


CASES = {
    "sigmoid": (lambda x: glo_kernels.sigmoid(x), lambda x: torch.sigmoid(x)),
    "tanh": (lambda x: glo_kernels.tanh(x), lambda x: torch.tanh(x)),
    "elu": (lambda x: glo_kernels.elu(x, 0.7), lambda x: F.elu(x, 0.7)),
    "pelu": (lambda x: glo_kernels.pelu(x, torch.tensor([1.3], device=x.device), torch.tensor([0.6], device=x.device)),
             lambda x: torch.where(x >= 0, (1.3 / 0.6) * x, 1.3 * torch.expm1(x / 0.6))),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_sweep_within_a_few_ulp(backend, name):
    backend_name, device = backend
    n = 20_001 if backend_name == "triton" and device == "cpu" else 1_000_001
    ours_fn, ref_fn = CASES[name]
    for lo, hi in RANGES:
        x = torch.linspace(lo, hi, n, dtype=torch.float32)
        ref = ref_fn(x.double())
        if name == "pelu":  # float64 reference of the float32 argument u = x * (1/b) (each rounded), as the kernels do
            inv_b = 1 / torch.tensor(0.6, dtype=torch.float32)
            ref = torch.where(x.double() >= 0, ref, 1.3 * torch.expm1((x * inv_b).double()))
        err = _ulp_error(ours_fn(x.to(device)), ref)
        eager = _ulp_error(ref_fn(x), ref_fn(x.double()))
        assert err <= max(BOUND_ULP, 2 * eager), f"{name} on [{lo}, {hi}]: {err:.2f} ulp (eager {eager:.2f})"
