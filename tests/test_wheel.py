"""The wheel: `pip wheel --no-build-isolation --no-deps .` (make wheel) builds one from this tree, and it installs into
a fresh virtual environment that shares nothing with this one but torch and its dependencies, and runs from outside
the source tree. After `make build` the wheel's build only links and packs (setup.py keeps the objects in
build/temp): seconds."""
import os
import subprocess
import sys
import venv
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent

SMOKE = r"""
import pathlib, sys
import torch
import torch.nn.functional as F
import glo_kernels

here = pathlib.Path(glo_kernels.__file__).resolve()
assert here.is_relative_to(pathlib.Path(sys.prefix).resolve()), f"imported from {here}, not the fresh venv"
assert glo_kernels.available_backends()["cpu"].available, glo_kernels.available_backends()
x = torch.randn(4, 257, dtype=torch.float64, requires_grad=True)
for ours, twin in ((glo_kernels.relu, F.relu), (glo_kernels.silu, F.silu), (glo_kernels.hardswish, F.hardswish)):
    y, yt = ours(x), twin(x)
    # (float64: within a few ulp of torch's; SiLU's gradient is formed more accurately than torch's, README)
    torch.testing.assert_close(y, yt, rtol=1e-13, atol=1e-15)
    (g,), (gt,) = torch.autograd.grad(y.sum(), x), torch.autograd.grad(yt.sum(), x)
    torch.testing.assert_close(g, gt, rtol=1e-13, atol=1e-15)
torch.testing.assert_close(glo_kernels.softmax(x, -1, temperature=2.0), torch.softmax(x / 2.0, -1))
m = glo_kernels.nn.replace_activations(torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU()))
assert type(m[1]) is glo_kernels.nn.ReLU
# every CPU level the build machine compiled, each run here where this CPU has it
for level in glo_kernels.cpu_capabilities():
    with glo_kernels.use_cpu_capability(level):
        torch.testing.assert_close(glo_kernels.silu(x), F.silu(x), rtol=1e-13, atol=1e-15)
print("wheel ok:", here, "CPU levels:", glo_kernels.cpu_capabilities(), "running", glo_kernels.cpu_capability())
"""


def _run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


def test_wheel_installs_into_a_fresh_venv_and_runs_outside_the_tree(tmp_path):
    dist = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q", "-w", str(dist), str(ROOT)])
    (whl,) = dist.glob("glo_kernels-*.whl")
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    # torch and its dependencies from this environment through a .pth line (no copy); a .pth file of that folder
    # (such as the editable install's finder of glo_kernels) is not read from there
    (site / "torch_from_outer_env.pth").write_text(str(Path(torch.__file__).resolve().parent.parent) + "\n")
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site), str(whl)])
    meta = next(site.glob("glo_kernels-*.dist-info")) / "METADATA"
    assert f"Requires-Dist: torch=={torch.__version__.split('+')[0]}" in meta.read_text(), "wheel not tied to torch"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = _run([str(py), "-c", SMOKE], cwd=tmp_path, env=env)
    assert "wheel ok" in out
