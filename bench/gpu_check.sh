#!/usr/bin/env bash
# The one GPU script: run on a lent GPU machine (no network) from the repository root:
#     bash bench/gpu_check.sh OUTDIR
# Sized for the first lent device (15 minutes in all, machine start included): the default steps, build included,
# have limits that sum to 9.5 minutes (tests/test_gpu_table.py checks the sum), most valuable first:
#   1. build for sm_90 with all cores (TORCH_CUDA_ARCH_LIST=9.0);
#   2. the table that answers issue 13 (bench/gpu_table.py), streamed to the console as it is measured: every op x
#      float32 / bfloat16 x forward / backward at 2^26 elements (softmax family: rows 1k..256k), % of a copy of the
#      same bytes timed in the same rounds, speedups over eager and torch.compile; also OUTDIR/gpu_table.{md,csv};
#   3. the CUDA kernels under compute-sanitizer memcheck at small sizes;
#   4. the GPU parity tests (tests/test_cuda.py).
# GLO_GPU_FULL=1 then runs the longer steps of a later lease: the full report, racecheck, the pytest-benchmark suite,
# the fuzz tests and the whole test suite (their limits: GLO_GPU_X_*). Commit OUTDIR's files under
# bench/results/<device>/ (they name the card, torch and CUDA versions and the date). Uses the machine's python3
# (torch, triton, pytest); installs nothing. Step limits (seconds): GLO_GPU_T_ENV, GLO_GPU_T_BUILD, GLO_GPU_T_TABLE,
# GLO_GPU_T_SANITIZER, GLO_GPU_T_TESTS_CUDA.
set -uo pipefail
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
status=0
T_ENV=${GLO_GPU_T_ENV:-15}
T_BUILD=${GLO_GPU_T_BUILD:-210}
T_TABLE=${GLO_GPU_T_TABLE:-200}
T_SANITIZER=${GLO_GPU_T_SANITIZER:-55}
T_TESTS_CUDA=${GLO_GPU_T_TESTS_CUDA:-90}
step() { echo "=== $1 ($(date -u +%H:%M:%S))"; }
run_step() {  # name, limit (s), log, command...: the log's last lines printed after the step
  local name=$1 limit=$2 log=$3; shift 3
  step "$name (limit ${limit}s)"
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  local rc=$?
  [ $rc -eq 124 ] && echo "TIMED OUT after ${limit}s" | tee -a "$OUT/$log"
  [ $rc -ne 0 ] && status=1
  tail -n 25 "$OUT/$log"
}

step "environment (limit ${T_ENV}s)"
timeout "$T_ENV" bash -c "nvidia-smi; $PY -c \"import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__); print(torch.cuda.get_device_name())\"; nvcc --version | tail -2; date -u" > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step "build for sm_90 with $(nproc) jobs (limit ${T_BUILD}s)"
rm -rf build glo_kernels/_C*.so
TORCH_CUDA_ARCH_LIST=9.0 GLO_KERNELS_CUDA=1 MAX_JOBS=$(nproc) timeout "$T_BUILD" $PY setup.py build_ext --inplace \
  > "$OUT/build.log" 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  tail -n 40 "$OUT/build.log"; [ $rc -eq 124 ] && echo "BUILD TIMED OUT after ${T_BUILD}s"; echo "BUILD FAILED"; exit 1
fi
grep "glo_kernels:" "$OUT/build.log"

# The table first, streamed (each row printed when measured; a run cut by the limit keeps its rows).
step "issue 13 table (limit ${T_TABLE}s)"
timeout "$T_TABLE" $PY -m bench.gpu_table --out "$OUT" --time-limit $((T_TABLE - 15)) 2>&1 | tee "$OUT/table.log"
rc=${PIPESTATUS[0]}
[ $rc -eq 124 ] && echo "TIMED OUT after ${T_TABLE}s" | tee -a "$OUT/table.log"
[ $rc -ne 0 ] && status=1

# CUDA kernels under compute-sanitizer memcheck, small sizes (every launch plan of the softmax family included).
if command -v compute-sanitizer > /dev/null; then
  run_step "compute-sanitizer memcheck" "$T_SANITIZER" sanitizer.log \
    compute-sanitizer --tool memcheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -x \
    -k "cuda and (elementwise_matches_cpu and (31 or 4097) and offset1 and float32 or softmax_rows and (7- or 129- or 8193- or 40961-) and float32 or strided_and_grouped or distillation_matches_cpu and (cuda-10] or cuda-5000]))"
else
  echo "compute-sanitizer not found: memcheck step skipped" | tee "$OUT/sanitizer.log"
fi

run_step "GPU parity tests" "$T_TESTS_CUDA" tests_cuda.log \
  $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -rs

if [ "${GLO_GPU_FULL:-0}" != "0" ]; then
  # The report: element-wise sizes 2^16..2^26, softmax rows 128..262144, torch.compile at 2^20 / 2^24 and rows 8k / 256k.
  run_step "report" "${GLO_GPU_X_REPORT:-200}" report.log $PY -m bench.report --out "$OUT"
  if command -v compute-sanitizer > /dev/null; then
    # Shared-memory races: the kernels that use shared memory (block reductions, the softmax row caches, clusters).
    run_step "compute-sanitizer racecheck" "${GLO_GPU_X_RACECHECK:-90}" racecheck.log \
      compute-sanitizer --tool racecheck --error-exitcode 9 $PY -m pytest tests/test_cuda.py -q -p no:cacheprovider -x \
      -k "cuda- and (softmax_rows and (129- or 8193- or 40961-) and float32 or distillation_matches_cpu and cuda-5000] or prelu_backward_geometries and 1000)"
  fi
  run_step "pytest-benchmark suite" "${GLO_GPU_X_BENCH:-90}" bench.log \
    $PY -m pytest bench -q -p no:cacheprovider --benchmark-json="$OUT/benchmark.json"
  run_step "fuzz tests (cuda, triton on the GPU)" "${GLO_GPU_X_FUZZ:-150}" fuzz.log \
    $PY -m pytest tests/test_fuzz.py -q -p no:cacheprovider -rs -k "cuda or triton"
  # (failing examples hypothesis saved: commit them from OUTDIR/hypothesis-db into tests/hypothesis-db)
  cp -r tests/hypothesis-db "$OUT/hypothesis-db"
  run_step "whole test suite" "${GLO_GPU_X_TESTS:-200}" tests.log \
    $PY -m pytest tests -q -p no:cacheprovider -rs --durations=15 --ignore=tests/test_fuzz.py
fi

step "done (status $status)"
exit $status
