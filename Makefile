# Quick start:  make report   (set up, build, run the report)      make test   (set up, build, run the tests)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Compile jobs for the extension (torch's builder reads MAX_JOBS).
export MAX_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: setup build wheel test test-seeds report bench clean

setup: $(VENV)/.deps

$(VENV)/.deps: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements-dev.txt
	touch $@

# Builds glo_kernels._C in place (CPU kernels; CUDA kernels too when nvcc and a CUDA torch are present) and
# installs the package in editable mode. Rebuilds only what changed (ninja).
build: setup
	$(BIN)/python -m pip install --no-build-isolation --no-deps -e . -v > build.log 2>&1 || (tail -n 60 build.log; exit 1)
	@grep "glo_kernels:" build.log || true
	$(BIN)/python -c "import glo_kernels, sys; s = glo_kernels.available_backends(); print({k: v.available for k, v in s.items()}); sys.exit(0 if s['cpu'].available else 1)"

# A wheel in dist/ (tied to this torch release: its metadata requires torch==<this version>). After `make build` it
# only links and packs (the objects in build/temp are reused): seconds. tests/test_wheel.py installs one into a fresh
# virtual environment and runs it from outside the tree.
wheel: build
	$(BIN)/python -m pip wheel --no-build-isolation --no-deps -w dist . > wheel.log 2>&1 || (tail -n 60 wheel.log; exit 1)
	@ls -1 dist/glo_kernels-*.whl

# The suite draws fresh random inputs on every run; the seed is printed at the end (GLO_TEST_SEED=<seed> replays it).
# It runs in TEST_JOBS pytest-xdist workers (default: one per core; TEST_JOBS=0 runs in this process). Every test's
# inputs depend only on the run's seed and the test's id, so the split between workers changes nothing.
TEST_JOBS ?= $(MAX_JOBS)
test: build
	$(BIN)/python -m pytest tests -q --durations=25 -n $(TEST_JOBS) --dist loadgroup
	GLO_BENCH_SMALL=1 $(BIN)/python -m pytest bench -q --benchmark-disable

# The tests that draw random inputs, under N fresh seeds (or SEEDS="1 2 3"); prints the seeds that fail.
# TESTS narrows it (pytest arguments), e.g. make test-seeds N=5 TESTS="tests/test_softmax.py -k distillation".
N ?= 30
test-seeds: build
	$(BIN)/python tests/seed_sweep.py -n $(N) --jobs $(TEST_JOBS) $(if $(SEEDS),--seeds "$(SEEDS)") $(TESTS)

report: build
	$(BIN)/python -m bench.report

bench: build
	$(BIN)/python -m pytest bench --benchmark-json=results/benchmark.json

clean:
	rm -rf build build.log wheel.log dist *.egg-info glo_kernels/_C*.so
