"""Run the tests that draw random inputs under N fresh seeds and print the seeds that fail.

    python tests/seed_sweep.py -n 30                 # (make test-seeds N=30)
    python tests/seed_sweep.py -n 5 tests/test_ops.py -k "relu"

Every random input of the suite comes from the run's seed (tests/helpers.py RUN_SEED: GLO_TEST_SEED, or a fresh one),
the hypothesis fuzz tests included (tests/conftest.py hands the seed to hypothesis), so `GLO_TEST_SEED=<seed> pytest
<test id>` replays a failure printed here. Each seed runs in its own pytest process (the seed is read at import).
"""
from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The test files whose inputs are random (drawn from GLO_TEST_SEED); the others use fixed inputs or none.
RANDOM_INPUT_TESTS = [
    "tests/test_ops.py", "tests/test_softmax.py", "tests/test_fuzz.py", "tests/test_autograd.py",
    "tests/test_memory_format.py", "tests/test_reliability.py", "tests/test_pelu_maxout.py", "tests/test_opinfo.py",
    "tests/test_triton_kernels.py", "tests/test_triton_softmax.py", "tests/test_variants.py", "tests/test_nn.py",
    "tests/test_cuda.py", "tests/test_gated.py", "tests/test_bias.py",
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=30, help="number of fresh seeds (default 30)")
    ap.add_argument("--seeds", default="", help="these seeds instead of fresh ones (separated by spaces or commas)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="pytest-xdist workers per seed (default: one per core; 0: in the pytest process)")
    ap.add_argument("--log-dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "glo-seed-sweep"),
                    help="where the whole pytest output of a failing seed is written (default $TMPDIR/glo-seed-sweep)")
    ap.add_argument("pytest_args", nargs=argparse.REMAINDER,
                    help="test files / ids and pytest options (default: every test file with random inputs)")
    args = ap.parse_args(argv)
    rng = random.SystemRandom()
    seeds = [int(v) for v in args.seeds.replace(",", " ").split()] or [rng.randrange(2**31) for _ in range(args.n)]
    targets = args.pytest_args or [t for t in RANDOM_INPUT_TESTS if (ROOT / t).exists()]
    failed: dict[int, list[str]] = {}
    start = time.monotonic()
    for i, seed in enumerate(seeds, 1):
        t0 = time.monotonic()
        env = dict(os.environ, GLO_TEST_SEED=str(seed))
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                               "-n", str(args.jobs), "--dist", "loadgroup", *targets],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr.strip()[-200:]
        if proc.returncode not in (0, 5):
            failed[seed] = re.findall(r"^FAILED (.+)$", proc.stdout, re.M) or [tail]
            log = Path(args.log_dir) / f"seed-{seed}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            log.write_text(proc.stdout + proc.stderr)
            failed[seed].append(f"(pytest's whole output: {log})")
        status = "FAIL" if seed in failed else "ok"
        print(f"[{i}/{len(seeds)}] GLO_TEST_SEED={seed}: {status} ({time.monotonic() - t0:.0f} s) {tail}", flush=True)
        for test in failed.get(seed, [])[:11]:
            print(f"    {test}", flush=True)
    print(f"{len(seeds)} seeds in {(time.monotonic() - start) / 60:.1f} min; "
          f"failing seeds: {' '.join(map(str, failed)) or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
