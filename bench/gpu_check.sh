#!/usr/bin/env bash
# The one GPU script: run on a lent GPU machine (no network) from the repository root:
#     bash bench/gpu_check.sh OUTDIR
# Builds the extension for sm_90 with all cores, runs the CUDA and Triton tests, the report and the pytest-benchmark
# suite, and writes logs and results into OUTDIR. Uses the machine's python3 (torch, triton, pytest and
# pytest-benchmark are installed there); installs nothing.
set -uo pipefail
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
step() { echo "=== $1 ($(date -u +%H:%M:%S))"; }

step "environment"
{ nvidia-smi; $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(torch.cuda.get_device_name())"; nvcc --version | tail -2; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step "build for sm_90 with $(nproc) jobs"
rm -rf build glo_kernels/_C*.so
if ! TORCH_CUDA_ARCH_LIST=9.0 GLO_KERNELS_CUDA=1 MAX_JOBS=$(nproc) $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
grep "glo_kernels:" "$OUT/build.log"

step "tests (CUDA, Triton on the GPU, CPU)"
$PY -m pytest tests -q -x -p no:cacheprovider -rs > "$OUT/tests.log" 2>&1 || status=1
tail -n 15 "$OUT/tests.log"

step "report"
$PY -m bench.report --out "$OUT" > "$OUT/report.log" 2>&1 || status=1
cat "$OUT/report.log"

step "pytest-benchmark suite"
$PY -m pytest bench -q -p no:cacheprovider --benchmark-json="$OUT/benchmark.json" > "$OUT/bench.log" 2>&1 || status=1
tail -n 40 "$OUT/bench.log"

step "done (status $status)"
exit $status
