"""Every script in benchmarks/ still starts: ``--help`` exits 0 and prints its usage.

The benchmarks are run by hand (they time things or train for minutes to hours), so nothing
else in the suite would notice a script broken by a library change at import or argument
parsing. Each runs in a fresh interpreter from the repository root, as documented."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p.name for p in (ROOT / "benchmarks").glob("*.py") if not p.name.startswith("_"))
HELPERS = sorted(p.name for p in (ROOT / "benchmarks").glob("_*.py"))  # modules the scripts import


def test_there_are_benchmarks():
    assert {"bench_spa.py", "spa_experiments.py", "train_click_litemedsam_lidc.py"} <= set(SCRIPTS)


def _run(args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_help(script):
    r = _run([str(ROOT / "benchmarks" / script), "--help"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout


@pytest.mark.parametrize("module", HELPERS)
def test_benchmark_helper_imports(module):
    r = _run(["-c", f"import runpy; runpy.run_path({str(ROOT / 'benchmarks' / module)!r}, run_name='helper')"])
    assert r.returncode == 0, r.stderr[-2000:]
