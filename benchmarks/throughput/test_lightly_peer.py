"""`benchmarks/throughput/benchmark.py --peer=lightly` without lightly: CI installs neither
lightly nor torchvision (they live in a venv of their own, see the flag
--lightly_python), so these tests check that the comparison stops before
measuring anything, with one line that names what is missing and how to
install it."""

import importlib.util
import os
import subprocess
import sys

from tests.test_pretrain import REPO_ROOT

BENCHMARK = REPO_ROOT / "benchmarks" / "throughput" / "benchmark.py"
INSTALL = "pip install torch torchvision lightly==1.6.0 numpy pillow"


def run_benchmark(*flags, env=None):
    return subprocess.run(
        [sys.executable, str(BENCHMARK), "--peer=lightly", "--backbones=resnet20", "--rounds=1", "--steps=1",
         *flags],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env,
    )


def error_line(result):
    """The error: the last line of stderr, after no traceback (TensorFlow's
    start-up lines, which benchmark.py's flag checks cause, may precede it)."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1]


def test_a_python_without_lightly_fails_with_one_line_naming_it():
    assert importlib.util.find_spec("lightly") is None  # the premise: the test environment has no lightly
    result = run_benchmark(f"--lightly_python={sys.executable}")
    assert result.returncode == 1
    line = error_line(result)
    assert f"{sys.executable} cannot import 'lightly'" in line
    assert INSTALL in line and "--lightly_python=$HOME/venvs/lightly/bin/python" in line
    assert result.stdout == ""  # nothing measured, no table


def test_the_default_is_this_python():
    result = run_benchmark()
    assert result.returncode == 1
    line = error_line(result)
    assert f"{sys.executable} cannot import 'lightly'" in line


def test_the_first_missing_package_is_named(tmp_path):
    # A stand-in `lightly` package (without its submodules) on the path: the
    # next missing import is named, torchvision where torch is installed.
    (tmp_path / "lightly").mkdir()
    (tmp_path / "lightly" / "__init__.py").write_text("__version__ = '0'\n")
    missing = next((name for name in ("numpy", "torch", "torchvision") if importlib.util.find_spec(name) is None),
                   "lightly.loss")
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = run_benchmark(env={**os.environ, "PYTHONPATH": path})
    assert result.returncode == 1
    line = error_line(result)
    assert f"cannot import {missing!r}" in line and INSTALL in line


def test_a_missing_python_fails_with_one_line(tmp_path):
    python = tmp_path / "no-such-venv" / "bin" / "python"
    result = run_benchmark(f"--lightly_python={python}")
    assert result.returncode == 1
    assert error_line(result) == f"--peer=lightly: cannot run --lightly_python={python}: No such file or directory."

