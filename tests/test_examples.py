"""The examples (examples/*.py) run with --fast and print results that make sense.

The three scripts run as subprocesses (sys.executable, cwd = the repository root), started together once for the
module so that the whole file stays short (each is single-threaded: about 5 s apiece on 2 CPU cores).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 120

pytestmark = pytest.mark.xdist_group("examples")  # one worker runs the module fixture (3 subprocesses) once

pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """name -> (returncode, stdout, stderr, png path) of each example run with --fast."""
    png = str(tmp_path_factory.mktemp("digits") / "templates.png")
    cmds = {
        "xor": ["examples/xor.py", "--fast"],
        "digits": ["examples/digits.py", "--fast", "--out", png],
        "distill": ["examples/distill.py", "--fast"],
    }
    procs = {name: subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for name, args in cmds.items()}
    results = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT_S)
            results[name] = (proc.returncode, out, err, png)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def _ok(outputs, name):
    rc, out, err, _ = outputs[name]
    assert rc == 0, f"examples/{name}.py --fast failed (rc {rc}):\n{out}\n{err}"
    return out


def test_xor(outputs):
    out = _ok(outputs, "xor")
    assert "hand-made solution accuracy: 100% (4/4)" in out
    # the hidden representation of the course: (0,0), (1,0), (1,0), (2,1), and the scores 0, 1, 1, 0
    rows = re.findall(r"^\s+([01])\s+([01])\s+\|\s+(\d)\s+(\d)\s+\|\s+(-?\d+)\s+\|\s+([01])$", out, re.M)
    assert [tuple(int(v) for v in r) for r in rows] == [
        (0, 0, 0, 0, 0, 0), (0, 1, 1, 0, 1, 1), (1, 0, 1, 0, 1, 1), (1, 1, 2, 1, 0, 0)]
    counts = {}
    for name in ("ReLU", "LeakyReLU", "PReLU", "ELU", "PELU", "Maxout"):
        m = re.search(rf"^{name}\s+\|(.*)$", out, re.M)
        assert m, f"no row for {name}:\n{out}"
        cells = [c.strip() for c in m.group(1).split("|")]
        assert len(cells) == 2, cells  # --fast: ours H=2, torch.nn H=2
        ours = re.fullmatch(r"(\d+)/(\d+)", cells[0])
        assert ours and 0 <= int(ours.group(1)) <= int(ours.group(2)) == 3, cells
        counts[name] = int(ours.group(1))
        if name in ("PELU", "Maxout"):
            assert cells[1] == "-"
        elif name in ("ReLU", "LeakyReLU"):
            # forward and backward are bit for bit torch.nn's: the same seeds give the same runs
            assert cells[1] == cells[0], (name, cells)
        else:
            assert re.fullmatch(r"\d+/3", cells[1]), cells
    assert sum(counts.values()) > 0, counts  # learning works for some activation


def test_digits(outputs):
    out = _ok(outputs, "digits")
    num = r"(\d+\.\d+|-)"
    rows = dict((m.group(1), m.groups()[1:]) for m in re.finditer(
        rf"^(linear|linear-linear|ReLU|LeakyReLU|PReLU|ELU|PELU|Maxout) \S+\s+\|\s+{num}\s+\|\s+{num}\s+\|\s+{num}"
        rf"\s+\|\s+{num}$", out, re.M))
    assert set(rows) == {"linear", "linear-linear", "ReLU", "LeakyReLU", "PReLU", "ELU", "PELU", "Maxout"}, out
    assert float(rows["linear"][0]) > 0.85, out
    for name, (acc, ms, tacc, tms) in rows.items():
        assert 0.85 < float(acc) <= 1.0 and float(ms) > 0, (name, out)
        if name in ("ReLU", "LeakyReLU", "PReLU", "ELU"):
            assert 0.85 < float(tacc) <= 1.0 and float(tms) > 0, (name, out)
        else:
            assert tacc == tms == "-", (name, out)
    assert rows["ReLU"][0] == rows["ReLU"][2], out  # bit-for-bit twin: the same training
    m = re.search(r"max \|net\(x\) - \(W x \+ b\)\| = (\S+) on the test set, same predictions on (\d+)/(\d+)", out)
    assert m, out
    assert float(m.group(1)) < 1e-4 and m.group(2) == m.group(3), out
    png = outputs["digits"][3]
    assert f"templates: {png}" in out
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 5000


def test_distill(outputs):
    out = _ok(outputs, "distill")
    m = re.search(r"^teacher 64-256-10: test accuracy (\d\.\d+)", out, re.M)
    assert m and float(m.group(1)) > 0.85, out
    acc = r"(\d\.\d+) \+- (\d\.\d+)"
    base = re.findall(rf"^labels only \(CE\)\s+\|\s+{acc}\s+\|\s+{acc}$", out, re.M)
    assert len(base) == 1 and float(base[0][0]) > 0.8, out
    temps = re.findall(rf"^T = (\d+)\s+\|\s+{acc}\s+\|\s+{acc}$", out, re.M)
    assert [t[0] for t in temps] == ["1", "2", "4", "8"], out  # one line per temperature
    for t in temps:
        assert 0.8 < float(t[1]) <= 1.0 and 0.8 < float(t[3]) <= 1.0, (t, out)
