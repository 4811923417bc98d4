"""Dense sweeps of the float32 transcendentals (ELU, PELU, the unary family: sigmoid, tanh, ...) against float64: ulp
bounds per backend.

The CPU kernels use glo_kernels' own vectorizable exp / expm1 / tanh (csrc/include/glo/activations.h); this is where
their accuracy is pinned down. Under the Triton interpreter the sweeps are thinned (it is slow)."""
import pytest
import torch
import torch.nn.functional as F

import glo_kernels
from glo_kernels import reference
from op_db import UNARY, UNARY_BY_NAME

RANGES = [(-104.0, 89.0), (-1.0, 1.0), (-1e-3, 1e-3), (-20.0, 0.0), (-1e-30, 1e-30)]
BOUND_ULP = 4.0  # the ulps the op table allows these ops (OpSpec.ulps)


def _ulp_error(ours: torch.Tensor, ref64: torch.Tensor) -> float:
    r32 = ref64.float()
    ulp = (torch.nextafter(r32.abs(), torch.tensor(float("inf"))) - r32.abs()).double()
    err = (ours.double().cpu() - ref64).abs() / ulp
    err = err[torch.isfinite(ref64) & torch.isfinite(r32)]
    return err.max().item() if err.numel() else 0.0


def _pelu_formula(x):
    return torch.where(x >= 0, (1.3 / 0.6) * x, 1.3 * torch.expm1(x / 0.6))


# name: (ours, the float64 truth, eager). The unary family's truth is glo_kernels.reference (torch's float64 GELU
# cancels for x < 0), its eager torch's twin (BOUND_ULP: UnarySpec.ulps).
CASES = {
    **{spec.name: (getattr(glo_kernels, spec.name), getattr(reference, spec.name), spec.twin) for spec in UNARY},
    "elu": (lambda x: glo_kernels.elu(x, 0.7), lambda x: F.elu(x, 0.7), lambda x: F.elu(x, 0.7)),
    "softplus": (lambda x: glo_kernels.softplus(x, 1.5, 25.0), lambda x: F.softplus(x, 1.5, 25.0),
                 lambda x: F.softplus(x, 1.5, 25.0)),
    "pelu": (lambda x: glo_kernels.pelu(x, torch.tensor([1.3], device=x.device), torch.tensor([0.6], device=x.device)),
             _pelu_formula, _pelu_formula),
}


@pytest.mark.parametrize("name", list(CASES))
def test_float32_sweep_within_a_few_ulp(backend, name):
    backend_name, device = backend
    n = 20_001 if backend_name == "triton" and device == "cpu" else 1_000_001
    ours_fn, ref_fn, eager_fn = CASES[name]
    for lo, hi in RANGES:
        x = torch.linspace(lo, hi, n, dtype=torch.float32)
        ref = ref_fn(x.double())
        if name == "pelu":  # float64 reference of the float32 argument u = x * (1/b) (each rounded), as the kernels do
            inv_b = 1 / torch.tensor(0.6, dtype=torch.float32)
            ref = torch.where(x.double() >= 0, ref, 1.3 * torch.expm1((x * inv_b).double()))
        err = _ulp_error(ours_fn(x.to(device)), ref)
        eager = _ulp_error(eager_fn(x), ref_fn(x.double()))
        bound = UNARY_BY_NAME[name].ulps if name in UNARY_BY_NAME else BOUND_ULP
        assert err <= max(bound, 2 * eager), f"{name} on [{lo}, {hi}]: {err:.2f} ulp (eager {eager:.2f})"


# ---------------------------------------------------------------------------------------------------------------
# The 16-bit CUDA kernels' expm1 (glo::fast16::expm1_from_exp, csrc/include/glo/activations.h), on the host.
# ---------------------------------------------------------------------------------------------------------------
import math  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

import numpy as np  # noqa: E402

_INCLUDE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "csrc", "include")
_HARNESS = r"""
#include <cstdio>
#include <vector>
#include "glo/activations.h"
int main(int argc, char** argv) {  // argv[1]: n pairs (x, e) of float32; argv[2]: n results
  FILE* in = std::fopen(argv[1], "rb");
  std::vector<float> xe;
  float buf[2];
  while (std::fread(buf, sizeof(float), 2, in) == 2) { xe.push_back(buf[0]); xe.push_back(buf[1]); }
  std::fclose(in);
  FILE* out = std::fopen(argv[2], "wb");
  for (size_t i = 0; i < xe.size(); i += 2) {
    const float y = glo::fast16::expm1_from_exp(xe[i], xe[i + 1]);
    std::fwrite(&y, sizeof(float), 1, out);
  }
  std::fclose(out);
  return 0;
}
"""
U32 = 2.0**-24
EX2_REL = 2.0**-22  # ex2.approx.f32 and expf: within 2 ulp, an ulp being <= 2^-23 of the value
LOG2E_F32 = float(np.float32(1.44269504))  # the float the device multiplies by


def _fast16_expm1(tmp_path, x: np.ndarray, e: np.ndarray) -> np.ndarray:
    cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("no C++ compiler (CXX, c++, g++) to build the host harness of glo::fast16")
    src, exe = tmp_path / "fast16.cpp", tmp_path / "fast16"
    src.write_text(_HARNESS)
    # -ffp-contract=off: no fused multiply-add the source does not write (nvcc fuses none here either: no product
    # in expm1_from_exp is added to anything).
    subprocess.run([cxx, "-std=c++20", "-O1", "-ffp-contract=off", f"-I{_INCLUDE}", str(src), "-o", str(exe)],
                   check=True, capture_output=True)
    np.stack([x, e], 1).astype(np.float32).tofile(tmp_path / "in.bin")
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")], check=True)
    return np.fromfile(tmp_path / "out.bin", dtype=np.float32)


def _off_by_two_ulp(v: np.ndarray, sign: int) -> np.ndarray:
    """The float32 within 2 ulp of the exact value v (float64) farthest in direction `sign`: the worst result an
    approximation within 2 ulp (ex2.approx, expf) may give; 0 and inf stay."""
    ulp = np.spacing(v.astype(np.float32)).astype(np.float64)
    target = v + sign * 2 * ulp
    f = target.astype(np.float32)
    over = (f.astype(np.float64) - target) * sign > 0  # rounded past the target: step back
    f = np.where(over, np.nextafter(f, np.float32(-sign * np.inf)), f)
    return np.where((v == 0) | ~np.isfinite(v), v.astype(np.float32), f)


def _sweep() -> np.ndarray:
    t = np.float32(0.3)
    near = np.concatenate([np.linspace(-0.3, 0.3, 600_001), np.geomspace(1e-45, 0.3, 20_001),
                           -np.geomspace(1e-45, 0.3, 20_001)]).astype(np.float32)
    edges = np.array([t, -t, np.nextafter(t, 0), -np.nextafter(t, 0), np.nextafter(t, 1), -np.nextafter(t, 1)],
                     dtype=np.float32)
    wide = np.linspace(-104.0, 88.7, 400_001).astype(np.float32)
    return np.concatenate([near, edges, wide])


@pytest.mark.parametrize("exp_source", ["ex2_of_rounded_argument", "expf"])
def test_fast16_expm1_host_sweep(tmp_path, exp_source):
    """glo::fast16::expm1_from_exp over a dense sweep against float64, with e at the far ends of its error: within
    the bounds stated in activations.h. exp_source: how the kernels get e = exp(x): ex2.approx.ftz(fl(x log2 e))
    (ELU's and PELU's forward: 2 ulp, plus the rounding of the argument, flushed to 0 below 2^-126) or expf (PELU's
    backward: 2 ulp). The ex2 hardware instruction cannot run here; the sweep puts e 2 ulp off either way."""
    x = _sweep()
    x64 = x.astype(np.float64)
    ref = np.expm1(x64)
    if exp_source == "ex2_of_rounded_argument":
        t = (x * np.float32(LOG2E_F32)).astype(np.float64)  # the float product, as the device rounds it
        exact_e = np.exp2(t)
        eps_e = EX2_REL + 7.3e-8 * np.abs(x64)  # 2^t off exp(x) by |x| 7.3e-8 (activations.h)
    else:
        exact_e = np.exp(x64)
        eps_e = np.full_like(x64, EX2_REL)
    big = np.abs(x64) >= 0.3 - 1e-9
    ratio = np.where(big, np.abs(np.exp(x64) / np.where(ref == 0, 1, ref)), 0)
    rounds = (np.exp(x64) < 0.5) | (np.exp(x64) > 2)  # e - 1 rounds there (exact by Sterbenz in between)
    # Derived per element (first order; 1% for the second-order terms): on |x| < 0.3 the polynomial's fit (2.2e-7)
    # plus its evaluation (2.6u), eps_e e / |e - 1| (+ u where e - 1 rounds) beyond (activations.h).
    poly = 2.2e-7 + 2.6 * U32
    bound = np.where(big, (eps_e * ratio + np.where(rounds, U32, 0)) * 1.01, poly)
    for sign in (-1, 1):
        e = _off_by_two_ulp(exact_e, sign)
        if exp_source == "ex2_of_rounded_argument":
            e = np.where(e < 2.0**-126, np.float32(0), e)  # .ftz
        y = _fast16_expm1(tmp_path, x, e).astype(np.float64)
        fin = np.isfinite(ref) & (ref != 0) & (np.abs(ref) < 3.4e38)
        rel = np.abs(y - ref)[fin] / np.abs(ref[fin])
        worst = np.argmax(rel / bound[fin])
        assert rel[worst] <= bound[fin][worst], (
            f"x = {x[fin][worst]!r}: relative error {rel[worst]:.3g} > bound {bound[fin][worst]:.3g}")
        neg, mid = x64[fin] <= -0.3, np.abs(x64[fin]) < 0.3
        # The stated maxima (activations.h): x <= -0.3: 7.5e-7 (ex2) / 6.8e-7 (expf); |x| < 0.3: 3.8e-7.
        assert rel[neg].max() <= (7.5e-7 if exp_source != "expf" else 6.8e-7)
        assert rel[mid].max() <= 3.8e-7
    # Special values (e as the device gives it for them).
    sx = np.array([0.0, -0.0, np.nan, -np.inf, np.inf, 1e-45, -1e-45, -200.0], dtype=np.float32)
    se = np.array([1.0, 1.0, np.nan, 0.0, np.inf, 1.0, 1.0, 0.0], dtype=np.float32)
    sy = _fast16_expm1(tmp_path, sx, se)
    assert sy[0] == 0 and not math.copysign(1, sy[0]) < 0
    assert sy[1] == 0 and math.copysign(1, sy[1]) < 0, "expm1(-0.0) must be -0.0"
    assert np.isnan(sy[2])
    assert sy[3] == -1 and sy[4] == np.inf
    assert sy[5] == np.float32(1e-45) and sy[6] == np.float32(-1e-45)
    assert sy[7] == -1
