"""Backend choice: automatic defaults, the context manager, the environment variable, and reasons when missing."""
import os
import subprocess
import sys

import pytest
import torch

import glo_kernels
from glo_kernels import backends


def test_available_backends_reports_every_backend_with_a_reason():
    status = glo_kernels.available_backends()
    assert set(status) == set(glo_kernels.BACKENDS)
    for name, st in status.items():
        assert isinstance(st.available, bool) and st.reason, name
    assert status["reference"].available
    assert status["cpu"].available, status["cpu"].reason  # the test command builds the extension first
    if not torch.cuda.is_available():
        assert not status["cuda"].available and ("GPU" in status["cuda"].reason or "without CUDA" in status["cuda"].reason)


def test_default_choice_for_cpu_tensors(monkeypatch):
    monkeypatch.setattr(backends, "_ENV_FORCED", None)  # whatever GLO_KERNELS_BACKEND the run was started with
    with glo_kernels.use_backend(None):
        assert backends.forced_backend() is None
        assert glo_kernels.backend_for(torch.device("cpu")) == "cpu"


def test_use_backend_forces_and_restores():
    before = backends.forced_backend()
    with glo_kernels.use_backend("reference"):
        assert glo_kernels.backend_for(torch.device("cpu")) == "reference"
        with glo_kernels.use_backend("cpu"):
            assert glo_kernels.backend_for(torch.device("cpu")) == "cpu"
        assert glo_kernels.backend_for(torch.device("cpu")) == "reference"
    assert backends.forced_backend() == before
    with pytest.raises(ValueError, match="use_backend: name must be one of"):
        with glo_kernels.use_backend("tpu"):
            pass


def test_forcing_a_backend_that_cannot_run_says_why():
    with glo_kernels.use_backend("cuda"):
        with pytest.raises(RuntimeError, match=r"glo_kernels\.relu: forced backend 'cuda' cannot run here: .*"):
            glo_kernels.relu(torch.randn(3))


def test_forced_backend_is_used(monkeypatch):
    """The forced backend's ops really run: count calls into the C++ op namespace."""
    calls = []
    real = backends.op_namespace

    def spy(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr("glo_kernels.functional.op_namespace", spy)
    with glo_kernels.use_backend("cpu"):
        glo_kernels.relu(torch.randn(3))
    with glo_kernels.use_backend("reference"):
        glo_kernels.relu(torch.randn(3))
    assert calls == ["cpu"]


@pytest.mark.parametrize("value,expect", [("reference", "reference"), ("cpu", "cpu"), ("bogus", "error")])
def test_environment_variable(value, expect):
    env = dict(os.environ, GLO_KERNELS_BACKEND=value)
    code = "import torch, glo_kernels; print(glo_kernels.backend_for(torch.device('cpu')))"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    if expect == "error":
        assert r.returncode != 0 and "GLO_KERNELS_BACKEND='bogus' is not one of" in r.stderr
    else:
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == expect
