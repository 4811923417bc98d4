"""Test setup: Triton runs under its interpreter on CPU tensors when no GPU is visible; helpers shared by tests."""
import os

import torch

if not torch.cuda.is_available():
    # Must be set before triton or glo_kernels is imported: it decides how @triton.jit kernels run.
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

# Under pytest-xdist every worker is a process with torch's default intra-op pool of one thread per core: N workers on N
# cores then run N*N threads, and OpenMP's spinning threads cost a quarter of make test's time on 2 cores. Each worker
# takes its share of the cores instead (an explicit OMP_NUM_THREADS wins; tests that need threads set them).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT") and "OMP_NUM_THREADS" not in os.environ:
    _cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, _cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))

import glo_kernels  # noqa: E402
from helpers import RUN_SEED, seeded  # noqa: E402

DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)


def backend_params():
    """One pytest param per backend, each with the device its tests use; unavailable ones skip with the reason."""
    status = glo_kernels.available_backends()
    params = []
    for name in glo_kernels.BACKENDS:
        if name == "cuda":
            device = "cuda"
        elif name == "triton":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        else:
            device = "cpu"
        marks = [] if status[name].available else [pytest.mark.skip(reason=f"backend {name}: {status[name].reason}")]
        if device == "cuda":
            marks.append(pytest.mark.cuda)
        params.append(pytest.param((name, device), id=name, marks=marks))
    return params


def pytest_configure(config):
    """The run's seed drives hypothesis too (tests/test_fuzz.py): GLO_TEST_SEED=<seed> replays the fuzz examples as
    well (an explicit --hypothesis-seed wins). With a forced seed hypothesis does not use its example database
    (tests/hypothesis-db): GLO_FUZZ_DB=1 leaves hypothesis unseeded, reading and writing it."""
    if config.getoption("--hypothesis-seed", default=None) is None and os.environ.get("GLO_FUZZ_DB") != "1":
        import hypothesis.core

        hypothesis.core.global_force_seed = RUN_SEED


def pytest_report_header(config):
    lines = [f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}",
             f"random inputs: GLO_TEST_SEED={RUN_SEED} replays this run's inputs (fresh seed when unset)"]
    for name, st in glo_kernels.available_backends().items():
        lines.append(f"glo_kernels backend {name}: {'yes' if st.available else 'NO'} - {st.reason}")
    return lines


@pytest.fixture(params=backend_params())
def backend(request):
    """(name, device) of a backend, forced for the duration of the test."""
    name, device = request.param
    with glo_kernels.use_backend(name):
        yield name, device


def pytest_terminal_summary(terminalreporter):
    """The seed at the end too (pytest -q prints no header): a failure in CI's log comes with how to replay it."""
    terminalreporter.write_line(f"random inputs of this run: GLO_TEST_SEED={RUN_SEED}")


@pytest.fixture(autouse=True)
def _fresh_global_rng(request):
    """Seed torch's global generator per test from the run's seed and the test's id: fresh inputs on every run,
    and `GLO_TEST_SEED=<seed> pytest <test id>` draws the same ones again, whatever else runs."""
    torch.manual_seed(int(seeded(request.node.nodeid).initial_seed()))
    yield
