#!/usr/bin/env bash
# The one GPU script: run on a lent GPU machine (no network) from the repository root:
#     bash bench/gpu_check.sh OUTDIR
# Builds the extension for sm_90 with all cores, then — most valuable first, each step under its own time limit so
# that the calls fit the device lease — runs the GPU parity tests (tests/test_cuda.py), the report (CSV, markdown,
# plots), the CUDA tests under compute-sanitizer memcheck and racecheck at small sizes, the pytest-benchmark suite, the fuzz tests and
# the whole test suite (CUDA and Triton backends included), writing logs and results into OUTDIR. Commit OUTDIR's report files under
# bench/results/<device>/ (the report names the card, torch and CUDA versions and the date). Uses the machine's python3 (torch, triton, pytest, pytest-benchmark are there); installs
# nothing. Step limits (seconds) can be changed with GLO_GPU_T_TESTS_CUDA, GLO_GPU_T_REPORT, GLO_GPU_T_SANITIZER,
# GLO_GPU_T_RACECHECK, GLO_GPU_T_BENCH, GLO_GPU_T_FUZZ, GLO_GPU_T_TESTS.
set -uo pipefail
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
step() { echo "=== $1 ($(date -u +%H:%M:%S))"; }
run_step() {  # name, limit (s), log, command...
  local name=$1 limit=$2 log=$3; shift 3
  step "$name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "TIMED OUT after ${limit}s" | tee -a "$OUT/$log"
  [ $rc -ne 0 ] && status=1
  tail -n 25 "$OUT/$log"
}

step "environment"
{ nvidia-smi; $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(torch.cuda.get_device_name())"; nvcc --version | tail -2; date -u; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step "build for sm_90 with $(nproc) jobs"
rm -rf build glo_kernels/_C*.so
if ! TORCH_CUDA_ARCH_LIST=9.0 GLO_KERNELS_CUDA=1 MAX_JOBS=$(nproc) $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1; then
  tail -n 40 "$OUT/build.log"; echo "BUILD FAILED"; exit 1
fi
grep "glo_kernels:" "$OUT/build.log"

run_step "GPU parity tests" "${GLO_GPU_T_TESTS_CUDA:-150}" tests_cuda.log \
  $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs
# The report: element-wise sizes 2^16..2^26, softmax rows 128..262144, torch.compile at 2^20 / 2^24 and rows 8k / 256k.
run_step "report" "${GLO_GPU_T_REPORT:-200}" report.log $PY -m bench.report --out "$OUT"
# CUDA kernels under compute-sanitizer memcheck, small sizes (every launch plan of the softmax family included).
if command -v compute-sanitizer > /dev/null; then
  run_step "compute-sanitizer memcheck" "${GLO_GPU_T_SANITIZER:-120}" sanitizer.log \
    compute-sanitizer --tool memcheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -x \
    -k "cuda and (elementwise_matches_cpu and (31 or 4097) and offset1 and float32 or softmax_rows and (7- or 129- or 8193- or 40961-) and float32 or strided_and_grouped or distillation_matches_cpu and (cuda-10] or cuda-5000]))"
  # Shared-memory races: the kernels that use shared memory (block reductions, the softmax row caches, clusters).
  run_step "compute-sanitizer racecheck" "${GLO_GPU_T_RACECHECK:-90}" racecheck.log \
    compute-sanitizer --tool racecheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -x \
    -k "cuda- and (softmax_rows and (129- or 8193- or 40961-) and float32 or distillation_matches_cpu and cuda-5000] or prelu_backward_geometries and 1000)"
else
  echo "compute-sanitizer not found: memcheck and racecheck steps skipped" | tee "$OUT/sanitizer.log"
fi
run_step "pytest-benchmark suite" "${GLO_GPU_T_BENCH:-90}" bench.log \
  $PY -m pytest bench -q -p no:cacheprovider --benchmark-json="$OUT/benchmark.json"
run_step "fuzz tests (cuda, triton on the GPU)" "${GLO_GPU_T_FUZZ:-150}" fuzz.log \
  $PY -m pytest tests/test_fuzz.py -q -p no:cacheprovider -rs -k "cuda or triton"
# (failing examples hypothesis saved: commit them from OUTDIR/hypothesis-db into tests/hypothesis-db)
cp -r tests/hypothesis-db "$OUT/hypothesis-db"
run_step "whole test suite" "${GLO_GPU_T_TESTS:-200}" tests.log \
  $PY -m pytest tests -q -p no:cacheprovider -rs --durations=15 --ignore=tests/test_fuzz.py

step "done (status $status)"
exit $status
